"""Reconnection (``tests/e2e/test_resume.py``): a participant whose socket dropped is parked for ``window``
seconds with its media; a new socket of the same identity, in the same room, with the resume token takes it
back. Sans-IO: time is an argument, expiry happens in :meth:`ResumeRegistry.handle_timeout` when
:meth:`ResumeRegistry.poll_timeout` says (a runtime driver calls it)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from roomcast.rooms.manager import RoomManager
from roomcast.rooms.model import Participant, Room, RoomEvent
from roomcast.rooms.tokens import AccessToken


@dataclass(eq=False)
class Parked:
    room: Room
    participant: Participant
    release: Callable[[], None]  # frees what the adapter keeps for it (its media connections)
    expires_at: float


class _ParkedSink:
    """The room's view of a parked participant: events are dropped (a resume sends the current state), and
    when the room closes it (same identity joined again, kick, room deleted) its media is released at once,
    so a join → publish → drop loop cannot pile up parked tracks and transports (issue 12 H2)."""

    def __init__(self, registry: ResumeRegistry, token: str) -> None:
        self.registry = registry
        self.token = token

    def deliver(self, event: RoomEvent) -> None:
        pass

    def close(self, code: str, reason: str) -> None:
        self.registry.evict(self.token)


class ResumeRegistry:
    def __init__(self, manager: RoomManager, window: float = 20.0) -> None:
        self.manager = manager
        self.window = window
        self.parked: dict[str, Parked] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap; entries of taken or evicted tokens are skipped

    def park(self, token: str, room: Room, participant: Participant, release: Callable[[], None], now: float) -> None:
        parked = Parked(room, participant, release, now + self.window)
        participant.sink = _ParkedSink(self, token)
        self.parked[token] = parked
        heapq.heappush(self._deadlines, (parked.expires_at, token))

    def take(self, resume_token: str, token: AccessToken, now: float) -> Parked | None:
        """The parked participant for ``resume_token``, if ``token`` may take it back: same identity, same room
        (a resume token stolen from room A with a room-B token is refused), not revoked since, window open."""
        parked = self.parked.get(resume_token)
        if parked is None or parked.participant.identity != token.identity or now >= parked.expires_at:
            return None
        if parked.room.name != token.grants.room or self.manager.is_revoked(token, now):
            return None
        del self.parked[resume_token]
        if not self.manager.is_current(parked.room, parked.participant):
            parked.release()
            return None
        return parked

    def evict(self, token: str) -> None:
        """The room let go of a parked participant: release its media now (the room announces the departure)."""
        parked = self.parked.pop(token, None)
        if parked is not None:
            parked.release()

    def poll_timeout(self) -> float | None:
        while self._deadlines and self._deadlines[0][1] not in self.parked:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def handle_timeout(self, now: float) -> None:
        """The window is over for every participant parked until ``now``: they leave their rooms."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, token = heapq.heappop(self._deadlines)
            parked = self.parked.get(token)
            if parked is None or parked.expires_at != deadline:
                continue
            del self.parked[token]
            parked.release()
            self.manager.leave(parked.room, parked.participant, "disconnected")
