"""The 1 publisher → N subscribers load, driven the same way against any SFU (a :class:`Target`).

The publisher (our SDK) sends ≈1.44 Mbps of video (150 packets/s of 1,200 bytes) plus 50 audio
packets/s. Subscribers are SDK bots that count packets from the clear RTP header without decrypting;
the first :data:`PROBES` of them decrypt, read the send counter the publisher wrote into each video
payload and so measure added latency on one clock (valid even when the SFU renumbers packets).
Server CPU is utime + stime of the server process (all threads) from /proc, divided by the packets the
subscribers received: the same yardstick for every server.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from roomcast.sdk.client import Publication

TICK = os.sysconf("SC_CLK_TCK")
PROBES = 2
VIDEO_PACKETS_PER_TICK = 3  # every 20 ms: 150 video packets/s
VIDEO_PAYLOAD = 1188
AUDIO_PAYLOAD = 160


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rtp_payload_offset(pkt: bytes) -> int:
    offset = 12 + 4 * (pkt[0] & 0x0F)
    if pkt[0] & 0x10 and len(pkt) >= offset + 4:
        offset += 4 + 4 * int.from_bytes(pkt[offset + 2 : offset + 4], "big")
    return offset


class Subscription(Protocol):
    async def close(self) -> None: ...


class Target(Protocol):
    """An SFU under test: a server process and how our bots publish to it and subscribe through it."""

    name: str

    @property
    def pid(self) -> int: ...

    async def open_room(self, label: str) -> None: ...

    async def publisher(self) -> Publication: ...

    async def subscriber(self, index: int, on_packet: PacketHandler, *, decrypt: bool) -> None: ...

    async def close_room(self) -> None: ...


class PacketHandler(Protocol):
    def __call__(self, pkt: bytes) -> None: ...


@dataclass
class Result:
    target: str
    subscribers: int
    delivered_pps: float
    server_cpu_pct: float
    us_per_packet: float
    loss_pct: float
    latency_p50_ms: float
    latency_p95_ms: float
    rss_mib: float
    error: str = ""
    us_per_sent: float = float("nan")
    """Server CPU per datagram the server sent (its own counter: Roomcast only). Unlike ``us_per_packet`` it
    does not grow when the bots, not the server, fall behind and lose packets."""


async def measure(target: Target, n: int, duration: float) -> Result:
    await target.open_room(f"{n}-{time.monotonic_ns()}")
    try:
        publication = await target.publisher()
        received = [0] * n
        latencies: list[float] = []
        sent_at: dict[int, float] = {}
        for i in range(n):

            def on_packet(pkt: bytes, i: int = i) -> None:
                received[i] += 1

            def on_probe(pkt: bytes, i: int = i) -> None:
                received[i] += 1
                if pkt[1] & 0x7F == 96:
                    offset = rtp_payload_offset(pkt) + 1  # after the 1-byte VP8 descriptor
                    sent = sent_at.get(int.from_bytes(pkt[offset : offset + 4], "big"))
                    if sent is not None:
                        latencies.append(time.monotonic() - sent)

            probe = i < PROBES
            await target.subscriber(i, on_probe if probe else on_packet, decrypt=probe)
        video_tail, audio_payload = os.urandom(VIDEO_PAYLOAD - 5), os.urandom(AUDIO_PAYLOAD)
        counter = 0
        tick = 0

        async def send_for(seconds: float) -> int:
            nonlocal counter, tick
            sent = ticks = 0
            start = time.monotonic()
            stop = start + seconds
            while time.monotonic() < stop:
                now = time.monotonic()
                for _ in range(VIDEO_PACKETS_PER_TICK):
                    counter += 1
                    sent_at[counter] = now
                    payload = b"\x10" + counter.to_bytes(4, "big") + video_tail
                    publication.send("video", payload, tick * 1800)
                    sent += 1
                publication.send("audio", audio_payload, tick * 960)
                sent += 1
                publication.conn._pump()
                tick += 1
                ticks += 1
                await asyncio.sleep(max(0.0, start + ticks * 0.02 - time.monotonic()))  # real-time pacing
            return sent

        # Warm up until every subscriber receives (the SFU may wait for ICE/DTLS or a keyframe).
        deadline = time.monotonic() + 20
        while min(received) == 0 and time.monotonic() < deadline:
            await send_for(0.2)
        if min(received) == 0:
            return Result(target.name, n, 0, 0, 0, 100.0, 0, 0, 0, error=f"{received.count(0)} subscribers got nothing")
        await send_for(0.5)
        received[:] = [0] * n
        latencies.clear()
        datagrams_out = getattr(target, "datagrams_out", None)
        out0 = await datagrams_out() if datagrams_out is not None else 0
        cpu0, t0 = cpu_seconds(target.pid), time.monotonic()
        sent = await send_for(duration)
        await asyncio.sleep(0.3)  # in-flight packets
        cpu1, elapsed = cpu_seconds(target.pid), time.monotonic() - t0
        out1 = await datagrams_out() if datagrams_out is not None else 0
        got = sum(received)
        expected = sent * n
        return Result(
            target=target.name,
            subscribers=n,
            delivered_pps=got / elapsed,
            server_cpu_pct=100 * (cpu1 - cpu0) / elapsed,
            us_per_packet=(cpu1 - cpu0) / got * 1e6 if got else float("nan"),
            loss_pct=100 * max(0, expected - got) / expected if expected else 0.0,
            latency_p50_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
            latency_p95_ms=1000 * statistics.quantiles(latencies, n=20)[18] if len(latencies) > 20 else float("nan"),
            rss_mib=rss_mib(target.pid),
            us_per_sent=(cpu1 - cpu0) / (out1 - out0) * 1e6 if out1 > out0 else float("nan"),
        )
    finally:
        await target.close_room()


HEADER = (
    f"{'server':<16}{'subs':>5}{'pkt/s out':>11}{'CPU':>6}{'µs/pkt':>8}{'loss':>8}"
    f"{'lat p50':>9}{'lat p95':>9}{'RSS':>8}{'µs/sent':>9}"
)


def row(r: Result) -> str:
    if r.error:
        return f"{r.target:<16}{r.subscribers:>5}  failed: {r.error}"
    return (
        f"{r.target:<16}{r.subscribers:>5}{r.delivered_pps:>11,.0f}{r.server_cpu_pct:>5.0f}%{r.us_per_packet:>8.2f}"
        f"{r.loss_pct:>7.2f}%{r.latency_p50_ms:>7.1f}ms{r.latency_p95_ms:>7.1f}ms{r.rss_mib:>6.0f}Mi"
        f"{r.us_per_sent:>9.2f}"
    )


NETNS_SETUP = (
    "ip link set lo up && ip link add jlo0 type ifb && ip addr add 127.0.0.2/32 dev jlo0 && ip link set jlo0 up"
    " && sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
)


def in_private_network() -> None:
    """Re-run this script inside a new network namespace (only loopback, plus ``jlo0`` = 127.0.0.2
    for Janus, see TESTING.md) unless already there: benchmark traffic can reach nothing else."""
    if os.environ.get("ROOMCAST_BENCH_NETNS") == "1":
        return
    import shutil
    import sys

    command = [sys.executable, *sys.argv]
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    if shutil.which("unshare") is None:
        raise SystemExit("unshare (util-linux) is needed to run benchmarks in a private network namespace")
    os.environ["ROOMCAST_BENCH_NETNS"] = "1"
    os.execvp(unshare[0], [*unshare, "sh", "-c", f'{NETNS_SETUP} && exec "$@"', "sh", *command])
