"""An authenticated attacker: SDK peers that completed ICE and DTLS, then send what no honest peer sends.

Unlike the garbage of ``tests/security/test_media_garbage.py`` (from an unvalidated address, dropped
before any parsing), everything here arrives on a validated address of a connected transport, with the
real SRTP keys, so it reaches libsrtp, the RTP/RTCP parsers, the router and SCTP/DCEP. One publisher (its
real packets are recorded, for replays) and one subscriber (feedback toward the server) in a room.

Also the measuring side of RELIABILITY O2/O5: :class:`Counters` (deltas of the server's drop and event
counters for one step, never cumulative), the server's CPU time from ``/proc``, its log lines, and the
kernel's UDP receive-buffer drops in this namespace (a flood's packets the server never read).
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from roomcast.sdk import connect
from roomcast.sdk.client import MediaConnection, Publication, Room
from tests.signaling.wsclient import dev_token
from tests.support.resources import cpu_seconds
from tests.support.server import ServerProcess

_COUNTER = re.compile(r'^roomcast_media_(?:dropped|events)_total\{(?:reason|event)="([^"]+)"\} ([0-9.e+]+)', re.M)


def media_counters(server: ServerProcess) -> dict[str, float]:
    """Every media drop and event counter of the server (``roomcast_media_dropped_total`` and
    ``roomcast_media_events_total``), by name."""
    return {m.group(1): float(m.group(2)) for m in _COUNTER.finditer(httpx.get(server.base + "/metrics").text)}


def rcvbuf_errors() -> int:
    """UDP datagrams dropped by this namespace's kernel because a receive buffer was full."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def log_lines(server: ServerProcess) -> list[str]:
    """The server's own log lines (uvicorn's access log of our own scrapes left out)."""
    return [line for line in server.log().splitlines() if '- "GET ' not in line and '- "POST ' not in line]


@dataclass
class Step:
    """What one attack step cost the server: counter deltas, CPU seconds, log lines, kernel drops."""

    server: ServerProcess
    before: dict[str, float] = field(default_factory=dict)
    delta: dict[str, float] = field(default_factory=dict)
    cpu: float = 0.0
    seconds: float = 0.0
    new_log_lines: list[str] = field(default_factory=list)
    kernel_dropped: int = 0
    _t0: float = 0.0
    _cpu0: float = 0.0
    _log0: int = 0
    _rcv0: int = 0

    def start(self) -> Step:
        self.before = media_counters(self.server)
        self._log0 = len(log_lines(self.server))
        self._rcv0 = rcvbuf_errors()
        self._t0, self._cpu0 = time.monotonic(), cpu_seconds(self.server.proc.pid)
        return self

    def stop(self) -> Step:
        self.seconds = time.monotonic() - self._t0
        self.cpu = cpu_seconds(self.server.proc.pid) - self._cpu0
        self.kernel_dropped = rcvbuf_errors() - self._rcv0
        after = media_counters(self.server)
        self.delta = {k: v - self.before.get(k, 0.0) for k, v in after.items() if v != self.before.get(k, 0.0)}
        self.new_log_lines = log_lines(self.server)[self._log0 :]
        return self

    def log_rate(self) -> float:
        return len(self.new_log_lines) / max(self.seconds, 1.0)


class Attacker:
    """A publisher and a subscriber of one room, both connected; raw sends on their validated paths."""

    def __init__(self, publisher: Room, publication: Publication, subscriber: Room, sub: MediaConnection) -> None:
        self.publisher, self.publication = publisher, publication
        self.subscriber, self.sub = subscriber, sub
        self.pub = publication.conn
        self.sent: list[bytes] = []  # SRTP datagrams the publisher really sent (replay material)
        self.consumer_ssrcs: set[int] = set()  # SSRCs the server sends the subscriber (RTX ones too)
        self.consumer_ssrc: int | None = None  # the video's own: the first seen (media comes before any RTX)
        self.received = 0
        self._seq = 0
        send = self.pub.rtc.direct_send
        assert send is not None

        def record(data: bytes, remote: tuple[str, int]) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224 and len(self.sent) < 4096:
                self.sent.append(data)
            send(data, remote)

        self.pub.rtc.direct_send = record

    @classmethod
    async def open(cls, server: ServerProcess) -> Attacker:
        room = "attack-" + uuid.uuid4().hex[:6]
        publisher = await connect(server.ws_base, dev_token(room, "attacker-pub"))
        publication = await publisher.publish(["video"])
        subscriber = await connect(server.ws_base, dev_token(room, "attacker-sub", can_publish=False))
        deadline = time.monotonic() + 10
        while not subscriber.tracks:
            assert time.monotonic() < deadline, "the attacker's subscriber never saw the track"
            await asyncio.sleep(0.05)  # polling the track list with a deadline
        box: list[Attacker] = []

        def on_packet(track_sid: str, pkt: bytes) -> None:
            box[0].received += 1
            ssrc = int.from_bytes(pkt[8:12], "big")
            box[0].consumer_ssrcs.add(ssrc)
            if box[0].consumer_ssrc is None:
                box[0].consumer_ssrc = ssrc

        sub = await subscriber.subscribe(on_packet, decrypt=False)
        box.append(cls(publisher, publication, subscriber, sub))
        return box[0]

    @property
    def media_ssrc(self) -> int:
        """The SSRC of the video the server sends the subscriber (what its NACKs and PLIs name)."""
        assert self.consumer_ssrc is not None
        return self.consumer_ssrc

    @property
    def video_ssrc(self) -> int:
        return self.publication.tracks["video"].ssrc

    def next_seq(self) -> int:
        """The publisher's next video sequence number (libsrtp refuses to protect one far behind)."""
        seq = self.publication._seq["video"]
        self.publication._seq["video"] = (seq + 1) & 0xFFFF
        return seq

    def media(self, n: int) -> None:
        """``n`` honest one-packet video frames (so the path is live and there is history to replay)."""
        for _ in range(n):
            self.publication.send("video", b"\x10\x00\x00" + b"\x00" * 100, self._seq * 3000, marker=True)
            self._seq += 1

    def raw(self, conn: MediaConnection, datagrams: Iterable[bytes]) -> int:
        """Send datagrams as they are on ``conn``'s validated path (no SRTP applied); returns how many."""
        assert conn.udp is not None and conn.rtc.remote is not None
        count = 0
        for data in datagrams:
            conn.udp.sendto(data, conn.rtc.remote)
            count += 1
        return count

    def rtp(self, packets: Iterable[bytes]) -> int:
        """Protect clear RTP with the publisher's real SRTP keys and send it."""
        count = 0
        for pkt in packets:
            self.pub.rtc.send_rtp(pkt)
            count += 1
        return count

    def rtcp(self, conn: MediaConnection, packets: Iterable[bytes]) -> int:
        """Protect clear RTCP (compound or not) with ``conn``'s real SRTCP keys and send it."""
        count = 0
        for pkt in packets:
            conn.rtc.send_rtcp(pkt)
            count += 1
        return count

    async def close(self) -> None:
        for client in (self.publisher, self.subscriber):
            await client.close()


def rtp_header(ssrc: int, seq: int, *, pt: int = 96, first: int = 0x80, marker: bool = True) -> bytes:
    return struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq & 0xFFFF, seq * 3000, ssrc)


async def paced(send: Iterable[object], per_batch: int = 20, pause: float = 0.004) -> int:
    """Drive a generator of sends in batches so a flood is read by the server, not by the kernel's
    overflow: ``per_batch`` sends, then yield the loop ``pause`` seconds; returns how many."""
    count = 0
    for _ in send:
        count += 1
        if count % per_batch == 0:
            await asyncio.sleep(pause)  # pacing the flood (the server's socket buffer is ~200 KB)
    return count
