"""``$peer``: one connection that publishes, subscribes and carries data channels (LiveKit's single peer
connection), on the media service with a fake endpoint."""

from __future__ import annotations

from tests.rtc.test_service import OFFER, context, service

DATA = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sctp-port:5000\r\n"
PEER_OFFER = OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2").rstrip("\r\n") + "\r\n" + DATA


def test_one_connection_publishes_with_the_announced_sids_and_carries_data() -> None:
    media, endpoint, _ = service()
    msid_video = next(
        line.split()[1] for line in OFFER.split("\r\n") if line.startswith("a=msid:") and "edd754ff" in line
    )
    ctx = context("alice", track_sids={msid_video: "TR_announced"}, data_labels=("_reliable", "_lossy"))
    answer = media.handle_offer("PA_1", "$peer", PEER_OFFER, ctx)
    assert answer.count("a=recvonly") == 2 and "m=application 9" not in answer  # data accepted (a real port)
    assert media.transports() == 1
    tracks = {t.kind: t.sid for t in media.room_tracks("r")}
    assert tracks["video"] == "TR_announced" and tracks["audio"].startswith("TR_")
    transport = next(iter(endpoint.connections))
    assert transport.sctp is not None and transport.sctp.channel_limits == {"_reliable": 1, "_lossy": 1}


def test_it_sends_the_tracks_assigned_to_its_mlines_named_as_asked_and_receives_on_the_others() -> None:
    media, _, _ = service()
    media.handle_offer("PA_1", "$peer", PEER_OFFER, context("alice"))
    video = next(t.sid for t in media.room_tracks("r") if t.kind == "video")
    ctx = context("bob", subscriptions={"1": video}, stream_id="{owner}|{track}")
    answer = media.handle_offer("PA_2", "$peer", PEER_OFFER, ctx)
    # m-line 1 carries alice's video out (an m-line either sends or receives: LiveKit clients offer one-way
    # m-lines), m-line 0 receives bob's microphone on the same connection
    assert "a=sendonly" in answer and "a=recvonly" in answer and "a=sendrecv" not in answer
    assert f"a=msid:PA_1|{video} {video}" in answer
    assert sorted((t.participant, t.kind) for t in media.room_tracks("r") if t.participant == "bob") == [
        ("bob", "audio")
    ]
    stats = media.room_stats("r")
    assert stats is not None and stats["participants"]["bob"]["consumers"][0]["track"] == video  # type: ignore[index]


def test_without_can_publish_nothing_is_received_and_without_can_subscribe_nothing_sent() -> None:
    media, _, _ = service()
    media.handle_offer("PA_1", "$peer", PEER_OFFER, context("alice"))
    video = next(t.sid for t in media.room_tracks("r") if t.kind == "video")
    viewer = media.handle_offer(
        "PA_2", "$peer", PEER_OFFER, context("viewer", can_publish=False, subscriptions={"1": video})
    )
    assert "a=sendonly" in viewer and "a=recvonly" not in viewer and "a=sendrecv" not in viewer
    assert {t.participant for t in media.room_tracks("r")} == {"alice"}
    blind = media.handle_offer(
        "PA_3", "$peer", PEER_OFFER, context("blind", can_subscribe=False, subscriptions={"1": video})
    )
    assert "a=sendonly" not in blind and "a=sendrecv" not in blind
