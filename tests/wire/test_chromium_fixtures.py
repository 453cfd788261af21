"""Real packets captured from Chromium 156 (tests/wire/capture_chromium.py), parsed by our wire layer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from roomcast.proto.jsep import AnswerParams, create_answer
from roomcast.wire.demux import PacketKind, classify
from roomcast.wire.rtcp import ReceiverReport, SenderReport, parse_compound, serialize_compound
from roomcast.wire.rtp import RtpPacket, header_length, read_extension
from roomcast.wire.sdp import SessionDescription
from roomcast.wire.stun import ICE_CONTROLLING, PRIORITY, StunMessage, check_fingerprint, check_integrity

CAPTURE = json.loads((Path(__file__).parent / "fixtures" / "chromium.json").read_text())
OFFER = SessionDescription.parse(CAPTURE["offer"])
SERVER_UFRAG = re.search(r"a=ice-ufrag:(\S+)", CAPTURE["answer"]).group(1)  # type: ignore[union-attr]
MID_ID = next(i for m in OFFER.media for i, uri in m.extmaps() if uri.endswith("sdes:mid"))
OFFER_PTS = {c.payload_type: c.name for m in OFFER.media for c in m.codecs()}


@pytest.mark.parametrize("hexdata", CAPTURE["stun"])
def test_chromium_connectivity_checks(hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert classify(data) is PacketKind.STUN
    msg = StunMessage.parse(data)
    assert msg.serialize() == data
    assert check_integrity(data, CAPTURE["ice_pwd"].encode()) and check_fingerprint(data)
    local, _, remote = (msg.username or "").partition(":")
    assert local == SERVER_UFRAG and remote == OFFER.media[0].ice_ufrag
    assert msg.has(ICE_CONTROLLING) and msg.has(PRIORITY)


@pytest.mark.parametrize("hexdata", CAPTURE["rtp"])
def test_chromium_rtp(hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert classify(data) is PacketKind.RTP
    pkt = RtpPacket.parse(data)
    assert pkt.serialize() == data
    assert pkt.payload_type in OFFER_PTS
    assert header_length(data) == len(data) - len(pkt.payload) - pkt.padding
    mid = read_extension(data, MID_ID)
    if mid is not None:
        assert mid.decode() in {m.mid for m in OFFER.media}
    known = {s for m in OFFER.media for s in m.ssrcs()}
    assert pkt.ssrc in known


def test_chromium_sends_opus_and_vp8() -> None:
    names = {OFFER_PTS[RtpPacket.parse(bytes.fromhex(h)).payload_type] for h in CAPTURE["rtp"]}
    assert {"opus", "VP8"} <= names


@pytest.mark.parametrize("hexdata", CAPTURE["rtcp"])
def test_chromium_rtcp(hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert classify(data) is PacketKind.RTCP
    packets = parse_compound(data)
    assert isinstance(packets[0], SenderReport | ReceiverReport)
    assert serialize_compound(packets) == data
    if isinstance(packets[0], SenderReport):
        assert packets[0].ssrc in {s for m in OFFER.media for s in m.ssrcs()}
        assert packets[0].ntp_timestamp >> 32 > 3_900_000_000  # NTP seconds after 2023


def test_chromium_offer_round_trips_and_is_answerable() -> None:
    assert OFFER.serialize() == CAPTURE["offer"]
    kinds = [m.kind for m in OFFER.media]
    assert kinds == ["audio", "video"]
    assert OFFER.bundle_mids() == [m.mid for m in OFFER.media]
    video = OFFER.media[1]
    names = {c.name for c in video.codecs()}
    assert {"VP8", "VP9", "H264", "rtx"} <= names
    assert video.fingerprints[0][0] == "sha-256"
    answer = create_answer(OFFER, AnswerParams("abcd", "p" * 24, "AA:" * 31 + "AA", [("127.0.0.1", 9)]))
    negotiated = {m.kind: m for m in answer.media}
    assert negotiated["audio"].codecs[0].name == "opus"
    assert negotiated["video"].rtx  # RTX kept for the video codecs
    assert set(negotiated["video"].remote_ssrcs) == set(video.ssrcs()) - set(negotiated["video"].remote_rtx.values())
