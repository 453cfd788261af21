"""A WHIP publisher is a participant like any other for the Python SDK too: PyAV's FFmpeg publishes H.264 +
Opus over WHIP, an SDK subscriber reassembles the frames from SRTP and FFmpeg's own H.264 decoder (PyAV)
decodes every access unit it got, from the first keyframe on."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import av

from roomcast.sdk import connect
from roomcast.sdk.frames import Frame
from tests.signaling.wsclient import dev_token
from tests.support.server import ServerProcess
from tests.whip.conftest import ffmpeg_publisher, mint


async def test_sdk_subscriber_decodes_a_whip_publisher(server: ServerProcess, artifacts: Path) -> None:
    room = "whip-sdk-" + uuid.uuid4().hex[:6]
    frames: list[Frame] = []
    publisher = ffmpeg_publisher(server, room, mint(server, room, "encoder"), 8, artifacts / f"{room}-ffmpeg.log")
    viewer = await connect(server.ws_base, dev_token(room, "sdk-viewer", can_publish=False))
    try:
        deadline = time.monotonic() + 20
        while len(viewer.tracks) < 2:
            assert time.monotonic() < deadline, f"the SDK never saw the WHIP tracks: {viewer.tracks}"
            await asyncio.sleep(0.05)  # polling the track list with a deadline
        await viewer.subscribe(on_frame=frames.append)
        deadline = time.monotonic() + 20
        while sum(f.codec == "h264" for f in frames) < 90:  # 3 s of video
            assert time.monotonic() < deadline, f"{len(frames)} frames"
            await asyncio.sleep(0.1)
    finally:
        await viewer.close()
        await asyncio.to_thread(publisher.wait, 40)
    video = [f for f in frames if f.codec == "h264"]
    audio = [f for f in frames if f.codec == "opus"]
    start = next(i for i, f in enumerate(video) if f.keyframe)
    decoder = av.CodecContext.create("h264", "r")
    pictures = []
    for frame in video[start:]:
        pictures += decoder.decode(av.Packet(frame.data))
    assert len(pictures) >= len(video[start:]) - 5, (len(pictures), len(video))  # (the decoder's own delay)
    assert {(p.width, p.height) for p in pictures} == {(640, 360)}
    assert len(audio) >= 100 and all(f.data for f in audio)  # 20 ms Opus packets
    print(f"sdk: {len(video)} H.264 access units ({len(pictures)} decoded from the first IDR), {len(audio)} Opus")
