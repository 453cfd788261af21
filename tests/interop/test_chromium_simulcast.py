"""Chromium publishes simulcast (three encodings, rids q/h/f) through Roomcast's JSON signaling; a Chromium
viewer receives one layer, moved by the server at a keyframe without a freeze, and a lower frame rate when
the server keeps only the base temporal layer (issue 14 items 1-2).

The JS SDK does not publish simulcast yet, so the publisher page here builds its transceiver itself
(``sendEncodings``) and negotiates through the SDK's ``ServerPeer`` exactly as ``publish()`` does. The
server runs in this process (not as ``roomcast serve``) so the test can choose the viewer's layer
through the media service (``MediaService.set_video_layer``): the test-only hook.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Page

from roomcast.app.asgi import create_app
from roomcast.app.config import load
from roomcast.rtc.service import MediaService
from roomcast.sfu.simulcast import SimulcastConsumer
from tests.support.browser_fixtures import NewPage
from tests.support.server import free_port

pytestmark = pytest.mark.browser

PUBLISH = """async ({room}) => {
  await Roomcast.ready;  // the classic shim: classes such as ServerPeer once the modules loaded
  const token = await Roomcast.devToken(room, 'publisher');
  const r = await Roomcast.connect(location.origin, token, {iceServers: []});
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width: 1280, height: 720, frameRate: 30}, audio: false});
  const [track] = stream.getVideoTracks();
  const peer = new Roomcast.ServerPeer(r, '$publish');
  r.serverPeers.set('$publish', peer);
  peer.pc.addTransceiver(track, {direction: 'sendonly', streams: [stream], sendEncodings: [
    {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000},
    {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000},
    {rid: 'f', maxBitrate: 1500000},
  ]});
  await peer.negotiate(() => ({tracks: [{track_id: track.id, source: 'camera', name: 'cam'}]}));
  window.publisher = {room: r, pc: peer.pc};
  return peer.pc.localDescription.sdp.includes('a=simulcast:send');
}"""

INBOUND = """async () => {
  for (const s of await window.room.getStats()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      return {width: s.frameWidth || 0, decoded: s.framesDecoded || 0, keyframes: s.keyFramesDecoded || 0,
              freezes: s.totalFreezesDuration || 0};
    }
  }
  return {width: 0, decoded: 0, keyframes: 0, freezes: 0};
}"""


@pytest.fixture
async def in_process() -> AsyncIterator[tuple[str, Any]]:
    """A dev-mode server in this event loop; yields its base URL and its Starlette app."""
    port, media_port = free_port(), free_port(__import__("socket").SOCK_DGRAM)
    app = create_app(load({"host": "127.0.0.1", "port": port, "media_port": media_port}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)  # waiting for a start-up, bounded; not standing in for an event under test
    assert server.started, "in-process server did not start"
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    await asyncio.wait_for(task, 20)


async def inbound(page: Page) -> dict[str, float]:
    return dict(await page.evaluate(INBOUND))


async def wait_width(page: Page, want: str, than: float, timeout: float = 30.0) -> list[dict[str, float]]:
    """Sample the viewer every 200 ms until its decoded width is below/above ``than``; returns the samples."""
    samples: list[dict[str, float]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        s = await inbound(page)
        samples.append(s)
        if s["decoded"] > 0 and (s["width"] < than if want == "below" else s["width"] > than):
            return samples
        await asyncio.sleep(0.2)
    raise AssertionError(f"viewer width never went {want} {than}: {samples[-5:]}")


async def steady(page: Page) -> dict[str, float]:
    """The viewer's stats once its width held over 1 s of decoding (after the server's switch landed)."""
    last = await inbound(page)
    for _ in range(60):
        await asyncio.sleep(0.5)
        now = await inbound(page)
        if now["width"] > 0 and now["width"] == last["width"] and now["decoded"] > last["decoded"] + 5:
            return now
        last = now
    raise AssertionError(f"viewer never steady: {last}")


async def frame_rate(page: Page) -> float:
    script = """async () => { for (const s of await window.room.getStats())
      if (s.type === 'inbound-rtp' && s.kind === 'video') return s.framesPerSecond || 0; return 0; }"""
    return float(await page.evaluate(script))


async def wait_frame_rate(page: Page, ok: Any, timeout: float = 15.0) -> list[dict[str, float]]:
    """Sample every 200 ms until Chromium's framesPerSecond satisfies ``ok``; returns the samples (with fps)."""
    samples: list[dict[str, float]] = []
    for _ in range(int(timeout / 0.2)):
        s = await inbound(page) | {"fps": await frame_rate(page)}
        samples.append(s)
        if ok(s["fps"]):
            return samples
        await asyncio.sleep(0.2)
    raise AssertionError(f"frame rate never changed as wanted: {samples[-5:]}")


def no_stall(samples: list[dict[str, float]]) -> None:
    """framesDecoded grew over every second of samples (a frozen picture stops it)."""
    for i in range(5, len(samples)):
        assert samples[i]["decoded"] > samples[i - 5]["decoded"], samples[i - 5 : i + 1]


async def test_a_viewer_moves_between_layers_of_a_chromium_simulcast_at_keyframes(
    in_process: tuple[str, Any], new_page: NewPage
) -> None:
    base, app = in_process
    room = "sim-" + uuid.uuid4().hex[:6]
    publisher = await new_page(base + "/")
    await publisher.add_script_tag(url="/sdk/roomcast.js")
    assert await publisher.evaluate(PUBLISH, {"room": room})
    viewer = await new_page(f"{base}/stream?room={room}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")

    media: MediaService = app.state.media
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:  # Chromium ramps its encodings up: wait for at least two layers
        track = next(p for p in media.routers[room].tracks() if p.kind == "video")
        if sum(1 for layer in track.layers if layer.bitrate > 0) >= 2:
            break
        await asyncio.sleep(0.5)
    assert track.simulcast and [layer.rid for layer in track.layers] == ["q", "h", "f"]
    active = [layer.index for layer in track.layers if layer.bitrate > 0]
    assert len(active) >= 2, [(layer.rid, layer.bitrate) for layer in track.layers]
    owner = next(o for o, m in media.routers[room].participants.items() if m.identity == "viewer")
    assert media.set_video_layer(room, owner, track.sid, active[-1])  # hold it there while more layers ramp up
    consumer = next(iter(media.routers[room].participants[owner].consumers.values()))[0]
    assert isinstance(consumer, SimulcastConsumer)
    for _ in range(150):
        if consumer.current == active[-1] and consumer.pending < 0:
            break
        await asyncio.sleep(0.2)
    assert consumer.current == active[-1], consumer.stats()
    start = await steady(viewer)
    high_width = start["width"]
    assert media.set_video_layer(room, owner, track.sid, active[0])
    down = await wait_width(viewer, "below", high_width)
    low_width = down[-1]["width"]
    assert media.set_video_layer(room, owner, track.sid, active[-1])
    up = await wait_width(viewer, "above", low_width)
    settle = [await inbound(viewer) for _ in range(10) if not await asyncio.sleep(0.2)]
    end = settle[-1]

    assert up[-1]["width"] >= high_width > low_width
    no_stall(down + up + settle)
    assert end["keyframes"] >= start["keyframes"] + 2  # each switch began with the new layer's keyframe
    assert end["freezes"] - start["freezes"] < 1.0, (start, end)
    stats = media.room_stats(room)
    assert stats is not None
    (entry,) = stats["participants"]["viewer"]["consumers"]  # type: ignore[index]
    assert entry["switches"] >= 2 and entry["keyframe_requests"] >= 2 and entry["spatial"] == active[-1]

    # Chromium's VP8 simulcast layers have three temporal layers (TID 0-2, TL0 a quarter of the frames):
    # keeping TL0 only lowers the frame rate at once, resolution unchanged; all TIDs bring it back
    assert track.layers[active[-1]].max_tid == 2
    full_fps = await frame_rate(viewer)
    assert full_fps >= 8, full_fps
    assert media.set_video_layer(room, owner, track.sid, active[-1], 0)
    tl0 = await wait_frame_rate(viewer, lambda fps: fps * 2 <= full_fps)
    assert tl0[-1]["width"] == high_width and consumer.temporal_dropped > 0
    assert media.set_video_layer(room, owner, track.sid, active[-1], None)
    tl0_fps = tl0[-1]["fps"]
    back = await wait_frame_rate(viewer, lambda fps: fps >= 2 * tl0_fps)
    no_stall(tl0 + back)
