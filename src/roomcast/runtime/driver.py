"""One timer pump for sans-IO machines (time is an argument): it calls ``handle_timeout(now)`` when
``poll_timeout()`` says, on the running asyncio loop. Call :meth:`TimerDriver.poke` after feeding the machine
input, since input may move its next deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timed(Protocol):
    def poll_timeout(self) -> float | None: ...

    def handle_timeout(self, now: float) -> None: ...


class TimerDriver:
    def __init__(self, machine: Timed, clock: Callable[[], float] = time.monotonic) -> None:
        self.machine = machine
        self.clock = clock
        self._handle: asyncio.TimerHandle | None = None
        self._deadline: float | None = None

    def poke(self) -> None:
        """Re-arm for the machine's current deadline (kept as is when it did not change)."""
        deadline = self.machine.poll_timeout()
        if deadline == self._deadline and (deadline is None or self._handle is not None):
            return
        self.close()
        if deadline is None:
            return
        self._deadline = deadline
        self._handle = asyncio.get_running_loop().call_later(max(0.0, deadline - self.clock()), self._fire)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._deadline = None

    def _fire(self) -> None:
        self._handle = None
        self._deadline = None
        self.machine.handle_timeout(self.clock())
        self.poke()
