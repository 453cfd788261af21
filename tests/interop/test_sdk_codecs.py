"""The Python SDK's media formats end to end through the SFU: H.264 (Annex-B) and Opus (Ogg) published by the
SDK reach another SDK as whole frames, byte for byte, and a real Chromium decodes them; frames published
by Chromium reach the SDK's ``subscribe(on_frame=...)`` complete, in order, with keyframes flagged."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from roomcast.sdk import Frame, Room, connect, stream_h264, stream_ogg
from roomcast.wire.h264 import read_annexb
from roomcast.wire.ogg import read_ogg_opus
from tests.signaling.wsclient import dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

H264 = ["-c:v", "libx264", "-profile:v", "baseline", "-bsf:v", "h264_mp4toannexb", "-f", "h264"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One second of H.264 Constrained Baseline (Annex-B) and one of Opus in Ogg, made by ffmpeg."""
    folder = tmp_path_factory.mktemp("media")
    video, audio = folder / "clip.h264", folder / "tone.ogg"
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-f", "lavfi"]
    subprocess.run(
        [*ffmpeg, "-i", "testsrc=size=320x240:rate=30", "-t", "1", "-pix_fmt", "yuv420p", *H264, str(video)],
        check=True,
    )
    subprocess.run([*ffmpeg, "-i", "sine=frequency=440:duration=1", "-c:a", "libopus", str(audio)], check=True)
    return video, audio


async def wait_for_tracks(room: Room, count: int) -> None:
    while len([t for t in room.tracks.values() if t["participant"] != room.identity]) < count:
        room.tracks_changed.clear()
        await asyncio.wait_for(room.tracks_changed.wait(), 15)


def collector(enough: Callable[[list[Frame]], bool]) -> tuple[list[Frame], asyncio.Event, Callable[[Frame], None]]:
    frames: list[Frame] = []
    done = asyncio.Event()

    def on_frame(frame: Frame) -> None:
        frames.append(frame)
        if enough(frames):
            done.set()

    return frames, done, on_frame


def vp8_width(frame: Frame) -> int:
    """The width in a VP8 key frame's header (RFC 6386 §9.1)."""
    return int.from_bytes(frame.data[6:8], "little") & 0x3FFF


def increasing(values: list[int]) -> bool:
    return all(0 < (b - a) % 2**32 < 2**31 for a, b in itertools.pairwise(values))


async def stop(*tasks: asyncio.Task[int]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_sdk_h264_and_opus_reach_an_sdk_subscriber_as_exact_frames(
    server: ServerProcess, media: tuple[Path, Path]
) -> None:
    video, audio = media
    units = {u.annexb(): u.keyframe for u in read_annexb(video.read_bytes())}
    packets = [p.data for p in read_ogg_opus(audio.read_bytes())[1]]
    room = "sdk-h264-" + uuid.uuid4().hex[:6]
    camera = await connect(server.ws_base, dev_token(room, "camera"))
    viewer = await connect(server.ws_base, dev_token(room, "viewer", can_publish=False))
    publication = await camera.publish(["video", "audio"], video_codec="h264")
    streams = [
        asyncio.create_task(stream_h264(publication, str(video))),
        asyncio.create_task(stream_ogg(publication, str(audio))),
    ]
    try:

        def enough(frames: list[Frame]) -> bool:
            keyframes = [f for f in frames if f.codec == "h264" and f.keyframe]
            later = [f for f in frames if f.codec == "h264" and keyframes and f.timestamp != keyframes[0].timestamp]
            return len(later) >= 30 and sum(f.codec == "opus" for f in frames) >= 50

        frames, done, on_frame = collector(enough)
        await wait_for_tracks(viewer, 2)
        await viewer.subscribe(on_frame=on_frame)
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await stop(*streams)
    got_video = [f for f in frames if f.codec == "h264"]
    got_audio = [f for f in frames if f.codec == "opus"]
    assert {f.track_sid for f in frames} == set(viewer.tracks)  # both tracks, named by their sids
    assert all(f.complete for f in frames)
    assert all(units.get(f.data) == f.keyframe for f in got_video)  # each one an access unit of the file
    assert sum(f.keyframe for f in got_video) >= 1
    assert increasing([f.timestamp for f in got_video]) and increasing([f.timestamp for f in got_audio])
    start = packets.index(got_audio[0].data)
    expected = (packets * 4)[start : start + len(got_audio)]
    assert [f.data for f in got_audio] == expected  # in order, none lost or altered on loopback
    steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(got_audio)}
    assert steps == {960}  # 20 ms packets: the timestamp follows the TOC duration
    await camera.close()
    await viewer.close()


@pytest.mark.browser
async def test_chromium_decodes_h264_and_opus_published_by_the_sdk(
    server: ServerProcess, new_page: NewPage, media: tuple[Path, Path]
) -> None:
    video, audio = media
    room = "sdk-h264-cr-" + uuid.uuid4().hex[:6]
    camera = await connect(server.ws_base, dev_token(room, "camera"))
    publication = await camera.publish(["video", "audio"], video_codec="h264")
    streams = [
        asyncio.create_task(stream_h264(publication, str(video))),
        asyncio.create_task(stream_ogg(publication, str(audio))),
    ]
    try:
        page = await new_page(f"{server.base}/stream?room={room}&role=viewer&identity=viewer")
        await page.wait_for_function("window.streamState && window.streamState.joined")
        stats = await asyncio.wait_for(
            page.evaluate(
                """async () => {
                  for (;;) {
                    const stats = await window.room.getStats();
                    const byId = Object.fromEntries(stats.map(s => [s.id, s]));
                    const video = stats.find(s => s.type === 'inbound-rtp' && s.kind === 'video'
                                                  && s.framesDecoded > 0);
                    const audio = stats.find(s => s.type === 'inbound-rtp' && s.kind === 'audio'
                                                  && s.totalSamplesReceived > 0 && s.bytesReceived > 0);
                    if (video && audio) return {
                      videoCodec: (byId[video.codecId] || {}).mimeType, frames: video.framesDecoded,
                      width: video.frameWidth, audioCodec: (byId[audio.codecId] || {}).mimeType,
                      samples: audio.totalSamplesReceived };
                    await new Promise(r => setTimeout(r, 250));
                  }
                }"""
            ),
            25,
        )
    finally:
        await stop(*streams)
        await camera.close()
    assert stats["videoCodec"] == "video/H264" and stats["frames"] > 0 and stats["width"] == 320
    assert stats["audioCodec"] == "audio/opus" and stats["samples"] > 0


@pytest.mark.browser
async def test_sdk_receives_whole_frames_from_a_chromium_publisher(server: ServerProcess, new_page: NewPage) -> None:
    room = "sdk-frames-" + uuid.uuid4().hex[:6]
    host = await new_page(f"{server.base}/stream?room={room}&role=host&identity=host")
    await host.wait_for_function("window.streamState && window.streamState.joined")
    viewer = await connect(server.ws_base, dev_token(room, "viewer", can_publish=False))
    try:

        def enough(frames: list[Frame]) -> bool:
            video = [f for f in frames if f.codec != "opus"]
            # the host publishes simulcast (h 320, f 640 wide): its `f` layer may start a moment after the
            # viewer's first frames, which then come from `h`; the server moves the viewer up at f's keyframe
            top = any(f.keyframe and (f.codec != "vp8" or vp8_width(f) == 640) for f in video)
            return top and len(video) >= 30 and len(frames) - len(video) >= 50

        frames, done, on_frame = collector(enough)
        await wait_for_tracks(viewer, 2)
        await viewer.subscribe(on_frame=on_frame)
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await viewer.close()
    video = [f for f in frames if f.codec != "opus"]
    audio = [f for f in frames if f.codec == "opus"]
    assert video[0].codec in ("vp8", "h264") and {f.codec for f in video} == {video[0].codec}
    assert all(f.complete for f in frames) and all(f.keyframe for f in audio)
    assert increasing([f.timestamp for f in video]) and increasing([f.timestamp for f in audio])
    keyframes = [f for f in video if f.keyframe]
    if video[0].codec == "vp8":  # RFC 6386 §9.1: a key frame's start code and picture size
        assert all(f.data[3:6] == b"\x9d\x01\x2a" for f in keyframes)
        widths = [vp8_width(f) for f in keyframes]
        assert widths[-1] == 640 and widths == sorted(widths), widths  # up to the full layer, never back down
    assert len({f.track_sid for f in frames}) == 2
    dropped = sum(a.stats.dropped_frames for a in viewer.frame_assemblers.values())
    assert dropped <= 2  # loopback: at most the frame in flight when the subscription began


async def test_iot_agent_streams_an_h264_file(server: ServerProcess, media: tuple[Path, Path]) -> None:
    """``roomcast iot --video clip.h264``: the device publishes H.264 (not VP8) and a viewer gets whole
    access units of the file, a keyframe among them."""
    from roomcast.tools.iot import IotAgent

    video, _ = media
    units = {u.annexb(): u.keyframe for u in read_annexb(video.read_bytes())}
    room = "iot-h264-" + uuid.uuid4().hex[:6]
    agent = IotAgent(server.ws_base, dev_token(room, "device"), video=str(video), telemetry_interval=1.0)
    running = asyncio.create_task(agent.run(duration=20))
    viewer = await connect(server.ws_base, dev_token(room, "viewer", can_publish=False))
    try:
        frames, done, on_frame = collector(lambda got: sum(f.keyframe for f in got) >= 1 and len(got) >= 10)
        await wait_for_tracks(viewer, 1)
        await viewer.subscribe(on_frame=on_frame)
        await asyncio.wait_for(done.wait(), 15)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await viewer.close()
    assert {f.codec for f in frames} == {"h264"}
    assert all(f.complete and units.get(f.data) == f.keyframe for f in frames)
