import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.sfu.consumer import Consumer
from roomcast.wire import ParseError
from roomcast.wire.rtp import ONE_BYTE_PROFILE, RtpPacket, unwrap_rtx

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=3).map(tuple),
    extension_profile=st.sampled_from([None, ONE_BYTE_PROFILE, 0x1000]),
    extensions=st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=3).map(tuple),
    padding=st.integers(0, 8),
)


@given(packets)
def test_round_trip(pkt: RtpPacket) -> None:
    if pkt.extension_profile is None:
        pkt = RtpPacket(
            pkt.payload_type,
            pkt.sequence_number,
            pkt.timestamp,
            pkt.ssrc,
            pkt.payload,
            pkt.marker,
            pkt.csrcs,
            None,
            (),
            pkt.padding,
        )
    assert RtpPacket.parse(pkt.serialize()) == pkt


@given(st.binary(max_size=300))
def test_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        RtpPacket.parse(data)
    with contextlib.suppress(ParseError):
        unwrap_rtx(data, 1, 96)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x60\x00",
        struct.pack("!BBHII", 0x40, 96, 1, 2, 3),
        struct.pack("!BBHII", 0x8F, 96, 1, 2, 3),
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 50),
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"\x00\x09",
    ],
    ids=["short", "version", "csrc-past-end", "extension-past-end", "padding-past-payload"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(ParseError):
        RtpPacket.parse(data)


def test_rtx_wrap_then_unwrap_gives_back_the_original() -> None:
    original = RtpPacket(96, 4242, 90000, 0xAAAA, b"frame-bytes", True, (), ONE_BYTE_PROFILE, ((3, b"\x01\x02"),))
    sent: list[bytes] = []
    consumer = Consumer(
        ssrc=0xAAAA,
        kind="video",
        clock_rate=90000,
        send=lambda p: sent.append(bytes(p)),
        rtx_ssrc=0xBBBB,
        rtx_pt={96: 97},
    )
    consumer.forward(original.serialize(), 0xAAAA, 0.0)
    consumer.retransmit([4242])
    rtx = RtpPacket.parse(sent[1])
    assert (rtx.ssrc, rtx.payload_type, rtx.payload[:2]) == (0xBBBB, 97, struct.pack("!H", 4242))
    assert RtpPacket.parse(unwrap_rtx(sent[1], 0xAAAA, 96)) == original
