"""The heap is trimmed after participants leave, not while they only come, and never more than once per interval."""

from __future__ import annotations

import asyncio

from roomcast.runtime.memory import glibc_malloc_trim, trim_after_departures


async def test_trims_only_after_departures() -> None:
    counts = iter([10, 12, 12, 5, 5, 8, 3] + [3] * 100)  # start, grow, grow, leave, -, grow, leave
    seen: list[int] = []
    trims: list[int] = []
    done = asyncio.Event()

    def participants() -> int:
        value = next(counts)
        seen.append(value)
        if len(seen) == 8:
            done.set()
        return value

    def trim(pad: int) -> int:
        trims.append(len(seen))
        return 1

    task = asyncio.create_task(trim_after_departures(participants, interval=0.001, trim=trim))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    assert trims == [4, 7]  # after 12 -> 5 and after 8 -> 3; not on growth, not while unchanged


def test_the_real_trim_is_found_on_glibc_and_runs() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None  # Debian: glibc
    assert trim(0) in (0, 1)
