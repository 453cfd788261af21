"""An independent WHIP client (PyAV's FFmpeg 8 ``whip`` muxer: H.264 + Opus, its own ICE, DTLS and SRTP)
publishes into a room; Chromium viewers on the ordinary ``/stream`` page decode it like any participant's."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from tests.e2e.test_sfu import decoding_tracks
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess
from tests.whip.conftest import AUTH, ffmpeg_publisher, mint

pytestmark = pytest.mark.browser

INBOUND = """async () => {
  const out = {video: null, audio: null};
  for (const s of await window.room.getStats()) {
    if (s.type === 'inbound-rtp') out[s.kind] = {frames: s.framesDecoded || 0, fps: s.framesPerSecond || 0,
      bytes: s.bytesReceived || 0, codec: s.codecId, freezes: s.totalFreezesDuration || 0,
      width: s.frameWidth || 0, samples: s.totalSamplesReceived || 0};
  }
  for (const s of await window.room.getStats()) {
    if (s.type === 'codec' && out.video && s.id === out.video.codec) out.video.mime = s.mimeType;
    if (s.type === 'codec' && out.audio && s.id === out.audio.codec) out.audio.mime = s.mimeType;
  }
  return out;
}"""


async def inbound(page: Page) -> dict:  # type: ignore[type-arg]
    return await page.evaluate(INBOUND)  # type: ignore[no-any-return]


def flowing(stats: dict) -> bool:  # type: ignore[type-arg]
    """A second of H.264 decoded at 20+ fps (Chromium's first fps samples are noise) and Opus arriving."""
    video, audio = stats["video"], stats["audio"]
    return bool(video and audio and video["frames"] >= 30 and video["fps"] >= 20 and audio["bytes"] > 5000)


async def steady(page: Page, samples: int = 50) -> dict:  # type: ignore[type-arg]
    """Poll (200 ms, at most 10 s) until the viewer's stats are :func:`flowing`; the last stats."""
    stats: dict = {}  # type: ignore[type-arg]
    for _ in range(samples):
        stats = await inbound(page)
        if flowing(stats):
            return stats
        await asyncio.sleep(0.2)
    return stats


def participants(server: ServerProcess, room: str) -> list[str]:
    res = httpx.get(f"{server.base}/api/rooms/{room}/participants", auth=AUTH)
    if res.status_code == 404:
        return []
    return sorted(p["identity"] for p in res.json()["participants"])


async def test_ffmpeg_whip_publisher_is_decoded_by_chromium_viewers(
    server: ServerProcess, new_page: NewPage, artifacts: Path
) -> None:
    room = "whip-" + uuid.uuid4().hex[:6]
    viewers = [await new_page(f"{server.base}/stream?room={room}&role=viewer&identity=v{i}") for i in range(2)]
    for viewer in viewers:
        await viewer.wait_for_function("window.streamState && window.streamState.joined")
        await viewer.evaluate("window.left = []; window.room.on('participantLeft', p => window.left.push(p.identity))")
    publisher = ffmpeg_publisher(server, room, mint(server, room, "encoder"), 14, artifacts / f"{room}-ffmpeg.log")
    try:
        await asyncio.gather(*(decoding_tracks(v, 1, timeout=30) for v in viewers))
        assert "encoder" in participants(server, room)  # a participant like any other, named by its token
        for viewer in viewers:
            stats = await steady(viewer)
            assert flowing(stats), stats
            video, audio = stats["video"], stats["audio"]
            assert video["mime"] == "video/H264" and video["fps"] >= 20 and video["width"] == 640, stats
            assert audio is not None and audio["mime"] == "audio/opus" and audio["bytes"] > 5000, stats
        tracks = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=AUTH).json()["tracks"]
        assert sorted(t["kind"] for t in tracks if t["participant"] == "encoder") == ["audio", "video"]
        assert all(t["subscribers"] == 2 and t["packets_forwarded"] > 0 for t in tracks), tracks
        before = (await inbound(viewers[0]))["video"]["frames"]
        await asyncio.sleep(1.0)  # one second of decoding, measured by Chromium's own counter
        last = await inbound(viewers[0])
        assert last["video"]["frames"] - before >= 15
        print(
            f"ffmpeg whip -> chromium: {last['video']['frames'] - before} frames/s decoded, fps {last['video']['fps']},"
            f" {last['video']['width']} px wide, freezes {last['video']['freezes']:.2f}s,"
            f" opus {last['audio']['bytes']} B"
        )
        code = await asyncio.to_thread(publisher.wait, 40)
        assert code == 0, (artifacts / f"{room}-ffmpeg.log").read_text()[-2000:]
        # FFmpeg DELETEs its session at the end: the participant leaves, the viewers are told
        for _ in range(50):
            if "encoder" not in participants(server, room):
                break
            await asyncio.sleep(0.1)
        assert "encoder" not in participants(server, room)
        await viewers[0].wait_for_function("window.left.includes('encoder')", timeout=5000)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
