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
