"""Active speakers: who is speaking in each room, from the audio level extension (RFC 6464) of the audio
its publishers send. Twice a second, a producer that sent a packet at speech level in the last
:data:`HOLD` seconds is a speaker (loudest first); a change is announced (LiveKit's ``SpeakersChanged``)."""

from __future__ import annotations

from collections.abc import Callable

from roomcast.sfu.router import Router

INTERVAL = 0.5
HOLD = 1.0  # a pause between words does not end a turn

# (room, [(publisher identity, linear level 0..1)], loudest first)
Notify = Callable[[str, list[tuple[str, float]]], None]


class Speakers:
    def __init__(self, notify: Notify) -> None:
        self.notify = notify
        self.announced: dict[str, tuple[str, ...]] = {}  # room -> identities last announced
        self.levels: dict[str, list[tuple[str, float]]] = {}  # room -> the speakers at the last check
        self._next: dict[str, float] = {}

    def tick(self, router: Router, now: float) -> None:
        if now < self._next.get(router.room, 0.0):
            return
        self._next[router.room] = now + INTERVAL
        loudest: dict[str, int] = {}
        for producer in router.producers.values():
            if producer.audio_level_ext and not producer.muted and now - producer.loud_at <= HOLD:
                loudest[producer.identity] = min(loudest.get(producer.identity, 127), producer.loudness)
        speakers = sorted(loudest.items(), key=lambda item: item[1])
        identities = tuple(identity for identity, _ in speakers)
        self.levels[router.room] = [(identity, 10 ** (-dbov / 20)) for identity, dbov in speakers]
        if self.announced.get(router.room, ()) != identities:
            self.announced[router.room] = identities
            self.notify(router.room, self.levels[router.room])

    def current(self, room: str) -> list[tuple[str, float]]:
        """Who speaks now (for a participant that joins in the middle of it)."""
        return list(self.levels.get(room, []))

    def forget_room(self, room: str) -> None:
        self._next.pop(room, None)
        self.announced.pop(room, None)
        self.levels.pop(room, None)
