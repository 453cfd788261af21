"""WHEP with Chromium's plain RTCPeerConnection (the ``/watch`` page, no Roomcast SDK): it decodes a Chromium
host's video, keeps decoding when the room's publisher changes (the resource switches sources in place, no
renegotiation), can pin one publisher, and its DELETE makes the viewer leave."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from playwright.async_api import Page

from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess
from tests.whip.conftest import AUTH

pytestmark = pytest.mark.browser

WATCH_VIDEO = """async () => {
  const pc = window.whep && window.whep.pc;
  if (!pc) return {frames: 0, fps: 0, freezes: 0, width: 0};
  for (const s of (await pc.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video')
      return {frames: s.framesDecoded || 0, fps: s.framesPerSecond || 0, freezes: s.totalFreezesDuration || 0,
              width: s.frameWidth || 0, ssrc: s.ssrc};
  }
  return {frames: 0, fps: 0, freezes: 0, width: 0};
}"""


async def video(page: Page) -> dict:  # type: ignore[type-arg]
    return await page.evaluate(WATCH_VIDEO)  # type: ignore[no-any-return]


async def frames_past(page: Page, count: int, timeout: float = 20.0) -> dict:  # type: ignore[type-arg]
    """Poll (200 ms) until the watch page decoded more than ``count`` frames; its stats then."""
    stats: dict = {}  # type: ignore[type-arg]
    for _ in range(int(timeout / 0.2)):
        stats = await video(page)
        if stats["frames"] > count:
            return stats
        await asyncio.sleep(0.2)
    raise AssertionError(f"watch page stuck at {stats} (wanted more than {count} frames)")


async def host(new_page: NewPage, server: ServerProcess, room: str, identity: str) -> Page:
    page = await new_page(f"{server.base}/stream?room={room}&role=host&identity={identity}")
    await page.wait_for_function("window.streamState && window.streamState.joined")
    return page


def participants(server: ServerProcess, room: str) -> list[str]:
    res = httpx.get(f"{server.base}/api/rooms/{room}/participants", auth=AUTH)
    return [] if res.status_code == 404 else sorted(p["identity"] for p in res.json()["participants"])


async def test_watch_page_plays_a_chromium_host_and_follows_a_new_publisher(
    server: ServerProcess, new_page: NewPage
) -> None:
    room = "whep-" + uuid.uuid4().hex[:6]
    first = await host(new_page, server, room, "host1")
    watch = await new_page(f"{server.base}/watch?room={room}")
    await watch.wait_for_function("window.whep && window.whep.state === 'connected'", timeout=20000)
    stats = await frames_past(watch, 30)
    for _ in range(25):  # Chromium's framesPerSecond needs a second of frames to mean anything
        stats = await video(watch)
        if stats["fps"] >= 15:
            break
        await asyncio.sleep(0.2)
    assert stats["fps"] >= 15 and stats["width"] > 0, stats
    viewer = next(p for p in participants(server, room) if p.startswith("watch-"))  # a participant like any

    # the publisher leaves and another arrives: the same m-line (same SSRC) now carries the new one
    await first.close()
    second = await host(new_page, server, room, "host2")
    before = (await video(watch))["frames"]
    after = await frames_past(watch, before + 30, timeout=30)
    assert after["ssrc"] == stats["ssrc"]  # no renegotiation: the receiver never saw a new stream
    print(
        f"whep /watch: {stats['fps']} fps at {stats['width']} px; after the switch {after['frames'] - before} more"
        f" frames, freezes {after['freezes']:.2f}s"
    )
    assert sorted(participants(server, room)) == sorted(["host2", viewer])
    tracks = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=AUTH).json()["tracks"]
    now_served = [t for t in tracks if t["kind"] == "video"]
    assert [t["participant"] for t in now_served] == ["host2"] and now_served[0]["subscribers"] == 1, tracks

    # DELETE (the page's Stop): the viewer leaves the room, the publisher stays
    await watch.click("#stop")
    for _ in range(50):
        if viewer not in participants(server, room):
            break
        await asyncio.sleep(0.1)
    assert participants(server, room) == ["host2"]
    assert await second.evaluate("window.streamState.errors") == []


async def test_watch_page_pins_one_publisher(server: ServerProcess, new_page: NewPage) -> None:
    room = "whep-pin-" + uuid.uuid4().hex[:6]
    await host(new_page, server, room, "left")
    await host(new_page, server, room, "right")  # the newest publisher: the unpinned default
    watch = await new_page(f"{server.base}/watch?room={room}&participant=left")
    await frames_past(watch, 10)
    tracks = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=AUTH).json()["tracks"]
    served = {t["participant"]: t["subscribers"] for t in tracks if t["kind"] == "video"}
    assert served == {"left": 2, "right": 1}, served  # 'right' watches 'left' too; the WHEP viewer only 'left'
