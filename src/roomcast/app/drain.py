"""Graceful shutdown (docs/faults.md F11): on SIGTERM the node drains instead of dropping its calls.

While draining, ``WS /rtc`` refuses new sockets with a typed ``server_shutting_down`` error (close 1013,
try again later) and ``/healthz`` answers 503, so a load balancer stops sending joins; every open socket
gets a ``server_shutdown`` message with the grace period, and its room keeps running. When the last
socket has gone, or the grace period is over (then the rest are closed with a fatal ``server_shutdown``
error), the HTTP server is told to exit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("roomcast.app")


class Drainable(Protocol):
    """What the drain needs of a signaling session."""

    def notify_shutdown(self, grace: float) -> None: ...

    def close_for_shutdown(self) -> None: ...


class Drain:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.sessions: set[Drainable] = set()
        self.active = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_start: list[Callable[[], None]] = []  # e.g. routing: new rooms go to other nodes

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called once the event loop runs (ASGI lifespan): signals arrive outside of it."""
        self._loop = loop
        self._changed = asyncio.Event()

    def add(self, session: Drainable) -> None:
        self.sessions.add(session)

    def discard(self, session: Drainable) -> None:
        self.sessions.discard(session)
        if self._changed is not None:
            self._changed.set()

    def request(self, on_done: Callable[[], None]) -> bool:
        """Start draining; thread- and signal-safe. False when there is no loop yet (exit at once)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(self._start, on_done)
        return True

    def _start(self, on_done: Callable[[], None]) -> None:
        if self.active:
            return
        self.active = True
        for listener in self.on_start:
            listener()
        self._task = asyncio.get_running_loop().create_task(self._run(on_done))

    async def _run(self, on_done: Callable[[], None]) -> None:
        assert self._changed is not None
        log.info("draining: %d signaling sockets open, up to %.1fs", len(self.sessions), self.timeout)
        for session in list(self.sessions):
            session.notify_shutdown(self.timeout)
        deadline = asyncio.get_running_loop().time() + self.timeout
        await self._until_empty(deadline)
        if self.sessions:
            log.info("drain timeout: closing %d signaling sockets", len(self.sessions))
            for session in list(self.sessions):
                session.close_for_shutdown()
            await self._until_empty(asyncio.get_running_loop().time() + 2.0)
        log.info("drained; shutting down")
        on_done()

    async def _until_empty(self, deadline: float) -> None:
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        while self.sessions and (left := deadline - loop.time()) > 0:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return
