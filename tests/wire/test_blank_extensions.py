"""The publisher's MID/RID extensions turned into padding before forwarding (RFC 8285 §4.2-4.3)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from roomcast.wire.rtp import RtpPacket, blank_extensions, read_extension

IDS = frozenset({4, 10, 11})


def packet(elements: bytes, profile: int = 0xBEDE) -> bytes:
    body = elements + bytes((-len(elements)) % 4)
    return bytes([0x90, 96]) + struct.pack("!HIIHH", 1, 2, 3, profile, len(body) // 4) + body + b"payload"


def test_mid_and_rid_become_padding_and_the_rest_is_kept() -> None:
    # abs-send-time (id 2), transport-cc (id 3), MID "1" (id 4), RID "h" (id 10): one-byte elements
    pkt = packet(bytes([0x22, 1, 2, 3, 0x31, 0, 7, 0x40, ord("1"), 0xA0, ord("h")]))
    out = blank_extensions(pkt, IDS)
    assert read_extension(out, 4) is None and read_extension(out, 10) is None
    assert read_extension(out, 2) == b"\x01\x02\x03" and read_extension(out, 3) == b"\x00\x07"
    assert len(out) == len(pkt) and RtpPacket.parse(out).payload == b"payload"


def test_two_byte_elements_too() -> None:
    pkt = packet(bytes([4, 2]) + b"12" + bytes([2, 3, 1, 2, 3]), profile=0x1000)
    out = blank_extensions(pkt, IDS)
    assert read_extension(out, 4) is None and read_extension(out, 2) == b"\x01\x02\x03"


def test_a_packet_without_them_is_returned_as_is() -> None:
    pkt = packet(bytes([0x22, 1, 2, 3]))
    assert blank_extensions(pkt, IDS) is pkt
    assert blank_extensions(b"\x80" * 11, IDS) == b"\x80" * 11


@given(st.binary(max_size=80))
def test_any_input_gives_bytes_of_the_same_length(data: bytes) -> None:
    out = blank_extensions(data, IDS)
    assert isinstance(out, bytes) and len(out) == len(data)
