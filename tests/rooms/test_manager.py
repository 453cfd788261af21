from dataclasses import dataclass, field

import pytest

from roomcast.rooms.manager import (
    DataAuthorizer,
    DataEvent,
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    RoomError,
    RoomEvent,
    RoomManager,
    client_key,
)
from roomcast.rooms.tokens import AccessToken, Grants


@dataclass
class Sink:
    events: list[RoomEvent] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def deliver(self, event: RoomEvent) -> None:
        self.events.append(event)

    def close(self, code: str, reason: str) -> None:
        self.closed.append(code)


def tok(identity: str, room: str = "r", jti: str | None = None, issued_at: float = 0.0, **grants: bool) -> AccessToken:
    token_id = "jti-" + identity if jti is None else jti
    return AccessToken("k", identity, identity, Grants(room=room, **grants), 1e12, token_id, issued_at=issued_at)


def test_join_announces_and_leave_cleans_up() -> None:
    rm = RoomManager()
    a, b = Sink(), Sink()
    room, pa = rm.join(tok("a"), a, 0.0)
    _, pb = rm.join(tok("b"), b, 1.0)
    assert isinstance(a.events[0], ParticipantJoinedEvent) and a.events[0].participant is pb
    assert b.events == []  # the joiner learns of others from the join response, not from events
    rm.leave(room, pb)
    assert a.events[-1] == ParticipantLeftEvent("b", "left")
    rm.leave(room, pa)
    assert rm.rooms == {}  # auto-created rooms vanish when empty


def test_full_room_is_refused() -> None:
    rm = RoomManager()
    rm.create_room("r", 0.0, max_participants=2)
    rm.join(tok("a"), Sink(), 0.0)
    rm.join(tok("b"), Sink(), 0.0)
    with pytest.raises(RoomError) as info:
        rm.join(tok("c"), Sink(), 0.0)
    assert info.value.code == "room_full"
    assert set(rm.rooms["r"].participants) == {"a", "b"}


def test_duplicate_identity_replaces_the_old_session() -> None:
    rm = RoomManager()
    old, new, other = Sink(), Sink(), Sink()
    room, first = rm.join(tok("a"), old, 0.0)
    rm.join(tok("b"), other, 0.0)
    rm.join(tok("a"), new, 1.0)
    assert old.closed == ["duplicate_identity"]
    rm.leave(room, first)  # the stale session leaving must not remove the new one
    assert "a" in room.participants


def test_kicked_token_cannot_rejoin() -> None:
    rm = RoomManager()
    rm.join(tok("a"), Sink(), 0.0)
    rm.join(tok("b"), Sink(), 0.0)
    rm.remove_participant("r", "a", 0.5, expires_at=100.0)
    with pytest.raises(RoomError) as info:
        rm.join(tok("a"), Sink(), 1.0)
    assert info.value.code == "token_revoked"


def test_a_kick_revokes_every_older_token_of_that_identity_in_that_room() -> None:
    """M4: a token without ``jti``, or another one minted before the kick, used to rejoin at once."""
    rm = RoomManager()
    rm.join(tok("a", jti=""), Sink(), 0.0)
    rm.join(tok("b"), Sink(), 0.0)
    rm.remove_participant("r", "a", 5.0)
    for older in (tok("a", jti=""), tok("a", jti="another", issued_at=4.0)):
        with pytest.raises(RoomError) as info:
            rm.join(older, Sink(), 6.0)
        assert info.value.code == "token_revoked"
    assert rm.is_revoked(tok("a", jti="x", issued_at=4.0), 6.0)
    assert not rm.is_revoked(tok("a", room="other", jti="x", issued_at=4.0), 6.0)  # only in that room
    rm.join(tok("a", jti="fresh", issued_at=5.5), Sink(), 6.0)  # re-invited with a token minted after the kick


def test_data_needs_grant_and_honours_destinations() -> None:
    rm = RoomManager()
    a, b, c = Sink(), Sink(), Sink()
    room, pa = rm.join(tok("a"), a, 0.0)
    rm.join(tok("b"), b, 0.0)
    rm.join(tok("c"), c, 0.0)
    event = DataEvent("a", "hi", "chat", False, 0.0)
    assert rm.send_data(room, pa, ["c"], event) == 1
    assert event in c.events and event not in b.events
    _, muted = rm.join(tok("d", can_publish_data=False), Sink(), 0.0)
    with pytest.raises(RoomError) as info:
        rm.send_data(room, muted, None, event)
    assert info.value.code == "permission_denied"


def test_hidden_participants_are_not_announced() -> None:
    rm = RoomManager()
    a = Sink()
    rm.join(tok("a"), a, 0.0)
    rm.join(tok("spy", hidden=True), Sink(), 0.0)
    assert a.events == []


def test_room_limit() -> None:
    rm = RoomManager(max_rooms=1)
    rm.create_room("x", 0.0)
    with pytest.raises(RoomError) as info:
        rm.join(tok("a", room="y"), Sink(), 0.0)
    assert info.value.code == "too_many_rooms"


def test_client_key_counts_ipv6_by_its_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_auto_created_rooms_are_capped_per_client_and_freed_when_empty() -> None:
    """Low: one client on 5 addresses held all 1,000 rooms; auto-created rooms now count against the creator."""
    rm = RoomManager(max_auto_rooms_per_client=2)
    joined = [rm.join(tok("a", room=f"r{i}"), Sink(), 0.0, client="c1") for i in range(2)]
    with pytest.raises(RoomError) as info:
        rm.join(tok("a", room="r2"), Sink(), 0.0, client="c1")
    assert info.value.code == "too_many_rooms"
    rm.join(tok("a", room="r2"), Sink(), 0.0, client="c2")  # another client is not affected
    rm.join(tok("b", room="r0"), Sink(), 0.0, client="c1")  # joining an existing room costs nothing
    room, participant = joined[1]
    rm.leave(room, participant)  # r1 empties and goes: its creator may make another
    rm.join(tok("a", room="r3"), Sink(), 0.0, client="c1")


def test_socket_data_goes_through_the_rooms_data_rules() -> None:
    calls: list[tuple[str, str | None, bool]] = []

    def rules() -> DataAuthorizer:
        def authorize(identity: str, topic: str | None, admin: bool, now: float) -> tuple[str, str] | None:
            calls.append((identity, topic, admin))
            return ("permission_denied", "no") if topic == "control" else None

        return authorize

    rm = RoomManager(data_rules=rules)
    room, pa = rm.join(tok("a"), Sink(), 0.0)
    rm.join(tok("b"), Sink(), 0.0)
    assert rm.send_data(room, pa, None, DataEvent("a", "x", "chat", False, 1.0)) == 1
    with pytest.raises(RoomError) as info:
        rm.send_data(room, pa, None, DataEvent("a", "x", "control", False, 1.0))
    assert info.value.code == "permission_denied"
    assert calls == [("a", "chat", False), ("a", "control", False)]
