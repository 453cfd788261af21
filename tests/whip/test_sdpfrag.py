"""RFC 8840 fragments: what PATCH bodies parse to, and that any text either parses or is a SdpFragError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.whip.sdpfrag import SdpFragError, answer_sdpfrag, parse_sdpfrag

# what simple-whip-client (GStreamer webrtcbin) PATCHes while it gathers (RFC 9725 §4.3.1)
TRICKLE = (
    "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
    "a=candidate:1 1 UDP 2122252543 127.0.0.2 35161 typ host\r\na=end-of-candidates\r\n"
)


def test_trickle_fragment() -> None:
    frag = parse_sdpfrag(TRICKLE)
    assert (frag.ice_ufrag, frag.ice_pwd, frag.mids) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1", ("0",))
    assert frag.candidates == ("1 1 UDP 2122252543 127.0.0.2 35161 typ host",) and frag.end_of_candidates


@pytest.mark.parametrize(
    "body",
    [
        "",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n",  # a whole description
        "a=ice-ufrag:only\r\n",  # a ufrag without its password
        "garbage",
        "a=ice-pwd:x\x00y\r\na=ice-ufrag:u\r\n",
    ],
)
def test_not_a_fragment(body: str) -> None:
    with pytest.raises(SdpFragError):
        parse_sdpfrag(body)


def test_answer_fragment_round_trips() -> None:
    text = answer_sdpfrag("uf", "pw", ["1 1 udp 2130706431 127.0.0.1 7882 typ host"], "0")
    frag = parse_sdpfrag(text)
    assert (frag.ice_ufrag, frag.ice_pwd, frag.mids, frag.end_of_candidates) == ("uf", "pw", ("0",), True)


@given(st.text(max_size=400))
def test_any_text_parses_or_is_refused(text: str) -> None:
    with contextlib.suppress(SdpFragError):
        parse_sdpfrag(text)
