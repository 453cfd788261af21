"""H.264 packetization modes and profiles between publishers and subscribers (issue 21).

A publisher's m-line that offers H.264 only without fmtp (packetization-mode 0, as GStreamer's
webrtcbin offers before its encoder's caps exist) is accepted: single NAL unit packets are valid
mode-1 packets (RFC 6184 §6.2-6.3), so every mode-1 subscriber decodes them. Mode 0 is never what we
send (a mode-1 publisher's FU-A/STAP-A would break a mode-0 receiver), and a browser that offers both
keeps its answer as it was (mode 1 only).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from roomcast.proto.jsep import NegotiationError, SendTrack, create_answer
from roomcast.sfu.producer import payload_type_map
from roomcast.wire.sdp import Codec, parse
from tests.proto.test_jsep import TEXT, params
from tests.sfu.test_listener import GSTREAMER_OFFER

MODE0_OFFER = (
    GSTREAMER_OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 H264/90000")
    .replace("a=sendonly", "a=sendrecv")
    .replace("\n", "\r\n")
)


def test_a_publisher_offering_h264_without_fmtp_is_answered_mode_0() -> None:
    negotiated = create_answer(parse(MODE0_OFFER), params("publish"))
    video = negotiated.answer.media[0]
    assert video.port != 0 and negotiated.bundle_mids == ("video0", "audio1")  # the BUNDLE tag stays
    (codec,) = video.codecs()
    assert (codec.name, codec.fmtp) == ("H264", None)  # the offerer's own (absent) fmtp: mode 0
    assert negotiated.media[0].direction == "recvonly"


@pytest.mark.parametrize("mode", ["subscribe", "echo"])
def test_mode_0_is_never_what_we_send(mode: str) -> None:
    """On an m-line we send on, the mode-0-only H.264 m-line has no codec: rejected, and being the only
    video the offer fails with a typed error when nothing else is acceptable."""
    offer = parse(MODE0_OFFER)
    tracks = {"video0": SendTrack("alice", "cam"), "audio1": SendTrack("alice", "mic")}
    negotiated = create_answer(offer, params(mode, send_tracks=tracks if mode == "subscribe" else {}))  # type: ignore[arg-type]
    assert negotiated.answer.media[0].port == 0 and negotiated.bundle_mids == ("audio1",)
    video_only = parse(MODE0_OFFER.split("m=audio")[0].replace("a=group:BUNDLE video0 audio1", "a=group:BUNDLE video0"))
    with pytest.raises(NegotiationError) as refused:
        create_answer(video_only, params(mode, send_tracks=tracks if mode == "subscribe" else {}))  # type: ignore[arg-type]
    assert refused.value.code == "no_acceptable_media"


def test_a_browser_offering_both_modes_keeps_only_mode_1() -> None:
    negotiated = create_answer(parse(TEXT["audio_video"]), params("publish"))
    modes = {c.fmtp_params().get("packetization-mode") for c in negotiated.media[1].codecs if c.name == "H264"}
    assert modes == {"1"}


def h264(pt: int, fmtp: str | None) -> Codec:
    return Codec(pt, "H264", 90000, None, fmtp, ("nack", "nack pli"))


def test_a_mode_0_publisher_maps_onto_the_subscribers_mode_1_entry_of_its_profile() -> None:
    subscriber = SimpleNamespace(
        codecs=(
            h264(102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"),
            h264(108, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
        )
    )
    no_fmtp = SimpleNamespace(codecs=(h264(96, None),))  # absent profile-level-id: Baseline (RFC 6184 §8.1)
    assert payload_type_map(no_fmtp, subscriber) == {96: 108}  # type: ignore[arg-type]
    gst = SimpleNamespace(codecs=(h264(96, "packetization-mode=1;profile-level-id=42c01e"),))
    assert payload_type_map(gst, subscriber) == {96: 108}  # type: ignore[arg-type]  # levels differ: same map
    high = SimpleNamespace(codecs=(h264(97, "packetization-mode=0;profile-level-id=640032"),))
    assert payload_type_map(high, subscriber) == {97: 102}  # type: ignore[arg-type]


def test_a_rejected_bundle_tag_moves_to_the_next_accepted_m_line_and_keeps_transport_attributes() -> None:
    """RFC 8843 §7.3.3: the offerer-tagged m-line (here L16, which we do not forward) is rejected, so the
    answer's BUNDLE group starts with the next accepted m-line, which carries our candidates. The
    rejected m-line keeps ICE credentials, fingerprint and setup: webrtcbin refuses an answer where any
    m-line lacks them ("No fingerprint lines in sdp for media 0") and never connects."""
    l16_first = GSTREAMER_OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 L16/16000").replace("\n", "\r\n")
    negotiated = create_answer(parse(l16_first), params("publish"))
    rejected, tagged = negotiated.answer.media
    assert rejected.port == 0 and rejected.mid == "video0" and not rejected.ice_candidates
    assert (rejected.ice_ufrag, rejected.ice_pwd, rejected.setup) == ("srvU", "server-password-0123456789", "passive")
    assert rejected.fingerprints == tagged.fingerprints and rejected.fingerprints
    assert negotiated.answer.bundle_mids() == ["audio1"] and tagged.port != 0 and tagged.ice_candidates
