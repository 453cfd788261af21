"""The resume registry on a fake clock (it takes ``now``; a runtime driver calls ``handle_timeout``)."""

from __future__ import annotations

from roomcast.rooms.manager import RoomManager
from roomcast.rooms.model import ParticipantLeftEvent
from roomcast.rooms.resume import ResumeRegistry
from tests.rooms.test_manager import Sink, tok


def setup() -> tuple[RoomManager, ResumeRegistry, Sink, list[str]]:
    manager = RoomManager()
    registry = ResumeRegistry(manager, window=20.0)
    watcher = Sink()
    manager.join(tok("w"), watcher, 0.0)
    return manager, registry, watcher, []


def test_parked_participants_leave_when_the_window_is_over_and_not_before() -> None:
    manager, registry, watcher, released = setup()
    room, alice = manager.join(tok("alice"), Sink(), 0.0)
    registry.park("R1", room, alice, lambda: released.append("alice"), now=100.0)
    assert registry.poll_timeout() == 120.0
    registry.handle_timeout(119.9)
    assert "alice" in room.participants and released == []
    registry.handle_timeout(120.0)
    assert "alice" not in room.participants and released == ["alice"]
    assert watcher.events[-1] == ParticipantLeftEvent("alice", "disconnected")
    assert registry.poll_timeout() is None and not registry.parked


def test_taking_back_within_the_window_cancels_the_expiry() -> None:
    manager, registry, _, released = setup()
    room, alice = manager.join(tok("alice"), Sink(), 0.0)
    registry.park("R1", room, alice, lambda: released.append("alice"), now=100.0)
    parked = registry.take("R1", tok("alice"), now=110.0)
    assert parked is not None and parked.participant is alice
    assert registry.poll_timeout() is None
    registry.handle_timeout(200.0)
    assert "alice" in room.participants and released == []


def test_no_resume_after_the_window_into_another_room_or_after_a_kick() -> None:
    manager, registry, _, released = setup()
    room, alice = manager.join(tok("alice"), Sink(), 0.0)
    registry.park("R1", room, alice, lambda: released.append("alice"), now=100.0)
    assert registry.take("R1", tok("alice"), now=121.0) is None  # window over (the timer may not have run yet)
    assert registry.take("R1", tok("alice", room="other"), now=110.0) is None
    assert registry.take("R1", tok("bob"), now=110.0) is None
    manager.remove_participant("r", "alice", 111.0)  # the kick closes the parked sink: media released at once
    assert released == ["alice"] and not registry.parked
    assert registry.take("R1", tok("alice", issued_at=50.0), now=112.0) is None


def test_a_new_join_of_the_same_identity_releases_the_parked_media_at_once() -> None:
    """Issue 12 H2: the rejoin used to replace the parked participant without closing its media."""
    manager, registry, _, released = setup()
    room, alice = manager.join(tok("alice"), Sink(), 0.0)
    registry.park("R1", room, alice, lambda: released.append("old"), now=100.0)
    manager.join(tok("alice"), Sink(), 101.0)
    assert released == ["old"] and not registry.parked and registry.poll_timeout() is None
