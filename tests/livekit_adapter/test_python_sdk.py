"""The ``livekit`` Python SDK (its wheel carries its own libwebrtc) against ``roomcast serve``: a token from
``livekit-api``, a synthetic ``rtc.VideoSource`` track published, a Chromium livekit-client participant's
camera received, each decoding the other's video."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from livekit import rtc

from tests.livekit_adapter.test_livekit_client import frames, wait_event
from tests.support.browser_fixtures import NewPage
from tests.support.livekit_page import livekit_token, open_livekit_page, page_server
from tests.support.netns import jlo0
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
__all__ = ["jlo0"]

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with page_server() as base:
        yield base


@pytest.fixture(scope="module")
def sdk_server(jlo0: None, artifacts: Path) -> Iterator[ServerProcess]:
    """libwebrtc gathers no candidate on ``lo``: the server announces 127.0.0.2 (jlo0), where it also listens."""
    proc = ServerProcess(artifacts, args=["--public-ip", "127.0.0.2"])
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-4000:]


@contextlib.asynccontextmanager
async def publishing(source: rtc.VideoSource) -> AsyncIterator[None]:
    """Feed ``source`` 30 frames a second of a moving gradient (a paced source, not a stand-in for an event)."""

    async def feed() -> None:
        n = 0
        while True:
            row = bytes((x + n) % 256 for x in range(WIDTH)) * 4
            buffer = bytearray(WIDTH * HEIGHT * 4)
            buffer[0 : len(row)] = row
            source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, bytes(buffer)))
            n += 3
            await asyncio.sleep(1 / 30)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_python_sdk_and_livekit_client_decode_each_other(
    sdk_server: ServerProcess, new_page: NewPage, pages: str
) -> None:
    r = "lkpy-" + uuid.uuid4().hex[:8]
    room = rtc.Room()
    received: asyncio.Queue[rtc.VideoFrame] = asyncio.Queue(maxsize=64)
    readers: list[asyncio.Task[None]] = []

    async def read(track: rtc.Track) -> None:
        async for event in rtc.VideoStream(track):
            if not received.full():
                received.put_nowait(event.frame)

    @room.on("track_subscribed")
    def on_track(track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            readers.append(asyncio.create_task(read(track)))

    await room.connect(sdk_server.ws_base, livekit_token(r, "py"), rtc.RoomOptions(auto_subscribe=True))
    try:
        source = rtc.VideoSource(WIDTH, HEIGHT)
        track = rtc.LocalVideoTrack.create_video_track("synthetic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        async with publishing(source):
            await room.local_participant.publish_track(track, options)
            web = await open_livekit_page(new_page, pages)
            token = livekit_token(r, "web")
            await web.evaluate("([u, t]) => window.lkJoin(u, t, {publish: true})", [sdk_server.ws_base, token])
            await wait_event(web, "subscribed", "py", "video")
            assert await frames(web, 20, "py") >= 20  # Chromium decodes the Python SDK's frames
            got = [await asyncio.wait_for(received.get(), 25) for _ in range(10)]  # and the SDK decodes Chromium's
            assert all(f.width > 0 and f.height > 0 for f in got)
    finally:
        for reader in readers:
            reader.cancel()
        await room.disconnect()
