"""The media service's layer choice: a subscriber of a simulcast track can be told which layer to get."""

from __future__ import annotations

from pathlib import Path

from tests.rtc.test_service import OFFER, context, service

SIMULCAST = (Path(__file__).parent.parent / "wire" / "fixtures" / "sdp_simulcast.sdp").read_text()


def test_a_simulcast_subscriber_layer_is_set_through_the_service() -> None:
    media, _, _ = service()
    media.handle_offer("PA_1", "$publish", SIMULCAST, context("alice"))
    media.handle_offer("PA_3", "$publish", OFFER, context("carol"))
    tracks = {(t.participant, t.kind): t.sid for t in media.room_tracks("r")}
    simulcast, plain = tracks[("alice", "video")], tracks[("carol", "video")]
    offer = OFFER.replace("a=sendrecv", "a=recvonly")
    media.handle_offer("PA_2", "$subscribe", offer, context("bob", subscriptions={"0": simulcast, "1": plain}))
    assert media.set_video_layer("r", "PA_2", simulcast, 0, 1)
    assert not media.set_video_layer("r", "PA_2", plain, 0)  # one layer only: nothing to choose
    assert not media.set_video_layer("r", "PA_1", simulcast, 0)  # alice does not receive it
    assert not media.set_video_layer("nowhere", "PA_2", simulcast, 0)
    stats = media.room_stats("r")
    assert stats is not None
    entries = {e["track"]: e for e in stats["participants"]["bob"]["consumers"]}  # type: ignore[index]
    assert entries[simulcast]["target_spatial"] == 0 and entries[simulcast]["target_temporal"] == 1
    assert "target_spatial" not in entries[plain]
    assert [t["simulcast"] for t in stats["tracks"] if t["sid"] == simulcast] == [True]  # type: ignore[index, union-attr]
