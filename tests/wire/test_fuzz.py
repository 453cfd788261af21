"""Every wire parser, fed arbitrary and mutated bytes, raises nothing but ParseError (RELIABILITY B1-B4)."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.rtcp import GenericNack, Pli, ReceiverReport, ReportBlock, SenderReport, parse_compound
from roomcast.wire.sdp import SessionDescription
from roomcast.wire.stun import StunMessage, binding_request, peek_username

STUN = binding_request(
    b"\x01" * 12, "abcd:efgh", "pwd" * 8, priority=1, controlling=True, tie_breaker=7, use_candidate=True
)
RTCP = (
    SenderReport(1, 2, 3, 4, 5, (ReportBlock(9, 1, -3, 100, 4, 5, 6),)).serialize()
    + GenericNack(1, 2, (10, 11, 20)).serialize()
    + Pli(1, 2).serialize()
    + ReceiverReport(7).serialize()
)


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    def mutate(data: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
        out = bytearray(data)
        for pos, value in flips:
            out[pos % len(out)] = value
        return bytes(out[: max(0, len(out) - cut)])

    return st.builds(
        mutate,
        st.just(seed),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
        st.integers(0, 8),
    )


@settings(max_examples=400)
@given(st.binary(max_size=300) | mutations(STUN))
def test_stun_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        StunMessage.parse(data)
    peek_username(data)  # never raises at all


@settings(max_examples=400)
@given(st.binary(max_size=300) | mutations(RTCP))
def test_rtcp_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_compound(data)


@settings(max_examples=200)
@given(
    st.text(max_size=400)
    | st.lists(
        st.sampled_from(
            [
                "v=0",
                "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                "a=rtpmap:111 opus/48000/2",
                "a=rtpmap:x",
                "a=extmap:zz",
                "a=ssrc:1 cname:x",
                "a=ssrc:abc",
                "m=video 99999999 X",
                "a=fingerprint:sha-256",
                "garbage",
                "a=mid:0",
            ]
        ),
        max_size=30,
    ).map("\r\n".join)
)
def test_sdp_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        desc = SessionDescription.parse(text)
        for m in desc.media:
            m.codecs()
            m.extmaps()
            m.ssrcs()
            m.ssrc_groups()
            _ = m.fingerprints


def test_huge_sdp_is_refused_quickly() -> None:
    text = "v=0\r\n" + "a=x\r\n" * 10_001
    try:
        SessionDescription.parse(text)
    except ParseError as exc:
        assert "larger" in str(exc) or "lines" in str(exc)
    else:
        raise AssertionError("a 10,001-line SDP was accepted")


def test_rtcp_length_lie_is_refused() -> None:
    lie = bytearray(Pli(1, 2).serialize())
    struct.pack_into("!H", lie, 2, 200)
    try:
        parse_compound(bytes(lie))
    except ParseError as exc:
        assert "length" in str(exc)
    else:
        raise AssertionError("accepted a lying length field")


@settings(max_examples=200)
@given(st.binary(max_size=200), st.lists(st.binary(max_size=40), max_size=5))
def test_vp8_and_ivf_only_parse_error(data: bytes, payloads: list[bytes]) -> None:
    from roomcast.wire.vp8 import depacketize, read_ivf

    with contextlib.suppress(ParseError):
        read_ivf(b"DKIF" + data)
    with contextlib.suppress(ParseError):
        depacketize(payloads)


def test_transport_cc_feedback_decodes_chunks_and_deltas() -> None:
    from roomcast.wire.rtcp import TransportCC

    # two-bit status vector (7 symbols): 1,1,0,2,1,0,0; then a run-length chunk of "small delta" (8 in all)
    vector = 0xC000 | (1 << 12) | (1 << 10) | (0 << 8) | (2 << 6) | (1 << 4)
    run = (1 << 13) | 3
    deltas = bytes([4, 8]) + struct.pack("!h", -2) + bytes([12, 1])
    fci = struct.pack("!HHI", 100, 8, (0x000010 << 8) | 7) + struct.pack("!HH", vector, run) + deltas
    fci += b"\x00" * (-len(fci) % 4)
    packet = struct.pack("!BBHII", 0x80 | 15, 205, 2 + len(fci) // 4, 11, 22) + fci
    (twcc,) = parse_compound(packet)
    assert isinstance(twcc, TransportCC)
    assert (twcc.base_seq, twcc.reference_time, twcc.fb_count) == (100, 16, 7)
    assert tuple(twcc.statuses) == (1, 1, 0, 2, 1, 0, 0, 1)
    assert twcc.deltas == (4, 8, -2, 12, 1)
    assert twcc.serialize() == packet


def test_transport_cc_status_storm_is_refused() -> None:
    fci = struct.pack("!HHI", 0, 65535, 0) + struct.pack("!H", (1 << 13) | 0x1FFF)
    packet = struct.pack("!BBHII", 0x80 | 15, 205, 2 + (len(fci) + 2) // 4, 1, 2) + fci + b"\x00\x00"
    try:
        parse_compound(packet)
    except ParseError as exc:
        assert "too many" in str(exc)
    else:
        raise AssertionError("a 65,535-packet transport-cc report was expanded")
