"""1 publisher → N subscribers through a real ``roomcast serve`` on loopback, real ICE/DTLS/SRTP.

    python bench/sfu_fanout.py --subscribers 10 50 100 --duration 8

The load and the figures are those of :mod:`bench.fanout`. Bots and server share this machine's two
cores, so at high N the bots, not the server, may saturate: the CPU-per-packet figure is the server's
own and stays meaningful. ``python bench/versus_janus.py`` runs the same load against Janus too.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.signaling.wsclient import dev_token
from tests.support.server import ServerProcess

from bench.fanout import HEADER, PacketHandler, in_private_network, measure, row
from roomcast.sdk import connect
from roomcast.sdk.client import Publication, Room


class RoomcastTarget:
    """``roomcast serve`` as a subprocess; bots join with dev tokens over its signaling socket."""

    def __init__(self, workdir: Path, name: str = "roomcast", env: dict[str, str] | None = None) -> None:
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess(
            workdir, env={"ROOMCAST_MAX_PARTICIPANTS": "2000", "ROOMCAST_MAX_CONNECTIONS_PER_IP": "0", **(env or {})}
        )
        self.room = ""
        self.clients: list[Room] = []

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    async def datagrams_out(self) -> int:
        """UDP datagrams the server has sent (``roomcast_media_datagrams_total{direction="out"}``)."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(self.server.base + "/metrics", timeout=5)).text
        found = re.search(r'^roomcast_media_datagrams_total\{direction="out"\} (\S+)$', text, re.M)
        return int(float(found.group(1))) if found else 0

    async def open_room(self, label: str) -> None:
        self.room = f"bench-{label}"

    async def publisher(self) -> Publication:
        room = await connect(self.server.ws_base, dev_token(self.room, "publisher"))
        self.clients.append(room)
        return await room.publish(["video", "audio"])

    async def subscriber(self, index: int, on_packet: PacketHandler, *, decrypt: bool) -> None:
        room = await connect(self.server.ws_base, dev_token(self.room, f"s{index}", can_publish=False))
        self.clients.append(room)
        while len(room.tracks) < 2:
            room.tracks_changed.clear()
            await asyncio.wait_for(room.tracks_changed.wait(), 10)
        await room.subscribe(lambda _sid, pkt: on_packet(pkt), decrypt=decrypt)

    async def close_room(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()

    def stop(self) -> None:
        self.server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    target = RoomcastTarget(Path(tempfile.mkdtemp(prefix="roomcast-bench-")))
    try:
        print(HEADER)
        for n in args.subscribers:
            print(row(await measure(target, n, args.duration)), flush=True)
    finally:
        target.stop()


if __name__ == "__main__":
    in_private_network()
    asyncio.run(main())
