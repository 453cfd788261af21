"""``roomcast bench``: the forwarding hot path measured in µs of CPU per forwarded packet.

One publisher packet is SRTP-unprotected once, then for each of N subscribers rewritten (SSRC, seq,
timestamp, PT), SRTP-protected and sent with ``sendto`` on a loopback UDP socket: exactly the per-packet
work of the SFU (the hot path of docs/architecture.md). CPU time comes from ``time.process_time`` (user + system of this
process), so the kernel's share of ``sendto`` is included.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time
from collections.abc import Sequence

from roomcast.proto.srtp import SrtpContext
from roomcast.sfu.consumer import Consumer, RewritingSender

KEYS = {"SRTP_AEAD_AES_128_GCM": 28, "SRTP_AES128_CM_SHA1_80": 30}


def _unused(pkt: bytes | bytearray) -> None:
    raise AssertionError("the benchmark forwards through send_rewritten only")


def run(profile: str, subscribers: int, packets: int, size: int, send: bool) -> dict[str, float]:
    key_len = KEYS[profile]
    publisher = SrtpContext(profile, b"\x01" * key_len, b"\x02" * key_len)  # the browser side
    server_in = SrtpContext(profile, b"\x02" * key_len, b"\x01" * key_len)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)
    target = sink.getsockname()
    contexts = [SrtpContext(profile, bytes([3 + i % 200]) * key_len, b"\x09" * key_len) for i in range(subscribers)]

    def sender(ctx: SrtpContext) -> RewritingSender:
        protect = ctx.protect_rewritten  # as WebRtcTransport.send_rtp_rewritten does
        sendto = out.sendto

        def send_packet(pkt: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int) -> None:
            data = protect(pkt, b1, seq, ts, ssrc)
            if send:
                try:  # noqa: SIM105 - try/except costs less than contextlib.suppress per packet
                    sendto(data, target)
                except BlockingIOError:
                    pass

        return send_packet

    consumers = [
        Consumer(ssrc=0x1000 + i, kind="video", clock_rate=90000, send=_unused, send_rewritten=sender(ctx))
        for i, ctx in enumerate(contexts)
    ]
    payload = os.urandom(size - 12)
    wire = [
        publisher.protect(struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, 0xABCD) + payload)
        for seq in range(packets)
    ]
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    unprotect = server_in.unprotect
    for i, data in enumerate(wire):
        clear = unprotect(data)
        ssrc = int.from_bytes(clear[8:12], "big")
        now = i * 0.001
        for consumer in consumers:
            consumer.forward(clear, ssrc, now)
    cpu = time.process_time() - start_cpu
    wall = time.perf_counter() - start_wall
    sink.close()
    out.close()
    forwarded = packets * subscribers
    return {"cpu_us_per_forwarded": cpu / forwarded * 1e6, "forwarded_pps_per_core": forwarded / cpu, "wall_s": wall}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomcast bench", description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=5000, help="publisher packets per run")
    parser.add_argument("--size", type=int, default=1200, help="RTP packet size in bytes")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--no-send", action="store_true", help="skip sendto (pure Python + SRTP cost)")
    parser.add_argument("--twcc", action="store_true", help="also: transport-cc stamping, parsing and estimation")
    args = parser.parse_args(argv)
    print(f"{'profile':<24}{'subs':>6}{'µs CPU/fwd pkt':>16}{'fwd pkt/s/core':>16}")
    for profile in KEYS:
        for n in args.subscribers:
            r = run(profile, n, args.packets, args.size, not args.no_send)
            print(f"{profile:<24}{n:>6}{r['cpu_us_per_forwarded']:>16.2f}{r['forwarded_pps_per_core']:>16,.0f}")
    print("whole server against Janus on the same load and bots: python bench/versus_janus.py (docs/benchmarks.md)")
    if args.twcc:
        from roomcast.app.bench_bwe import report

        report()
    return 0
