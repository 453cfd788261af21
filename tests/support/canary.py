"""RELIABILITY O3: a canary call in another room of the same server, watched during and after a fault.

Two kinds, one interface: :class:`SdkCanary` (a Python SDK publisher sending 30 one-packet VP8 frames a
second to an SDK subscriber that reassembles them: cheap, no browser) and :class:`BrowserCanary` (Chromium
on ``/echo``, its ``framesDecoded``). The SDK canary runs on an event loop of its own in a thread: a test
that blocks its own loop (a synchronous HTTP call under packet loss waits a second for a SYN
retransmission) must not make the canary look stalled. Each samples its frame count every 0.2 s in the background, so a
test can ask both "are frames still arriving now?" (:meth:`Canary.assert_alive`) and "did they keep
arriving the whole time the fault lasted?" (:meth:`Canary.assert_flowed`), without sleeping.

    canary = await canaries.sdk(server)          # fixture from this plugin (tests/conftest.py loads it)
    t0 = canary.mark()
    ... the fault or the attack ...
    canary.assert_flowed(since=t0, max_gap=1.0)  # O3 during
    await canary.assert_alive()                  # O3 after
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from playwright.async_api import Page

from roomcast.sdk import connect
from roomcast.sdk.client import Publication, Room
from roomcast.sdk.frames import Frame
from tests.signaling.wsclient import dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

T = TypeVar("T")
SAMPLE_EVERY = 0.2
FPS = 30
FRAMES_DECODED = """async () => {
  if (!window.room) return 0;
  const stats = await window.room.getStats();
  return stats.filter(s => s.type === 'inbound-rtp' && s.kind === 'video')
              .reduce((n, s) => n + (s.framesDecoded || 0), 0);
}"""


class Canary:
    """A live call whose received frame count is sampled in the background (``history``: (time, frames))."""

    name = "canary"

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self.loop = asyncio.get_running_loop()  # where it samples (and, for the SDK canary, runs)
        self.history: list[tuple[float, int]] = []
        self._sampler: asyncio.Task[None] | None = None

    async def _start(self, warmup_frames: int = 10, timeout: float = 20.0) -> None:
        self.history.append((time.monotonic(), await self._read()))
        self._sampler = asyncio.create_task(self._sample())
        await self.assert_alive(warmup_frames, timeout)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)  # the sampling period, not a stand-in for an event
            with contextlib.suppress(Exception):  # a page mid-navigation: the next sample will do
                self.history.append((time.monotonic(), await self._read()))

    @property
    def frames(self) -> int:
        return self.history[-1][1] if self.history else 0

    def mark(self) -> float:
        """A point in time to judge :meth:`assert_flowed` from (the fault starts now)."""
        return time.monotonic()

    async def assert_alive(self, more: int = 15, timeout: float = 10.0) -> int:
        """O3 after: at least ``more`` new frames arrive within ``timeout`` from now; returns the count."""
        start = self.frames
        deadline = time.monotonic() + timeout
        while self.frames < start + more:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {self.frames - start} new frames in {timeout}s, wanted {more}")
            await asyncio.sleep(SAMPLE_EVERY)  # polling the sampled count with a deadline
        return self.frames

    def gaps(self, since: float, until: float | None = None) -> float:
        """The longest time within [since, until] over which the frame count did not grow, as the samples
        show it: the time after the last sample is not judged (a sampler delayed by a busy loop would
        count its own delay; :meth:`assert_alive` covers what comes after)."""
        end = time.monotonic() if until is None else until
        window = [(t, n) for t, n in self.history if since <= t <= end]
        if window:
            end = window[-1][0]
        prior = [n for t, n in self.history if t < since]
        longest, last_growth, last_count = 0.0, since, prior[-1] if prior else None
        for t, n in window:
            if last_count is None or n > last_count:
                last_growth, last_count = t, n
            longest = max(longest, t - last_growth)
        return max(longest, end - last_growth) if window else end - since

    def assert_flowed(self, since: float, until: float | None = None, max_gap: float = 1.0) -> float:
        """O3 during: from ``since`` to ``until`` (now) frames never stopped for longer than ``max_gap``
        seconds (sampled every 0.2 s); returns the longest gap seen."""
        gap = self.gaps(since, until)
        assert gap <= max_gap, f"{self.name}: no new frame for {gap:.2f}s during the fault (bound {max_gap}s)"
        return gap

    def received_between(self, since: float, until: float | None = None) -> int:
        end = time.monotonic() if until is None else until
        counts = [n for t, n in self.history if since <= t <= end]
        return counts[-1] - counts[0] if counts else 0

    async def close(self) -> None:
        """Stop sampling and hang up (on the canary's own loop, wherever it is called from)."""
        if asyncio.get_running_loop() is self.loop:
            await self._close()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close(), self.loop))

    async def _close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler


class SdkCanary(Canary):
    """An SDK publisher and an SDK subscriber in a room of their own; frames are whole VP8 frames
    reassembled from decrypted SRTP (the subscriber's ``FrameAssembler``), so a frame counts only if
    every packet of it went through the SFU intact."""

    name = "SDK canary"

    def __init__(self, server: ServerProcess, room: str) -> None:
        super().__init__(self._count)
        self.server, self.room = server, room
        self.received = 0
        self.sent = 0
        self._clients: list[Room] = []
        self._sender: asyncio.Task[None] | None = None

    async def _count(self) -> int:
        return self.received

    def _on_frame(self, frame: Frame) -> None:
        self.received += 1

    @classmethod
    async def open(cls, server: ServerProcess) -> SdkCanary:
        canary = cls(server, f"canary-{uuid.uuid4().hex[:6]}")
        camera = await connect(server.ws_base, dev_token(canary.room, "canary-camera"))
        canary._clients.append(camera)
        publication = await camera.publish(["video"])
        canary._sender = asyncio.create_task(canary._send(publication))
        viewer = await connect(server.ws_base, dev_token(canary.room, "canary-viewer", can_publish=False))
        canary._clients.append(viewer)
        deadline = time.monotonic() + 10
        while not viewer.tracks:
            if time.monotonic() > deadline:
                raise AssertionError("the canary viewer never saw the canary's track")
            await asyncio.sleep(0.05)  # polling the track list with a deadline
        await viewer.subscribe(on_frame=canary._on_frame)
        await canary._start()
        return canary

    async def _send(self, publication: Publication) -> None:
        """One-packet VP8 key frames (descriptor S=1, PID 0; frame tag bit 0 clear) at 30 fps, paced."""
        start = time.monotonic()
        while True:
            payload = b"\x10" + bytes([0x00, self.sent % 256]) + b"\x00" * 200
            publication.send("video", payload, self.sent * 3000, marker=True)
            self.sent += 1
            await asyncio.sleep(max(0.0, start + self.sent / FPS - time.monotonic()))  # real-time pacing

    async def _close(self) -> None:
        await super()._close()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


class BrowserCanary(Canary):
    """Chromium's echo call (``/echo``): the server sends the page's own camera back; ``framesDecoded``."""

    name = "Chromium canary"

    def __init__(self, page: Page) -> None:
        super().__init__(self._count)
        self.page = page

    async def _count(self) -> int:
        return int(await self.page.evaluate(FRAMES_DECODED))

    @classmethod
    async def open(cls, server: ServerProcess, new_page: NewPage) -> BrowserCanary:
        page = await new_page(f"{server.base}/echo?room=canary-{uuid.uuid4().hex[:6]}&identity=canary")
        await page.wait_for_function("window.echoState && window.echoState.connected")
        canary = cls(page)
        await canary._start()
        return canary


class Canaries:
    """The ``canaries`` fixture: open canaries on any server; all closed when the test ends. SDK canaries
    live on :attr:`loop`, an event loop in a thread of its own."""

    def __init__(self) -> None:
        self.open: list[Canary] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="canary", daemon=True)
        self._thread.start()

    def _in_loop(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def sdk(self, server: ServerProcess) -> SdkCanary:
        canary = await self._in_loop(SdkCanary.open(server))
        self.open.append(canary)
        return canary

    async def close(self) -> None:
        for canary in self.open:
            await canary.close()
        self.open.clear()
        await self._in_loop(_cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def browser(self, server: ServerProcess, new_page: NewPage) -> BrowserCanary:
        canary = await BrowserCanary.open(server, new_page)
        self.open.append(canary)
        return canary


async def _cancel_the_rest() -> None:
    """Tasks the SDK clients left on the canary loop (readers of closed sockets): end them before it closes."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


@pytest.fixture
async def canaries() -> AsyncIterator[Canaries]:
    found = Canaries()
    yield found
    await found.close()
