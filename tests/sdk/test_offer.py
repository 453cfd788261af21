"""The SDK's offers: H.264 publishing carries mode 1 Constrained Baseline and its RTX; subscribers offer both."""

from __future__ import annotations

from roomcast.proto.codecs import CodecPolicy, select_codecs
from roomcast.sdk.offer import OfferedTrack, client_offer
from roomcast.wire.sdp import SessionDescription


def offer(*tracks: OfferedTrack) -> SessionDescription:
    return SessionDescription.parse(client_offer(list(tracks), "ufrag", "pwd" * 8, "AB:CD"))


def test_h264_publish_offer() -> None:
    m = offer(OfferedTrack("video", "sendonly", "cam", 1111, 2222, video_codecs=("h264",))).media[0]
    codecs = {c.payload_type: c for c in m.codecs()}
    assert [c.mime for c in m.codecs()] == ["h264", "rtx"]
    assert codecs[102].fmtp_params() == {
        "packetization-mode": "1",
        "profile-level-id": "42e01f",
        "level-asymmetry-allowed": "1",
    }
    assert codecs[103].fmtp_params() == {"apt": "102"} and "nack pli" in codecs[102].rtcp_fb
    media, rtx = select_codecs(m, CodecPolicy())  # what the server keeps: H.264 and its RTX
    assert [c.payload_type for c in media] == [102] and rtx[102].payload_type == 103


def test_subscribe_offer_has_vp8_and_h264_and_vp8_publish_is_unchanged() -> None:
    video, audio = offer(
        OfferedTrack("video", "recvonly", video_codecs=("vp8", "h264")), OfferedTrack("audio", "recvonly")
    ).media
    assert [(c.payload_type, c.mime) for c in video.codecs()] == [(96, "vp8"), (97, "rtx"), (102, "h264"), (103, "rtx")]
    assert [c.mime for c in audio.codecs()] == ["opus"]
    vp8 = offer(OfferedTrack("video", "sendonly", "cam", 1, 2)).media[0]
    assert [(c.payload_type, c.fmtp) for c in vp8.codecs()] == [(96, None), (97, "apt=96")]
