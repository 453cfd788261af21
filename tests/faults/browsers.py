"""Chromium host → SFU → Chromium viewer, and what the fault tests read from their getStats()."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Page

from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

VIDEO_STATS = """async () => {
  const out = {encoded: 0, by_rid: {}, decoded: 0, nacks: 0, retransmitted: 0, lost: 0,
               states: Array.from(window.room.serverPeers.values()).map(p => p.pc.connectionState),
               room: window.room.state};
  for (const s of await window.room.getStats()) {
    if (s.kind !== 'video') continue;
    if (s.type === 'outbound-rtp') {
      out.encoded += s.framesEncoded || 0;
      out.by_rid[s.rid || ''] = s.framesEncoded || 0;  // simulcast: one outbound stream per layer
      out.retransmitted += s.retransmittedPacketsSent || 0;
    } else if (s.type === 'inbound-rtp') {
      out.decoded += s.framesDecoded || 0;
      out.nacks += s.nackCount || 0;
      out.lost += s.packetsLost || 0;
    }
  }
  return out;
}"""


async def video_stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate(VIDEO_STATS)
    return stats


async def host_and_viewer(
    server: ServerProcess, new_page: NewPage, tag: str, *, simulcast: bool = False
) -> tuple[str, Page, Page]:
    """A broadcast room: the host publishes camera (in simulcast layers if asked) and microphone, the
    viewer decodes them."""
    room = f"{tag}-{uuid.uuid4().hex[:6]}"
    layers = "&simulcast=1" if simulcast else ""
    host = await new_page(f"{server.base}/stream?room={room}&role=host&identity=host{layers}")
    await host.wait_for_function("window.streamState && window.streamState.joined")
    viewer = await new_page(f"{server.base}/stream?room={room}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")
    for page in (host, viewer):
        await page.evaluate("window.resumed = 0; window.room.on('reconnected', () => { window.resumed += 1; })")
    await until_decoded(viewer, 30, 20)
    return room, host, viewer


async def until_decoded(viewer: Page, at_least: int, timeout: float) -> int:
    """Poll the viewer's decoded video frames until ``at_least``; return the count."""
    last = {"decoded": 0}

    async def poll() -> bool:
        last.update(await video_stats(viewer))
        return int(last["decoded"]) >= at_least

    await until_async(poll, timeout, f"the viewer decoding {at_least} frames (last {last})")
    return int(last["decoded"])


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Like :func:`tests.faults.bots.until` for an async check (a getStats round trip)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.2)  # polling getStats with a deadline
    return time.monotonic() - start
