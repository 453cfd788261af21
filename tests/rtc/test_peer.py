"""``$peer`` (one peer connection both ways): which offered receive-only m-line carries which track."""

from __future__ import annotations

from roomcast.rtc.peer import assign_tracks, peer_direction
from roomcast.wire.sdp import SessionDescription

HEAD = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {mids}\r\n"


def mline(kind: str, mid: str, direction: str) -> str:
    pt = "111 opus/48000/2" if kind == "audio" else "96 VP8/90000"
    return (
        f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt.split()[0]}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na={direction}\r\n"
        f"a=rtcp-mux\r\na=rtpmap:{pt}\r\n"
    )


def offer(*lines: tuple[str, str, str]) -> str:
    return HEAD.format(mids=" ".join(mid for _, mid, _ in lines)) + "".join(mline(*x) for x in lines)


def test_tracks_go_to_free_receive_only_mlines_of_their_kind_in_order() -> None:
    sdp = offer(
        ("audio", "0", "recvonly"), ("video", "1", "recvonly"), ("video", "2", "sendonly"), ("video", "3", "recvonly")
    )
    got = assign_tracks(sdp, {"TR_a": "audio", "TR_v1": "video", "TR_v2": "video"}, {})
    assert got.subscriptions == {"0": "TR_a", "1": "TR_v1", "3": "TR_v2"}  # never the client's sending m-line
    assert got.missing == {}


def test_a_track_keeps_its_mline_and_the_shortfall_is_counted() -> None:
    sdp = offer(("video", "1", "recvonly"), ("video", "3", "recvonly"))
    got = assign_tracks(
        sdp, {"TR_new": "video", "TR_old": "video", "TR_more": "video", "TR_au": "audio"}, {"3": "TR_old"}
    )
    assert got.subscriptions == {"3": "TR_old", "1": "TR_new"}
    assert got.missing == {"video": 1, "audio": 1}


def test_a_track_no_longer_wanted_frees_its_mline_and_garbage_assigns_nothing() -> None:
    sdp = offer(("video", "1", "recvonly"))
    assert assign_tracks(sdp, {"TR_b": "video"}, {"1": "TR_gone"}).subscriptions == {"1": "TR_b"}
    assert assign_tracks("not sdp", {"TR_b": "video"}, {}).subscriptions == {}


def test_direction_sends_on_assigned_mlines_and_receives_only_with_the_grant() -> None:
    media = SessionDescription.parse(offer(("video", "1", "recvonly"), ("video", "2", "sendonly"))).media
    allowed, denied = peer_direction(["1"], True), peer_direction(["1"], False)
    assert [allowed(m) for m in media] == ["sendonly", "recvonly"]
    assert [denied(m) for m in media] == ["sendonly", "inactive"]
