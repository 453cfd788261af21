"""Per forwarded packet, through the router: a plain VP8 track against a three-layer VP8 simulcast track.

    python bench/simulcast_path.py [--subscribers 1 10 50] [--no-srtp]

Both go in at the router's publisher side (the decrypted packet, as the transport hands it over), out
through each subscriber's SRTP ``protect_rewritten`` (``--no-srtp``: nothing, the Python cost alone).
The simulcast publisher sends q/h/f (1, 2 and 4 packets per frame, TIDs 0-2-1-2 at 30 fps, picture IDs
and TL0PICIDX per layer, as Chromium does); every subscriber is moved to layer h first, so the numbers
include the picture ID / TL0PICIDX rewrite a switch brings and the parse of all three layers' packets.
CPU is ``time.process_time``; compare figures of one run only (this machine's noise is ±20 %).
"""

from __future__ import annotations

import argparse
import time

from roomcast.proto.codecs import MID_URI, RID_URI
from roomcast.proto.jsep import NegotiatedAnswer, NegotiatedMedia
from roomcast.proto.srtp import SrtpContext
from roomcast.sfu.router import Router
from roomcast.wire import vp8
from roomcast.wire.rtp import ONE_BYTE_PROFILE, RtpPacket
from roomcast.wire.sdp import Codec, SessionDescription

VP8 = Codec(96, "VP8", 90000, None, None, ("nack", "nack pli"))
PROFILE, KEY = "SRTP_AEAD_AES_128_GCM", 28
EXT = {MID_URI: 9, RID_URI: 10}


def media(
    direction: str, layers: tuple[str, ...] = (), ssrc: int | None = None, remote: int | None = None
) -> NegotiatedAnswer:
    m = NegotiatedMedia(
        mid="0", kind="video", direction=direction, codecs=(VP8,), rtx={96: 97}, extensions=dict(EXT),
        remote_ssrcs=(remote,) if remote else (), remote_rtx={}, rids=layers, send_ssrc=ssrc, send_rtx_ssrc=None,
        track_id=None, remote_track_id="cam", layers=tuple((rid,) for rid in layers),
    )  # fmt: skip
    return NegotiatedAnswer(SessionDescription(), (m,), "u", "p", (), "server", None, None)


class Transport:
    """Clear RTP in (``on_rtp``), SRTP out (or nothing): what the router needs of a WebRtcTransport."""

    closed = False
    connected = True

    def __init__(self, key: int, srtp: bool) -> None:
        self.now = 0.0
        self.on_rtp = self.on_rtcp = lambda pkt: None
        ctx = SrtpContext(PROFILE, bytes([key]) * KEY, b"\x09" * KEY)
        self.protect = ctx.protect_rewritten if srtp else None

    def send_rtp_rewritten(self, pkt: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int) -> None:
        if self.protect is not None:
            self.protect(pkt, b1, seq, ts, ssrc)

    def send_rtp(self, pkt: bytes | bytearray) -> None:
        pass

    def send_rtcp(self, pkt: bytes | bytearray) -> None:
        pass

    def close(self) -> None:
        pass


def frames(simulcast: bool, count: int) -> list[tuple[float, bytes]]:
    """(time, packet) for ``count`` frames: three layers, or one stream shaped like the full layer."""
    layers = (
        [("q", 0x1000, 1, 300), ("h", 0x2000, 2, 700), ("f", 0x3000, 4, 1100)] if simulcast else [("", 0x3000, 4, 1100)]
    )
    out = []
    for frame in range(count):
        key = frame % 60 == 0  # every 2 s: the switch to h happens at the first one after warm-up
        tid = 0 if key else (0, 2, 1, 2)[frame % 4]
        for index, (rid, ssrc, per_frame, size) in enumerate(layers):
            for k in range(per_frame):
                seq = (index * 20000 + frame * per_frame + k) & 0xFFFF
                pic, tl0 = (frame + 1000 * index) & 0x7FFF, (frame // 4 + 50 * index) & 0xFF
                desc = vp8.descriptor(begin=k == 0, picture_id=pic,
                                      tl0picidx=tl0, tid=tid, layer_sync=frame % 4 in (1, 2))  # fmt: skip
                payload = desc + (bytes([0 if key else 1]) if k == 0 else b"") + bytes(size - 20)
                exts = ((EXT[MID_URI], b"0"), (EXT[RID_URI], rid.encode())) if simulcast and frame < 2 else ()
                pkt = RtpPacket(96, seq, frame * 3000, ssrc, payload, k == per_frame - 1,
                                extension_profile=ONE_BYTE_PROFILE if exts else None, extensions=exts)  # fmt: skip
                out.append((frame / 30, pkt.serialize()))
    return out


def run(simulcast: bool, subscribers: int, srtp: bool, seconds: float = 20.0) -> float:
    router = Router("bench")
    up = Transport(1, srtp)
    layers = ("q", "h", "f") if simulcast else ()
    router.attach_publisher(
        router.participant("p", "p"), up, media("recvonly", layers, remote=None if simulcast else 0x3000), {}
    )  # type: ignore[arg-type]
    sid = router.tracks()[0].sid
    for i in range(subscribers):
        down = Transport(2 + i % 200, srtp)
        router.attach_subscriber(
            router.participant(f"s{i}", f"s{i}"), down, media("sendonly", ssrc=0x100 + i), {"0": sid}
        )  # type: ignore[arg-type]
    packets = frames(simulcast, int(seconds * 30))
    warm = [p for p in packets if p[0] < 1.0]
    for now, pkt in warm:
        up.now = now
        up.on_rtp(pkt)
    for i in range(subscribers):
        router.set_target_layer(f"s{i}", sid, 1)  # a switch: the VP8 fields are rewritten from now on
    consumers = [c for p in router.producers.values() for c in p.consumers]
    before = sum(c.packets_sent for c in consumers)
    start = time.process_time()
    for now, pkt in packets[len(warm) :]:
        up.now = now
        up.on_rtp(pkt)
    cpu = time.process_time() - start
    forwarded = sum(c.packets_sent for c in consumers) - before
    return cpu / forwarded * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--no-srtp", action="store_true")
    args = parser.parse_args()
    print(f"{'subs':>5}{'plain µs/fwd':>14}{'simulcast µs/fwd':>18}")
    for n in args.subscribers:
        plain, sim = run(False, n, not args.no_srtp), run(True, n, not args.no_srtp)
        print(f"{n:>5}{plain:>14.2f}{sim:>18.2f}")


if __name__ == "__main__":
    main()
