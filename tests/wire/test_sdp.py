"""SDP parser/serialiser against real Chromium offers (captured by ``capture_sdp.py``), plus fuzzing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.sdp import (
    MAX_LINES,
    Candidate,
    Extmap,
    MediaDescription,
    SessionDescription,
    Simulcast,
    SsrcGroup,
    parse,
)

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ["audio_video", "audio_video_data", "data", "simulcast", "recvonly"]
TEXT = {name: (FIXTURES / f"sdp_{name}.sdp").read_bytes().decode() for name in NAMES}
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


@pytest.mark.parametrize("name", NAMES)
def test_chromium_offer_session_and_transport(name: str) -> None:
    offer = parse(TEXT[name])
    assert offer.origin.startswith("- ") and offer.origin.endswith(" 2 IN IP4 127.0.0.1")
    assert offer.name == "-" and offer.timing == "0 0"
    assert offer.bundle_mids() == [m.mid for m in offer.media]
    assert offer.groups[0].semantics == "BUNDLE"
    assert offer.extmap_allow_mixed and not offer.ice_lite
    for m in offer.media:
        assert m.port > 0 and m.connection == "IN IP4 127.0.0.1"
        assert m.ice_ufrag and len(m.ice_ufrag) >= 4 and m.ice_pwd and len(m.ice_pwd) >= 22
        assert m.ice_options == ("trickle",)
        (algorithm, digest), *_ = m.fingerprints
        assert algorithm == "sha-256" and len(bytes.fromhex(digest.replace(":", ""))) == 32
        assert m.setup == "actpass"
        udp = [c for c in m.ice_candidates if c.transport == "udp"]
        assert udp and udp[0].address == "127.0.0.1" and udp[0].port == m.port and udp[0].type == "host"
        assert udp[0].component == 1 and ("generation", "0") in udp[0].extensions
        assert [c.serialize() for c in m.ice_candidates] == m.candidates
        if m.kind != "application":
            assert m.rtcp_mux and m.rtcp_rsize and m.proto == "UDP/TLS/RTP/SAVPF"
            assert MID_URI in {e.uri for e in m.header_extensions}


def test_audio_video_offer_codecs_and_ssrcs() -> None:
    offer = parse(TEXT["audio_video"])
    audio, video = offer.media
    assert (audio.kind, audio.mid, audio.direction, video.kind, video.mid) == ("audio", "0", "sendrecv", "video", "1")
    opus = audio.codecs()[0]
    assert (opus.name, opus.clock_rate, opus.channels) == ("opus", 48000, 2)
    assert opus.fmtp_params()["useinbandfec"] == "1" and "transport-cc" in opus.rtcp_fb
    assert {"PCMU", "PCMA"} <= {c.name for c in audio.codecs()}
    vp8 = next(c for c in video.codecs() if c.name == "VP8")
    assert vp8.clock_rate == 90000 and vp8.channels is None and {"nack", "nack pli", "ccm fir"} <= set(vp8.rtcp_fb)
    rtx = next(c for c in video.codecs() if c.mime == "rtx" and c.fmtp_params()["apt"] == str(vp8.payload_type))
    assert rtx.clock_rate == 90000
    h264 = [c.fmtp_params() for c in video.codecs() if c.name == "H264"]
    assert {"packetization-mode", "profile-level-id"} <= set(h264[0])
    (group,) = video.ssrc_groups()
    assert isinstance(group, SsrcGroup) and group.semantics == "FID" and len(group.ssrcs) == 2
    ssrcs = video.ssrcs()
    assert set(ssrcs) == set(group.ssrcs)
    stream, track = (video.msid or "").split()
    assert all(attrs["msid"] == f"{stream} {track}" and attrs["cname"] for attrs in ssrcs.values())
    assert audio.msid is not None and audio.msid.split()[0] == stream
    ext = {e.uri: e for e in video.header_extensions}
    assert isinstance(ext[MID_URI], Extmap) and (ext[MID_URI].id, MID_URI) in video.extmaps()


def test_data_offers() -> None:
    (data,) = parse(TEXT["data"]).media
    assert (data.kind, data.proto, data.fmts) == ("application", "UDP/DTLS/SCTP", ("webrtc-datachannel",))
    assert (data.sctp_port, data.max_message_size) == (5000, 262144) and data.codecs() == []
    kinds = [m.kind for m in parse(TEXT["audio_video_data"]).media]
    assert kinds == ["audio", "video", "application"]


def test_simulcast_offer() -> None:
    (video,) = parse(TEXT["simulcast"]).media
    assert video.direction == "sendonly"
    assert [(r.id, r.direction) for r in video.rids()] == [("q", "send"), ("h", "send"), ("f", "send")]
    assert video.simulcast == Simulcast(send=(("q",), ("h",), ("f",)))
    uris = {e.uri for e in video.header_extensions}
    assert "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in uris


def test_recvonly_offer_has_no_sources() -> None:
    offer = parse(TEXT["recvonly"])
    assert [m.direction for m in offer.media] == ["recvonly", "recvonly"]
    assert all(m.ssrcs() == {} and m.msid is None for m in offer.media)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    offer = parse(TEXT[name])
    assert offer.serialize() == TEXT[name]  # Chromium's own text, byte for byte (CRLF)
    assert parse(offer.serialize()) == offer
    assert SessionDescription.parse(TEXT[name]) == offer
    assert parse(TEXT[name].replace("\r\n", "\n")) == offer  # LF-only input is accepted


def test_unknown_lines_and_attributes_survive() -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\ni=info\r\nc=IN IP4 0.0.0.0\r\nb=AS:30\r\nt=0 0\r\n"
        "a=x-session:1\r\na=flag\r\nm=audio 9 RTP/AVP 0\r\ni=media\r\nb=AS:64\r\na=x-custom:a b c\r\na=empty:\r\n"
    )
    desc = parse(text)
    assert desc.serialize() == text
    (m,) = desc.media
    assert m.value("x-custom") == "a b c" and m.attributes[-1] == ("empty", "") and desc.attributes[1] == ("flag", None)
    assert m.codecs()[0].name == "PCMU"  # RFC 3551 static payload type without a=rtpmap


def test_candidate_with_related_address_round_trips() -> None:
    value = "842163049 1 udp 1677729535 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 51000 generation 0"
    c = Candidate.parse(value)
    assert (c.type, c.related_address, c.related_port, c.extensions) == (
        "srflx",
        "10.0.0.2",
        51000,
        (("generation", "0"),),
    )
    assert c.serialize() == value
    tcp = Candidate.parse("1 1 TCP 1518280447 abc.local 9 typ host tcptype active")
    assert tcp.transport == "tcp" and tcp.address == "abc.local" and tcp.extensions == (("tcptype", "active"),)


def test_media_description_built_in_code_is_decoded() -> None:
    m = MediaDescription("video", 9, "UDP/TLS/RTP/SAVPF", ("96",), None, (("mid", "v"), ("rtpmap", "96 VP8/90000")))
    assert m.mid == "v" and m.direction == "sendrecv" and m.codecs()[0].name == "VP8"
    with pytest.raises(ParseError):
        MediaDescription("video", 9, "X", ("96",), None, (("rtpmap", "96 VP8/ninety"),))


BASE = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


@pytest.mark.parametrize(
    "line",
    [
        "a=rtpmap:x VP8/90000",
        "a=rtpmap:96 VP8",
        "a=rtpmap:200 VP8/90000",
        "a=rtpmap:96 VP8/90000/0",
        "a=fmtp:abc x=1",
        "a=rtcp-fb:x nack",
        "a=extmap:zz urn:x",
        "a=extmap:0 urn:x",
        "a=extmap:1/sideways urn:x",
        "a=extmap:1",
        "a=ssrc:abc cname:x",
        "a=ssrc:4294967296 cname:x",
        "a=ssrc-group:FID 1 x",
        "a=ssrc-group:",
        "a=fingerprint:sha-256",
        "a=candidate:1 1 udp 1 1.2.3.4 99999 typ host",
        "a=candidate:1 1 udp 1 1.2.3.4 9 host",
        "a=candidate:1 1 udp 1 1.2.3.4 9 typ host generation",
        "a=rid:q sideways",
        "a=simulcast:send",
        "a=simulcast:send q;;h",
        "a=sctp-port:70000",
        "a=max-message-size:-1",
        "a=",
        "A=x",
        "garbage",
        "o=second origin",
    ],
)
def test_malformed_known_lines_are_parse_errors(line: str) -> None:
    with pytest.raises(ParseError):
        parse(BASE + line + "\r\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n",
        "v=1\r\n",
        "v=0\r\nm=audio\r\n",
        "v=0\r\nm=audio 65536 RTP/AVP 0\r\n",
        "v=0\r\nm=audio \uff19 RTP/AVP 0\r\n",  # a non-ASCII digit
        "v=0\r\na=x\rb\r\n",
        "v=0\r\na=x\0\r\n",
    ],
)
def test_malformed_sdp(text: str) -> None:
    with pytest.raises(ParseError):
        parse(text)


def test_limits() -> None:
    start = time.perf_counter()
    with pytest.raises(ParseError, match="lines"):
        parse("v=0\r\n" + "a=x\r\n" * MAX_LINES)
    with pytest.raises(ParseError, match="larger"):
        parse("v=0\r\n" + "a=" + "x" * 70_000 + "\r\n")
    with pytest.raises(ParseError, match="larger"):
        parse("v=0\r\na=" + "é" * 33_000 + "\r\n")  # 64 KiB is counted in UTF-8 bytes
    with pytest.raises(ParseError, match="media sections"):
        parse("v=0\r\n" + "m=audio 9 RTP/AVP 0\r\n" * 65)
    assert time.perf_counter() - start < 1.0
    assert len(parse("v=0\r\n" + "a=x\r\n" * (MAX_LINES - 1)).attributes) == MAX_LINES - 1
    assert len(parse("v=0\r\n" + "m=audio 9 RTP/AVP 0\r\n" * 64).media) == 64


def _check_parse(text: str) -> None:
    """Only ParseError may escape; whatever parses must survive serialize → parse unchanged."""
    try:
        desc = parse(text)
    except ParseError:
        return
    assert parse(desc.serialize()) == desc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_fuzz_random_text(text: str) -> None:
    _check_parse(text)
    _check_parse("v=0\r\n" + text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    name=st.sampled_from(NAMES),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "duplicate", "replace_char", "insert", "truncate"]),
            st.integers(min_value=0, max_value=10_000),
            st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
        ),
        max_size=6,
    ),
)
def test_fuzz_mutated_chromium_offers(name: str, edits: list[tuple[str, int, str]]) -> None:
    lines = TEXT[name].split("\r\n")
    for op, pos, junk in edits:
        i = pos % len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "replace_char" and lines[i]:
            j = pos % len(lines[i])
            lines[i] = lines[i][:j] + junk + lines[i][j + 1 :]
        elif op == "insert":
            lines.insert(i, junk)
        elif op == "truncate":
            lines[i] = lines[i][: pos % (len(lines[i]) + 1)]
        if not lines:
            lines = [""]
    _check_parse("\r\n".join(lines))
