"""``roomcast bench``: the forwarding hot path measured in µs of CPU per forwarded packet.

One publisher packet is SRTP-unprotected once, then for each of N subscribers rewritten (SSRC, seq,
timestamp, PT), SRTP-protected and sent with ``sendto`` on a loopback UDP socket: exactly the per-packet
work of the SFU (the hot path of docs/architecture.md); with the native helper built, the same again
the way the server then sends: each copy rewritten and protected into a batch, one ``sendmmsg`` per
packet. CPU time comes from ``time.process_time`` (user + system of this process), so the kernel's share
of sending is included.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from roomcast.proto.srtp import SrtpContext
from roomcast.runtime import sendmmsg
from roomcast.sfu.consumer import Consumer, RewritingSender

KEYS = {"SRTP_AEAD_AES_128_GCM": 28, "SRTP_AES128_CM_SHA1_80": 30}


def _unused(pkt: bytes | bytearray) -> None:
    raise AssertionError("the benchmark forwards through send_rewritten only")


def run(profile: str, subscribers: int, packets: int, size: int, send: bool, batched: bool = False) -> dict[str, float]:
    """``batched``: as the server does with its native helper, each copy rewritten and protected into one
    batch (:mod:`roomcast.runtime.sendmmsg`) and the publisher packet's whole fan-out sent with one sendmmsg."""
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

    batch: Any = None
    if batched:
        assert sendmmsg.native is not None
        batch = sendmmsg.native.Batch(socket.AF_INET)

    def batch_sender(ctx: SrtpContext) -> RewritingSender:
        add, (fn, srtp, _) = batch.add_rewritten, ctx.native_protect or (0, 0, 0)
        host, port = target

        def send_packet(pkt: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int) -> None:
            if add(fn, srtp, pkt, b1, seq, ts, ssrc, 0, 0, host, port):
                raise AssertionError("libsrtp refused to protect")

        return send_packet

    consumers = [
        Consumer(
            ssrc=0x1000 + i,
            kind="video",
            clock_rate=90000,
            send=_unused,
            send_rewritten=batch_sender(ctx) if batched else sender(ctx),
        )
        for i, ctx in enumerate(contexts)
    ]
    fd = out.fileno()
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
        if batch is not None:
            if send:
                try:  # noqa: SIM105
                    batch.send(fd, 0)
                except BlockingIOError:
                    pass
            batch.clear()
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
    paths = ["sendto", "sendmmsg"] if sendmmsg.native is not None else ["sendto"]
    print(f"{'profile':<24}{'subs':>6}{'path':>10}{'µs CPU/fwd pkt':>16}{'fwd pkt/s/core':>16}")
    for profile in KEYS:
        for n in args.subscribers:
            cost = {}
            for path in paths:
                r = run(profile, n, args.packets, args.size, not args.no_send, batched=path == "sendmmsg")
                cost[path] = r["cpu_us_per_forwarded"]
                print(
                    f"{profile:<24}{n:>6}{path:>10}{r['cpu_us_per_forwarded']:>16.2f}"
                    f"{r['forwarded_pps_per_core']:>16,.0f}"
                )
            if len(cost) == 2:
                print(f"{'':<30}sendmmsg/sendto = {cost['sendmmsg'] / cost['sendto']:.2f}")
    if sendmmsg.native is None:
        print("(the native helper is not built: the server sends with sendto, one call per datagram)")
    print("whole server against Janus on the same load and bots: python bench/versus_janus.py (docs/benchmarks.md)")
    if args.twcc:
        from roomcast.app.bench_bwe import report

        report()
    return 0
