"""F8: one subscriber is far slower than the others (its process does not read its socket for seconds,
its receive buffer is tiny). The others must not notice: each gets at least 99 % of what was sent.

The slow one lives on its own event loop in a thread, so the test can freeze it (a blocking call in
that loop) while the publisher and the fast subscribers keep running on the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.faults.bots import counting_subscriber, publisher, send_video, until
from tests.support.canary import Canaries
from tests.support.server import ServerProcess

T = TypeVar("T")
PACKETS, RATE, FROZEN = 800, 250.0, 2.5


@pytest.fixture
def slow_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def rcvbuf_errors() -> int:
    """UDP datagrams the kernel dropped because a socket's receive buffer was full (this namespace)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


async def test_one_slow_subscriber_does_not_slow_the_others(
    server: ServerProcess, slow_loop: asyncio.AbstractEventLoop, canaries: Canaries
) -> None:
    canary = await canaries.sdk(server)
    room = "f8-" + uuid.uuid4().hex[:6]
    camera, publication = await publisher(server, room)
    fast = [await counting_subscriber(server, room, f"fast{i}") for i in range(3)]

    def in_slow_loop(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, slow_loop))

    slow, slow_counts = await in_slow_loop(counting_subscriber(server, room, "slow"))
    for conn in slow.connections:
        assert conn.udp is not None
        sock: socket.socket = conn.udp.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel doubles it: ~8 KiB
    await send_video(publication, 20, RATE)
    everyone = [counts for _, counts in fast] + [slow_counts]
    await until(lambda: all(sum(c.values()) >= 18 for c in everyone), 5, "every subscriber receiving")
    start = [sum(c.values()) for _, c in fast]
    slow_start, drops_before = sum(slow_counts.values()), rcvbuf_errors()

    frozen_at = canary.mark()
    slow_loop.call_soon_threadsafe(time.sleep, FROZEN)  # the fault: the slow one reads nothing for a while
    await send_video(publication, PACKETS, RATE, start=20)
    await until(
        lambda: all(sum(c.values()) - s >= PACKETS for (_, c), s in zip(fast, start, strict=True)),
        3,
        "the fast subscribers getting everything",
    )
    got = [sum(c.values()) - s for (_, c), s in zip(fast, start, strict=True)]
    slow_got, overflowed = sum(slow_counts.values()) - slow_start, rcvbuf_errors() - drops_before
    print(f"\nF8: fast subscribers got {got} of {PACKETS}; the slow one {slow_got}, its kernel dropped {overflowed}")
    assert all(n >= 0.99 * PACKETS for n in got), got
    assert overflowed > 0 and slow_got < 0.8 * PACKETS  # the fault was real: the slow one lost packets
    canary.assert_flowed(since=frozen_at, max_gap=1.0)  # O3
    await canary.assert_alive()
    await camera.close()
    for client, _ in fast:
        await client.close()
    await in_slow_loop(slow.close())
