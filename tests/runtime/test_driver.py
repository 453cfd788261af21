"""The timer pump: it fires a machine's timeout when due, re-arms for the next one and stops when none."""

from __future__ import annotations

import asyncio

from roomcast.runtime.driver import TimerDriver


class Machine:
    def __init__(self, deadlines: list[float]) -> None:
        self.deadlines = deadlines
        self.fired: list[float] = []
        self.done = asyncio.Event()

    def poll_timeout(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timeout(self, now: float) -> None:
        while self.deadlines and self.deadlines[0] <= now:
            self.fired.append(self.deadlines.pop(0))
        if not self.deadlines:
            self.done.set()


async def test_each_deadline_fires_once_in_order_and_the_driver_goes_idle() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    machine = Machine([start + 0.01, start + 0.02, start + 0.03])
    driver = TimerDriver(machine, loop.time)
    driver.poke()
    driver.poke()  # same deadline: not re-armed twice
    await asyncio.wait_for(machine.done.wait(), 5)
    assert machine.fired == [start + 0.01, start + 0.02, start + 0.03]
    assert driver._handle is None  # nothing left to wait for


async def test_close_cancels_the_pending_timer() -> None:
    loop = asyncio.get_running_loop()
    machine = Machine([loop.time() + 0.01])
    driver = TimerDriver(machine, loop.time)
    driver.poke()
    driver.close()
    assert driver._handle is None and machine.fired == []
