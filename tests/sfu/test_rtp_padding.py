"""B2: an RTP packet whose padding count is longer than its payload is dropped and counted by the router,
never forwarded (found by tests/security/test_authenticated_media.py: it went through to subscribers)."""

from __future__ import annotations

import struct

from roomcast.wire.rtp import header_length, padding_fits
from tests.sfu.test_router_simnet import MEDIA_SSRC, build


def packet(seq: int, payload: bytes, padding: int | None) -> bytes:
    first = 0xA0 if padding is not None else 0x80
    tail = (bytes(max(padding - 1, 0)) + bytes([padding])) if padding else (b"\x00" if padding == 0 else b"")
    return struct.pack("!BBHII", first, 96, seq, seq * 900, MEDIA_SSRC) + payload + tail


def test_padding_must_fit_between_header_and_end() -> None:
    assert padding_fits(packet(1, b"abc", None), 12)
    assert padding_fits(packet(1, b"abc", 4), 12)  # 3 bytes of padding and the count
    assert padding_fits(packet(1, b"", 4), 12)  # padding only (a bandwidth probe)
    lying = packet(1, b"abc", None)[:-1] + b"\xff"
    lying = bytes([0xA0]) + lying[1:]
    assert header_length(lying) == 12 and not padding_fits(lying, 12)
    assert not padding_fits(packet(1, b"abc", 0), 12)  # a zero count is no padding at all


def test_router_drops_and_counts_padding_longer_than_the_payload() -> None:
    net, router, _publisher, subscriber, endpoints = build(loss=0.0, seed=1, total=0)
    up = endpoints[0]
    good = packet(1, b"\x10" + bytes(20), None)
    lying = bytes([0xA0]) + good[1:-1] + b"\xff"
    up.on_rtp(lying)  # type: ignore[attr-defined]
    up.on_rtp(good)  # type: ignore[attr-defined]
    net.run_until(lambda: False, endpoints, max_time=1.0)
    assert router.counters["rtp_malformed"] == 1
    assert list(subscriber.received) == [1]  # only the honest packet went on
