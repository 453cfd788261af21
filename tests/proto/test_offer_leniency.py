"""What an offer may leave out (docs/interop.md, issue 21): ``a=ssrc`` lines without ``cname`` (or with no
attribute at all) and a missing ``a=msid`` are accepted; the SSRCs and the RTX pairing are still read."""

from __future__ import annotations

from roomcast.proto.jsep import create_answer
from roomcast.wire.sdp import parse
from tests.proto.test_jsep import params
from tests.sfu.test_listener import GSTREAMER_OFFER


def offer_with(video_lines: str) -> str:
    head, audio = GSTREAMER_OFFER.split("m=audio")
    return (head + video_lines + "m=audio" + audio).replace("\n", "\r\n")


def test_ssrc_lines_without_cname_still_name_the_streams() -> None:
    lines = "a=ssrc-group:FID 1234 5678\na=ssrc:1234 msid:gst cam\na=ssrc:5678\n"
    negotiated = create_answer(parse(offer_with(lines)), params("publish"))
    video = negotiated.media[0]
    assert video.remote_ssrcs == (1234,) and video.remote_rtx == {1234: 5678}
    assert video.remote_track_id == "cam"  # the legacy a=ssrc msid: stands in for a=msid


def test_an_m_line_without_msid_or_ssrc_is_accepted_with_no_track_id() -> None:
    negotiated = create_answer(parse(offer_with("")), params("publish"))
    video, audio = negotiated.media
    assert negotiated.answer.media[0].port != 0 and negotiated.answer.media[1].port != 0
    assert video.remote_ssrcs == () and video.remote_track_id is None and audio.remote_track_id is None
