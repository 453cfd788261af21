"""Drive a GStreamer webrtcbin peer (tests/interop/gst_peer.py under Debian's /usr/bin/python3).

The peer speaks JSON lines on stdin/stdout; :func:`negotiate` relays its offer to Roomcast's signaling
(``$publish`` or ``$subscribe``) over a real WebSocket and its answer back. libnice gathers no
candidate on ``lo``: use the ``jlo0`` fixture and a server started with ``--public-ip 127.0.0.2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from tests.signaling.wsclient import Client

GST_PYTHON = "/usr/bin/python3"
PEER = Path(__file__).resolve().parents[1] / "interop" / "gst_peer.py"


def gstreamer_available() -> bool:
    """Debian's python3 with gi, Gst and webrtcbin (the packages scripts/test installs)."""
    if shutil.which(GST_PYTHON) is None:
        return False
    import subprocess

    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
        "from gi.repository import Gst; Gst.init(None);"
        "assert all(Gst.ElementFactory.find(n) for n in ('webrtcbin', 'x264enc', 'vp8enc', 'opusenc', 'nicesrc'))"
    )
    return subprocess.run([GST_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


class GstPeer:
    """One webrtcbin process; ``stats`` is its latest report (frames decoded, level, RTP stats)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.stats: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []  # every report, oldest first
        self.errors: list[str] = []
        self._offers: asyncio.Queue[str] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, log: Path, *args: str) -> GstPeer:
        stderr = log.open("wb")
        proc = await asyncio.create_subprocess_exec(
            GST_PYTHON, str(PEER), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
        stderr.close()
        return cls(proc, log)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            message = json.loads(line)
            if message["type"] == "offer":
                self._offers.put_nowait(message["sdp"])
            elif message["type"] == "stats":
                self.stats = message
                self.history.append(message)
            elif message["type"] == "error":
                self.errors.append(message["message"])

    async def offer(self, timeout: float = 15.0) -> str:
        try:
            return await asyncio.wait_for(self._offers.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no offer from GStreamer: {self.errors} {self.log.read_text()[-2000:]}") from None

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    def encoded(self, start: float, end: float) -> dict[str, float]:
        """The publisher's own frame rate and freezes at its encoder's output between two
        ``time.monotonic()`` instants (the peer reports on the same clock), from its reports inside them."""
        inside = [r for r in self.history if start <= r["t"] <= end]
        if len(inside) < 2:
            raise AssertionError(f"fewer than two GStreamer reports in [{start}, {end}]: {self.history[-3:]}")
        first, last = inside[0], inside[-1]
        return {
            "fps": (last["encoded_frames"] - first["encoded_frames"]) / (last["t"] - first["t"]),
            "freezes": last["encoded_freezes"] - first["encoded_freezes"],
        }

    def rtp(self, kind: str, type_: str) -> list[dict[str, Any]]:
        """webrtcbin's RTP stats of one type (``outbound-rtp``, ``inbound-rtp``...) for ``kind``."""
        rows: list[dict[str, Any]] = self.stats.get("rtp", [])
        return [r for r in rows if r.get("type") == type_ and r.get("kind", kind) == kind]

    async def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.send({"type": "stop"})
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def negotiate(peer: GstPeer, client: Client, target: str, **extra: Any) -> dict[str, Any]:
    """Relay the peer's offer to ``target`` and the server's answer back; the server's reply."""
    sdp = await peer.offer()
    await client.send({"type": "offer", "to": target, "sdp": sdp, **extra})
    while True:
        reply = await client.recv(10)
        if reply["type"] == "answer" or (reply["type"] == "error" and reply.get("ref")):
            break
    if reply["type"] == "answer":
        await peer.send({"type": "answer", "sdp": reply["sdp"]})
    return reply
