"""Simulcast with real Chromium (issue 14): the JS SDK publishes camera video in layers, a viewer chooses
its layer (quality or shown size), hides and shows a track; the server switches at keyframes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.e2e.test_sfu import decoding_tracks
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
AUTH = ("devkey", "devsecret")

INBOUND = """async () => {
  for (const s of await window.room.getStats()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video')
      return {height: s.frameHeight || 0, decoded: s.framesDecoded || 0, bytes: s.bytesReceived || 0,
              freezes: s.totalFreezesDuration || 0};
  }
  return {height: 0, decoded: 0, bytes: 0, freezes: 0};
}"""

OUTBOUND = """async () => {
  const out = {};
  for (const s of await window.room.getStats())
    if (s.type === 'outbound-rtp' && s.kind === 'video') out[s.rid || '-'] = {bytes: s.bytesSent || 0,
      height: s.frameHeight || 0};
  return out;
}"""


async def until(page: Page, script: str, check: str, timeout: float) -> Any:
    """Poll ``script`` in the page until the JS expression ``check`` (over ``v``) holds; return ``v``."""
    waiting = f"""async () => {{
      for (;;) {{
        const v = await ({script})();
        if ({check}) return v;
        await new Promise(r => setTimeout(r, 250));
      }}
    }}"""
    return await asyncio.wait_for(page.evaluate(waiting), timeout)


def video_track(server: ServerProcess, room: str) -> dict[str, Any]:
    stats = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=AUTH).json()
    return next(t for t in stats["tracks"] if t["kind"] == "video")


async def host_and_viewer(server: ServerProcess, new_page: NewPage, name: str) -> tuple[str, Page, Page]:
    room = f"{name}-{uuid.uuid4().hex[:6]}"
    host = await new_page(f"{server.base}/stream?room={room}&role=host&identity=host")  # simulcast by default
    await host.wait_for_function("window.streamState && window.streamState.joined")
    viewer = await new_page(f"{server.base}/stream?room={room}&role=viewer&identity=viewer")
    await viewer.wait_for_function("window.streamState && window.streamState.joined")
    await decoding_tracks(viewer, 1)
    return room, host, viewer


async def test_the_sdk_publishes_layers_and_a_viewer_chooses_one_at_a_keyframe(
    server: ServerProcess, new_page: NewPage
) -> None:
    room, host, viewer = await host_and_viewer(server, new_page, "simulcast")
    sdp = await host.evaluate("window.room.sfu.publisher.pc.localDescription.sdp")
    assert "a=simulcast:send h;f" in sdp or "a=simulcast:send q;h;f" in sdp, sdp
    layers = await until(host, OUTBOUND, "Object.values(v).filter(l => l.bytes > 0).length >= 2", 40)
    assert {"h", "f"} <= set(layers), layers
    track = video_track(server, room)
    assert track["simulcast"] is True
    sid = track["sid"]
    # the viewer starts on the top layer it can get; ask for the lowest, then for the top again
    top = await until(viewer, INBOUND, "v.height >= 300", 40)
    await viewer.evaluate(f"window.room.setVideoQuality('{sid}', 'low')")
    low = await until(viewer, INBOUND, f"v.height > 0 && v.height < {top['height']}", 20)
    await viewer.evaluate(f"window.room.setVideoQuality('{sid}', 'high')")
    back = await until(viewer, INBOUND, f"v.height >= {top['height']}", 20)
    assert back["decoded"] > low["decoded"] > top["decoded"]
    # a switch waits for the new layer's keyframe: the viewer's picture never froze for long
    assert back["freezes"] < 1.0, back
    consumers = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=AUTH).json()["participants"]["viewer"]
    assert any(c.get("switches", 0) >= 2 for c in consumers["consumers"]), consumers


PUBLISH_ONE_ENCODING = """async ({room}) => {
  const r = await Roomcast.connect(location.origin, await Roomcast.devToken(room, 'host'), {iceServers: []});
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: false});
  await r.publish(stream, {simulcast: false});
  window.room = r;
  return r.sfu.publisher.pc.localDescription.sdp;
}"""


async def test_publish_with_simulcast_false_sends_one_encoding(server: ServerProcess, new_page: NewPage) -> None:
    room = "one-" + uuid.uuid4().hex[:6]
    host = await new_page(server.base + "/")
    await host.add_script_tag(url="/sdk/roomcast.js")
    sdp = await host.evaluate(PUBLISH_ONE_ENCODING, {"room": room})
    assert "a=simulcast" not in sdp and "a=rid" not in sdp, sdp
    assert video_track(server, room)["simulcast"] is False
    layers = await until(host, OUTBOUND, "Object.values(v).some(l => l.bytes > 0)", 20)
    assert list(layers) == ["-"], layers  # one outbound stream, no rid


async def test_a_viewer_sized_element_gets_a_smaller_layer_and_a_hidden_track_stops(
    server: ServerProcess, new_page: NewPage
) -> None:
    room, _host, viewer = await host_and_viewer(server, new_page, "adaptive")
    sid = video_track(server, room)["sid"]
    top = await until(viewer, INBOUND, "v.height >= 300", 40)
    await viewer.evaluate(f"window.room.setVideoDimensions('{sid}', 160, 90)")  # a thumbnail
    await until(viewer, INBOUND, f"v.height > 0 && v.height < {top['height']}", 20)
    await viewer.evaluate(f"window.room.setTrackEnabled('{sid}', false)")
    await asyncio.sleep(1.0)  # let packets in flight arrive before sampling the stopped stream
    stopped = await viewer.evaluate(INBOUND)
    await asyncio.sleep(2.0)  # two seconds in which a disabled track must receive nothing
    still = await viewer.evaluate(INBOUND)
    assert still["bytes"] - stopped["bytes"] < 2000, (stopped, still)
    await viewer.evaluate(f"window.room.setTrackEnabled('{sid}', true)")
    again = await until(viewer, INBOUND, f"v.decoded > {still['decoded'] + 15}", 20)
    assert again["bytes"] > still["bytes"]


async def test_an_unknown_track_gets_a_typed_error(server: ServerProcess, new_page: NewPage) -> None:
    _room, _host, viewer = await host_and_viewer(server, new_page, "settings")
    await viewer.evaluate("""() => { window.errors = []; window.room.on('error', e => window.errors.push(e.code));
      window.room._send({type: 'track_settings', track_sid: 'TR_nope', quality: 'low'}); }""")
    await viewer.wait_for_function("window.errors.includes('unknown_track')")


async def test_dynacast_stops_a_layer_nobody_receives_and_brings_it_back(
    server: ServerProcess, new_page: NewPage
) -> None:
    """The publisher stops encoding ``f`` when its last full-layer viewer asks for less or leaves."""
    room, host, viewer = await host_and_viewer(server, new_page, "dynacast")
    sid = video_track(server, room)["sid"]
    await until(host, OUTBOUND, "v.f && v.f.bytes > 0", 40)
    await host.evaluate(
        "() => { window.layerEvents = []; window.room.on('publisherLayers', e => window.layerEvents.push(e.active)); }"
    )
    await viewer.evaluate(f"window.room.setVideoQuality('{sid}', 'low')")
    await host.wait_for_function("window.layerEvents.some(a => !a.includes('f'))", timeout=10_000)
    await asyncio.sleep(1.0)  # frames already in the encoder's pipeline
    before = (await host.evaluate(OUTBOUND))["f"]["bytes"]
    await asyncio.sleep(2.0)  # a window in which a stopped layer must send nothing
    assert (await host.evaluate(OUTBOUND))["f"]["bytes"] - before < 2000
    await viewer.evaluate(f"window.room.setVideoQuality('{sid}', 'high')")
    await until(host, OUTBOUND, f"v.f && v.f.bytes > {before + 20000}", 20)
    top = await until(viewer, INBOUND, "v.height >= 300", 20)
    assert top["height"] >= 300
    await viewer.evaluate("window.room.leave()")  # the last viewer goes: only the lowest layer stays
    await host.wait_for_function(
        "window.layerEvents.length >= 3 && !window.layerEvents.at(-1).includes('f')", timeout=10_000
    )
