"""1 publisher → N subscribers through a real ``roomcast serve`` on loopback, real ICE/DTLS/SRTP.

    python bench/sfu_fanout.py --subscribers 10 50 100 --duration 8

The publisher (our SDK) sends ≈1.5 Mbps of video (1,200-byte packets) plus 50 packets/s of audio.
Subscribers (SDK, ``decrypt=False``) count packets from the clear RTP header. Reported per N: forwarded
packets/s, server CPU (utime+stime from /proc) per forwarded packet, loss, and added latency (send →
receive on one clock, matched by sequence number: a fresh consumer keeps the publisher's numbering).
Bots and server share this machine's two cores, so at high N the bots, not the server, may saturate:
the CPU-per-packet figure is the server's own and stays meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.signaling.wsclient import dev_token
from tests.support.server import ServerProcess

from roomcast.sdk import connect

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def forwarded(server: ServerProcess) -> float:
    text = httpx.get(server.base + "/metrics").text
    match = re.search(r"^roomcast_media_forwarded_packets_total ([0-9.e+]+)", text, re.M)
    return float(match.group(1)) if match else 0.0


async def run(server: ServerProcess, n: int, duration: float) -> dict[str, float]:
    room = f"bench-{n}-{time.monotonic_ns()}"
    publisher = await connect(server.ws_base, dev_token(room, "publisher"))
    publication = await publisher.publish(["video", "audio"])
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    received = [0] * n
    subscribers = []
    for i in range(n):
        sub = await connect(server.ws_base, dev_token(room, f"s{i}", can_publish=False))
        while len(sub.tracks) < 2:
            sub.tracks_changed.clear()
            await asyncio.wait_for(sub.tracks_changed.wait(), 10)

        def on_packet(track_sid: str, pkt: bytes, i: int = i) -> None:
            received[i] += 1
            if pkt[1] & 0x7F == 96:
                sent = sent_at.get((pkt[2] << 8) | pkt[3])
                if sent is not None and len(latencies) < 200_000:
                    latencies.append(time.monotonic() - sent)

        await sub.subscribe(on_packet, decrypt=False)
        subscribers.append(sub)
    await asyncio.sleep(1.0)  # let keyframe requests and first packets settle before measuring
    for i in range(n):
        received[i] = 0
    latencies.clear()
    cpu0, fwd0, start = cpu_seconds(server.proc.pid), forwarded(server), time.monotonic()
    video_payload, audio_payload = os.urandom(1188), os.urandom(160)
    sent = 0
    tick = 0
    while time.monotonic() - start < duration:
        now = time.monotonic()
        for _ in range(3):  # 150 video packets/s x 1,200 bytes ≈ 1.44 Mbps
            seq = publication.send("video", video_payload, tick * 1800)
            sent_at[seq] = now
            sent += 1
        publication.send("audio", audio_payload, tick * 960)
        sent += 1
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))
    await asyncio.sleep(0.5)  # drain in-flight packets
    cpu1, fwd1, elapsed = cpu_seconds(server.proc.pid), forwarded(server), time.monotonic() - start
    for client in (publisher, *subscribers):
        await client.close()
    expected = sent * n
    got = sum(received)
    fwd = fwd1 - fwd0
    return {
        "subscribers": n,
        "forwarded_pps": fwd / elapsed,
        "server_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "us_per_forwarded": (cpu1 - cpu0) / fwd * 1e6 if fwd else float("nan"),
        "loss_pct": 100 * max(0, expected - got) / expected if expected else 0.0,
        "latency_p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "latency_p95_ms": 1000 * statistics.quantiles(latencies, n=20)[18] if len(latencies) > 20 else float("nan"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    server = ServerProcess(Path(tempfile.mkdtemp(prefix="roomcast-bench-")), env={"ROOMCAST_MAX_PARTICIPANTS": "1000"})
    try:
        print(
            f"{'subs':>5}{'fwd pkt/s':>12}{'server CPU':>12}{'µs/fwd pkt':>12}{'loss':>8}{'lat p50':>10}{'lat p95':>10}"
        )
        for n in args.subscribers:
            r = await run(server, n, args.duration)
            print(
                f"{n:>5}{r['forwarded_pps']:>12,.0f}{r['server_cpu_pct']:>11.0f}%{r['us_per_forwarded']:>12.2f}"
                f"{r['loss_pct']:>7.2f}%{r['latency_p50_ms']:>8.2f}ms{r['latency_p95_ms']:>8.2f}ms",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
