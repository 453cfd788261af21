"""The media service on its own: offers → transports, limits, ICE restart, identical re-offers and the close
cascade, with a fake endpoint standing in for the UDP socket (no server process, no sockets)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.webrtc import WebRtcTransport
from roomcast.rtc.api import MediaError, OfferContext, PublishedTrack
from roomcast.rtc.service import MediaService

OFFER = json.loads((Path(__file__).parent.parent / "wire" / "fixtures" / "chromium.json").read_text())["offer"]
CERTIFICATE = DtlsCertificate.generate()


class FakeEndpoint:
    """Records what the service asks of the socket side."""

    def __init__(self) -> None:
        self.local_address = ("127.0.0.1", 7882)
        self.drops: Counter[str] = Counter()
        self.datagrams_in = self.datagrams_out = 0
        self.connections: dict[WebRtcTransport, Callable[[], None]] = {}
        self.ufrags: dict[str, WebRtcTransport] = {}
        self.removed: list[WebRtcTransport] = []
        self.pokes = 0

    def add(self, conn: WebRtcTransport, on_activity: Callable[[], None]) -> None:
        self.connections[conn] = on_activity
        self.ufrags[conn.local_ufrag] = conn

    def add_ufrag(self, conn: WebRtcTransport, ufrag: str) -> None:
        self.ufrags[ufrag] = conn

    def retire_ufrag(self, conn: WebRtcTransport, ufrag: str, keep: tuple[str, int] | None = None) -> None:
        self.ufrags.pop(ufrag, None)

    def remove(self, conn: WebRtcTransport) -> None:
        self.connections.pop(conn, None)
        self.removed.append(conn)
        for ufrag in [u for u, c in self.ufrags.items() if c is conn]:
            del self.ufrags[ufrag]

    def flush(self, conn: WebRtcTransport) -> None:
        pass

    def poke(self, conn: WebRtcTransport) -> None:
        self.pokes += 1

    def close(self) -> None:
        self.connections.clear()


def service(**limits: int) -> tuple[MediaService, FakeEndpoint, list[tuple[str, list[PublishedTrack]]]]:
    endpoint = FakeEndpoint()
    announced: list[tuple[str, list[PublishedTrack]]] = []
    media = MediaService(endpoint, CERTIFICATE, ["127.0.0.1"], clock=lambda: 0.0)
    media.on_tracks_changed = lambda room, tracks: announced.append((room, tracks))
    for name, value in limits.items():
        setattr(media, name, value)
    return media, endpoint, announced


def context(identity: str, **fields: object) -> OfferContext:
    return OfferContext(room="r", identity=identity, **fields)  # type: ignore[arg-type]


def ufrag_of(sdp: str) -> str:
    found = re.search(r"a=ice-ufrag:(\S+)", sdp)
    assert found
    return found.group(1)


def test_a_publish_offer_makes_one_transport_and_announces_its_tracks() -> None:
    media, endpoint, announced = service()
    answer = media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    assert "a=recvonly" in answer and ufrag_of(answer) in endpoint.ufrags
    assert media.transports() == 1 and len(endpoint.connections) == 1
    tracks = media.room_tracks("r")
    assert sorted(t.kind for t in tracks) == ["audio", "video"] and {t.participant for t in tracks} == {"alice"}
    assert announced and announced[-1][0] == "r"  # no event loop here: announced at once, not debounced


def test_max_incoming_bitrate_is_the_remb_publishers_get_with_their_receiver_reports() -> None:
    """It was sent once, as the publish answer went out: before SRTP keys existed, so it never left."""
    from roomcast.sfu.router import PUBLISHER_REMB

    media, _, _ = service(max_incoming_bitrate=700_000)
    media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    assert media.routers["r"].publisher_remb == 700_000  # sent with every receiver report (tick)
    media, _, _ = service()
    media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    assert media.routers["r"].publisher_remb == PUBLISHER_REMB


def test_a_subscriber_gets_the_published_tracks_it_names() -> None:
    media, _, _ = service()
    media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    video = next(t.sid for t in media.room_tracks("r") if t.kind == "video")
    offer = OFFER.replace("a=sendrecv", "a=recvonly")
    answer = media.handle_offer("PA_2", "$subscribe", offer, context("bob", subscriptions={"1": video}))
    assert answer.count("a=sendonly") == 1
    stats = media.room_stats("r")
    assert stats is not None
    assert [t["subscribers"] for t in stats["tracks"] if t["kind"] == "video"] == [1]  # type: ignore[index, union-attr]


def test_limits_refuse_with_typed_errors() -> None:
    media, _, _ = service(max_tracks_per_participant=1)
    with pytest.raises(MediaError) as info:
        media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    assert info.value.code == "too_many_tracks"
    media, _, _ = service(max_publishers=1)
    media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    with pytest.raises(MediaError) as info:
        media.handle_offer("PA_2", "$publish", OFFER, context("bob"))
    assert info.value.code == "too_many_publishers"
    for target, sdp, code in [("$nowhere", OFFER, "unknown_endpoint"), ("$publish", "garbage", "invalid_sdp")]:
        with pytest.raises(MediaError) as info:
            media.handle_offer("PA_3", target, sdp, context("carol"))
        assert info.value.code == code


def test_an_ice_restart_keeps_the_transport_and_changes_only_the_credentials() -> None:
    media, endpoint, _ = service()
    first = media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    transport = next(iter(endpoint.connections))
    restarted = OFFER.replace("a=ice-ufrag:r5xB", "a=ice-ufrag:n3wU").replace(
        "a=ice-pwd:GKszFZ1H7spWLeeOTSbN1Uij", "a=ice-pwd:AnotherPasswordOf24Chars"
    )
    second = media.handle_offer("PA_1", "$publish", restarted, context("alice"))
    assert ufrag_of(second) != ufrag_of(first)
    assert list(endpoint.connections) == [transport] and media.transports() == 1
    assert endpoint.ufrags[ufrag_of(second)] is transport  # both ufrags route until the restart completes
    assert len(media.room_tracks("r")) == 2  # tracks kept


def test_an_identical_reoffer_is_answered_without_work() -> None:
    media, endpoint, _ = service()
    first = media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    pokes = endpoint.pokes
    assert media.handle_offer("PA_1", "$publish", OFFER, context("alice")) == first
    assert endpoint.pokes == pokes and media.transports() == 1
    changed = media.handle_offer("PA_1", "$publish", OFFER, context("alice", tracks={"x": ("camera", "cam")}))
    assert endpoint.pokes == pokes + 1 and changed  # different fields: negotiated again


def test_closing_an_owner_cascades_to_its_transports_router_and_tracks() -> None:
    media, endpoint, announced = service()
    media.handle_offer("PA_1", "$publish", OFFER, context("alice"))
    media.handle_offer("PA_2", "$subscribe", OFFER.replace("a=sendrecv", "a=recvonly"), context("bob"))
    assert media.transports() == 2
    media.close_owner("PA_1")
    assert media.room_tracks("r") == [] and announced[-1] == ("r", [])
    assert media.transports() == 1 and len(endpoint.removed) == 1 and endpoint.removed[0].closed
    media.close_owner("PA_2")
    assert media.transports() == 0 and not media.routers and not endpoint.connections and not endpoint.ufrags
