"""The bounded per-socket queue of encoded server messages (a slow client is dropped instead of slowing its
room); full-state messages are coalesced so a slow reader gets the newest one only."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class _Latest:
    """An outbox entry that a newer message of the same kind replaces (a full state, e.g. the room's tracks)."""

    __slots__ = ("text",)

    def __init__(self, text: str | bytes) -> None:
        self.text = text


class Outbox:
    """Bounded per-socket queue of encoded messages (text for the JSON adapter, bytes for LiveKit's protobuf);
    overflowing it closes the session. Full-state messages (``push_latest``) are coalesced: a slow reader gets
    the newest one only, never a backlog of stale lists."""

    def __init__(self, size: int) -> None:
        self.items: deque[str | bytes | _Latest] = deque()
        self.size = size
        self.wakeup = asyncio.Event()
        self.close_with: tuple[int, str] | None = None
        self._latest: dict[str, _Latest] = {}

    def push(self, text: str | bytes) -> None:
        if self.close_with is not None:
            return
        if len(self.items) >= self.size:
            self.items.clear()
            self._latest.clear()
            self.close(CLOSE_POLICY, "slow_consumer")
            return
        self.items.append(text)
        self.wakeup.set()

    def push_latest(self, kind: str, text: str | bytes) -> None:
        """Queue ``text``, dropping the still-unsent message of the same ``kind`` (this one supersedes it);
        it takes the newer position, so its order relative to other messages is kept."""
        if self.close_with is not None:
            return
        old = self._latest.pop(kind, None)
        if old is not None:
            with contextlib.suppress(ValueError):
                self.items.remove(old)
        entry = _Latest(text)
        self._latest[kind] = entry
        self.items.append(entry)
        self.wakeup.set()

    def pop(self) -> str | bytes:
        item = self.items.popleft()
        if isinstance(item, str | bytes):
            return item
        for kind, entry in list(self._latest.items()):
            if entry is item:
                del self._latest[kind]
        return item.text

    def close(self, code: int, reason: str) -> None:
        if self.close_with is None:
            self.close_with = (code, reason)
        self.wakeup.set()
