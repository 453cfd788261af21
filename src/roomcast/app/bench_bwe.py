"""``roomcast bench --twcc``: what transport-wide congestion control costs per forwarded packet.

A subscriber transport forwarding ``bitrate`` (video frames of up to 1,200-byte packets at 30 fps,
plus 50 audio packets/s) to a browser that sends transport-cc feedback every ``interval`` (Chrome:
50-100 ms). The feedback is made beforehand by the receive side (:class:`TwccFeedbackGenerator`
over a path with some jitter and loss) and serialised; the timed part is what the server does:

- stamp: ``GccEstimator.on_packet_sent`` per forwarded packet (ring stores, sequence number);
- feedback: ``parse_compound`` of each feedback datagram + ``GccEstimator.on_feedback``.

CPU time (``time.process_time``) per forwarded packet: stamping per packet sent, feedback work per
packet the feedback covered (received or lost).
"""

from __future__ import annotations

import math
import random
import time

from roomcast.proto.bwe.gcc import GccConfig, GccEstimator
from roomcast.proto.bwe.twcc_receiver import TwccFeedbackGenerator
from roomcast.wire.rtcp import parse_compound

Schedule = list[tuple[float, int]]  # (send time, size) per packet


def schedule(bitrate: float, seconds: float, seed: int = 7) -> Schedule:
    rng = random.Random(seed)
    out: Schedule = []
    frame_bytes = bitrate / 30 / 8
    for f in range(int(seconds * 30)):
        t = f / 30
        size = frame_bytes * rng.uniform(0.85, 1.15)
        n = max(math.ceil(size / 1200), 1)
        out.extend((t, int(size / n) + 40) for _ in range(n))
    out.extend((a / 50 + 0.003, 120) for a in range(int(seconds * 50)))
    out.sort()
    return out


def feedback_for(packets: Schedule, interval: float, loss: float, seed: int = 3) -> list[tuple[float, bytes]]:
    """The feedback datagrams a browser would send, with their arrival time at the server: the path
    is a FIFO (10 Mbit/s, 20 ms, up to 2 ms of jitter that never reorders) with random loss."""
    rng = random.Random(seed)
    gen = TwccFeedbackGenerator(1, 2, interval=interval)
    out: list[tuple[float, bytes]] = []
    last = 0.0
    for seq, (t, size) in enumerate(packets):
        last = max(last + size * 8 / 10e6, t + 0.02 + rng.uniform(0, 0.002))
        gen.handle_timeout(last)
        if rng.random() >= loss:
            gen.on_packet(seq & 0xFFFF, last)
        while (fb := gen.poll_feedback()) is not None:
            out.append((last + 0.02, fb.serialize()))
    return out


def _replay(packets: Schedule, feedback: list[tuple[float, bytes]], bitrate: float, mode: int) -> tuple[float, int]:
    """Send and (mode 2) process feedback as the server would see them interleaved; mode 1 only
    stamps, mode 0 runs the bare loop. Returns (CPU seconds, packets the feedback covered)."""
    bwe = GccEstimator(GccConfig(start_bitrate=int(bitrate), initial_probes=()))
    stamp = bwe.on_packet_sent if mode else (lambda size, now, probe_cluster=-1: 0)
    on_rtcp = bwe.on_rtcp
    n = len(packets)
    i = 0
    start = time.process_time()
    for at, data in feedback:
        while i < n and packets[i][0] <= at:
            t, size = packets[i]
            stamp(size, t)
            i += 1
        if mode == 2:
            for packet in parse_compound(data):
                on_rtcp(packet, at)
    while i < n:
        t, size = packets[i]
        stamp(size, t)
        i += 1
    return time.process_time() - start, bwe.counters.packets_acked + bwe.counters.packets_lost


def run(
    bitrate: float, interval: float, seconds: float = 20.0, loss: float = 0.01, repeats: int = 5
) -> dict[str, float]:
    """Each mode timed whole, best of ``repeats``; the costs are the differences between modes, so
    no clock is read per packet or per feedback."""
    packets = schedule(bitrate, seconds)
    feedback = feedback_for(packets, interval, loss)
    best = [min(_replay(packets, feedback, bitrate, mode)[0] for _ in range(repeats)) for mode in (0, 1, 2)]
    covered = _replay(packets, feedback, bitrate, 2)[1]
    n = len(packets)
    return {
        "packets": float(n),
        "feedbacks": float(len(feedback)),
        "per_feedback": covered / max(len(feedback), 1),
        "stamp_us": max(best[1] - best[0], 0.0) / n * 1e6,
        "feedback_us": max(best[2] - best[1], 0.0) / max(covered, 1) * 1e6,
    }


def report() -> None:
    head = f"{'twcc: bitrate':<16}{'fb every':>9}{'pkts/fb':>9}"
    print(head + f"{'µs stamp/pkt':>14}{'µs fb+bwe/pkt':>15}{'µs total/pkt':>14}")
    for bitrate, interval in ((300e3, 0.05), (1.5e6, 0.05), (2.5e6, 0.05), (2.5e6, 0.1), (5e6, 0.05)):
        r = run(bitrate, interval)
        total = r["stamp_us"] + r["feedback_us"]
        row = f"{bitrate / 1e6:>10.1f} Mbps{interval * 1000:>7.0f}ms{r['per_feedback']:>9.1f}"
        print(row + f"{r['stamp_us']:>14.2f}{r['feedback_us']:>15.2f}{total:>14.2f}")
