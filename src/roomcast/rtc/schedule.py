"""Scheduled time for the rooms' routers: each router's periodic work (receiver reports, NACK retries,
layer allocation and probes, dynacast, active speakers) runs when its ``poll_timeout()`` says, through one
:class:`~roomcast.runtime.driver.TimerDriver` per room, and not only when a packet happens to arrive.

Input still ticks a router at once (``MediaService`` pokes after every transport event); the timer is the
backstop for a room whose input went quiet. Without a running loop (unit tests that drive the service by
hand) nothing is scheduled and input alone drives time, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from roomcast.runtime.driver import TimerDriver
from roomcast.sfu.router import Router

RoomWork = Callable[[Router, float], None]


class _RouterClock:
    """One router as a :class:`~roomcast.runtime.driver.Timed` machine: its deadline, the service's work."""

    def __init__(self, router: Router, work: RoomWork) -> None:
        self.router = router
        self.work = work

    def poll_timeout(self) -> float | None:
        return self.router.poll_timeout()

    def handle_timeout(self, now: float) -> None:
        self.work(self.router, now)


class RoomSchedule:
    def __init__(self, work: RoomWork, clock: Callable[[], float]) -> None:
        self.work = work
        self.clock = clock
        self._drivers: dict[str, TimerDriver] = {}

    def poke(self, router: Router) -> None:
        """Re-arm ``router``'s timer after input moved its deadline (a new room gets its timer here)."""
        driver = self._drivers.get(router.room)
        if driver is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            driver = self._drivers[router.room] = TimerDriver(_RouterClock(router, self.work), self.clock)
        elif driver.machine.router is not router:  # type: ignore[attr-defined]
            driver.close()  # the room's router was replaced: drive the new one
            driver = self._drivers[router.room] = TimerDriver(_RouterClock(router, self.work), self.clock)
        driver.poke()

    def forget(self, room: str) -> None:
        driver = self._drivers.pop(room, None)
        if driver is not None:
            driver.close()

    def __len__(self) -> int:
        return len(self._drivers)
