"""Roomcast and Janus side by side: the same 1 → N load, the same bots, in one run.

    python bench/versus_janus.py --subscribers 25 50 100 200 --duration 8

For every N the load of :mod:`bench.fanout` runs against ``roomcast serve``, Janus VideoRoom with its
default threads (one event loop per handle) and Janus with ``event_loops = 2`` (shared loops), one
after the other, while the other servers idle. Printed per N: each server's CPU per delivered packet
and loss, then the ratios Roomcast/Janus, and at the end the largest N each server carried with loss
≤ 1 %. Runs in its own network namespace (loopback, plus ``jlo0`` = 127.0.0.2 for Janus's ICE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.server import free_port

from bench.fanout import HEADER, PacketHandler, Result, cpu_seconds, in_private_network, measure, row
from bench.janus import JanusProcess, JanusSession
from bench.sfu_fanout import RoomcastTarget
from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.jsep import AnswerParams, create_answer
from roomcast.proto.webrtc import WebRtcTransport, new_ice_credentials
from roomcast.sdk.client import MediaConnection, Publication
from roomcast.sdk.offer import OfferedTrack, client_offer
from roomcast.wire.sdp import SessionDescription


def _ssrc() -> int:
    return secrets.randbits(31) | 1


def ice_candidate(sdp: SessionDescription) -> tuple[str, int]:
    """Janus's host candidate (component 1, UDP) from the first bundled m-line that lists one."""
    for m in sdp.media:
        for line in m.candidates:
            parts = line.split()
            if len(parts) >= 8 and parts[1] == "1" and parts[2].lower() == "udp":
                return parts[4], int(parts[5])
    raise RuntimeError("Janus's SDP lists no UDP host candidate")


class JanusTarget:
    """A Janus process with the VideoRoom plugin; our bots reach it as ICE controlling agents."""

    def __init__(self, name: str, workdir: Path, event_loops: int, rtp_ports: tuple[int, int]) -> None:
        self.name = name
        self.janus = JanusProcess(workdir, free_port(), rtp_ports, event_loops=event_loops)
        self.certificate = DtlsCertificate.generate()
        self.session: JanusSession | None = None
        self.room = 0
        self.feed = 0
        self.connections: list[MediaConnection] = []

    @property
    def pid(self) -> int:
        return self.janus.proc.pid

    async def _connect(
        self, handle: int, remote: SessionDescription, ufrag: str, pwd: str, dtls_role: str
    ) -> MediaConnection:
        first = next(m for m in remote.media if m.port)
        rtc = WebRtcTransport(
            self.certificate,
            remote_ufrag=first.ice_ufrag or remote.ice_ufrag or "",
            remote_pwd=first.ice_pwd or remote.ice_pwd or "",
            remote_fingerprints=first.fingerprints or remote.fingerprints,
            dtls_role=dtls_role,
            local_ufrag=ufrag,
            local_pwd=pwd,
            server=ice_candidate(remote),
        )
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_datagram_endpoint(lambda: MediaConnection(rtc), local_addr=("127.0.0.2", 0))
        self.connections.append(conn)
        assert self.session is not None and conn.udp is not None
        await self.session.trickle(handle, "", 0)
        await asyncio.wait_for(conn.connected, 15)
        return conn

    async def open_room(self, label: str) -> None:
        self.session = JanusSession(self.janus.base)
        await self.session.start()
        handle = await self.session.attach()
        self.room = secrets.randbelow(2**31) + 1
        await self.session.message(
            handle,
            {
                "request": "create",
                "room": self.room,
                "description": f"bench {label}",
                "publishers": 1,
                "bitrate": 3_000_000,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "notify_joining": False,
            },
        )

    async def publisher(self) -> Publication:
        assert self.session is not None
        handle = await self.session.attach()
        tracks = [
            OfferedTrack("video", "sendonly", "video-bench", _ssrc(), _ssrc()),
            OfferedTrack("audio", "sendonly", "audio-bench", _ssrc(), 0),
        ]
        ufrag, pwd = new_ice_credentials()
        offer = client_offer(tracks, ufrag, pwd, self.certificate.fingerprint[1], stream_id="bench")
        await self.session.message(
            handle,
            {"request": "joinandconfigure", "room": self.room, "ptype": "publisher", "display": "publisher"},
            jsep={"type": "offer", "sdp": offer},
        )
        event = await self.session.wait_event(handle, "jsep")
        data = event["plugindata"]["data"]
        if "id" not in data:  # "joined" (with the feed id) and the answer may come as two events
            data = (await self.session.wait_event(handle, "id"))["plugindata"]["data"]
        self.feed = int(data["id"])
        answer = SessionDescription.parse(event["jsep"]["sdp"])
        setup = next((m.setup for m in answer.media if m.setup), answer.setup)
        conn = await self._connect(handle, answer, ufrag, pwd, "server" if setup == "active" else "client")
        await self.session.wait_event(handle, "webrtcup")  # subscribers get "No such feed" before it
        return Publication(conn, tracks)

    async def subscriber(self, index: int, on_packet: PacketHandler, *, decrypt: bool) -> None:
        assert self.session is not None
        handle = await self.session.attach()
        await self.session.message(
            handle, {"request": "join", "room": self.room, "ptype": "subscriber", "streams": [{"feed": self.feed}]}
        )
        event = await self.session.wait_event(handle, "jsep")
        offer = SessionDescription.parse(event["jsep"]["sdp"])
        ufrag, pwd = new_ice_credentials()
        negotiated = create_answer(
            offer,
            AnswerParams(
                ice_ufrag=ufrag,
                ice_pwd=pwd,
                fingerprint=self.certificate.fingerprint[1],
                candidates=[],
                mode="recvonly",
                data_channels=False,
                ice_lite=False,
            ),
        )
        await self.session.message(
            handle, {"request": "start"}, jsep={"type": "answer", "sdp": negotiated.answer.serialize()}
        )
        conn = await self._connect(handle, offer, ufrag, pwd, negotiated.dtls_role)
        conn.rtc.on_rtp = on_packet
        conn.rtc.decrypt = decrypt

    async def close_room(self) -> None:
        for conn in self.connections:
            conn.close()
        self.connections.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def stop(self) -> None:
        self.janus.stop()


async def settle(pids: list[int], limit: float = 20.0) -> None:
    """Wait (at most ``limit`` s) until the servers together use under 2 % of a core: the previous target's
    room teardown (hundreds of leaves, DTLS closes) must not run during the next target's measurement, or
    whichever server is measured first after it pays for it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(0.5)
        if sum(cpu_seconds(pid) for pid in pids) - before < 0.01:
            return


def carried(results: list[Result], name: str) -> int:
    ok = [r.subscribers for r in results if r.target == name and not r.error and r.loss_pct <= 1.0]
    return max(ok, default=0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument(
        "--sendto", action="store_true", help="also Roomcast without its sendmmsg batches (ROOMCAST_SENDMMSG=0)"
    )
    parser.add_argument("--no-janus", action="store_true", help="Roomcast only (with --sendto: before/after)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="roomcast-vs-janus-"))
    roomcast = RoomcastTarget(workdir / "roomcast")
    targets: list[RoomcastTarget | JanusTarget] = [roomcast]
    if args.sendto:
        targets.append(RoomcastTarget(workdir / "roomcast-sendto", "roomcast-sendto", {"ROOMCAST_SENDMMSG": "0"}))
    janus: list[JanusTarget] = []
    if not args.no_janus:
        janus.append(JanusTarget("janus", workdir / "janus", 0, (20000, 29999)))
        janus.append(JanusTarget("janus-loops2", workdir / "janus-loops2", 2, (30000, 39999)))
    targets.extend(janus)
    results: list[Result] = []
    try:
        for peer in janus:
            peer.janus.wait_ready()
        print(HEADER)
        for n in args.subscribers:
            per_n = {}
            for target in targets:
                await settle([t.pid for t in targets])
                try:
                    result = await measure(target, n, args.duration)
                except Exception as exc:  # one server failing at one N must not end the comparison
                    result = Result(target.name, n, 0, 0, 0, 100.0, 0, 0, 0, error=f"{type(exc).__name__}: {exc}")
                results.append(result)
                per_n[target.name] = result
                print(row(result), flush=True)
            ours = per_n["roomcast"].us_per_packet
            ratios = "  ".join(
                f"Roomcast/{name} = {ours / r.us_per_packet:.2f}"
                for name, r in per_n.items()
                if name != "roomcast" and not r.error and r.us_per_packet
            )
            print(f"{'':<16}{n:>5}  CPU per delivered packet: {ratios}\n", flush=True)
        print("largest N with loss ≤ 1 %: " + ", ".join(f"{t.name} {carried(results, t.name)}" for t in targets))
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    finally:
        for target in targets:
            target.stop()


if __name__ == "__main__":
    in_private_network()
    asyncio.run(main())
