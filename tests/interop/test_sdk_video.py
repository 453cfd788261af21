"""The Python SDK publishes pre-encoded VP8 (IVF from ffmpeg), packetized per RFC 7741, and a real
Chromium subscriber decodes it through the SFU: no decoding anywhere on our side."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest

from roomcast.sdk import connect, stream_ivf
from roomcast.wire.vp8 import depacketize, packetize, read_ivf
from tests.e2e.test_sfu import decoding_tracks
from tests.signaling.wsclient import dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def ivf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.ivf"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "2",
            "-c:v",
            "libvpx",
            "-b:v",
            "400k",
            "-g",
            "15",
            str(path),
        ],
        check=True,
    )
    return path


def test_ivf_and_vp8_packetization_round_trip(ivf: Path) -> None:
    header, frames = read_ivf(ivf.read_bytes())
    assert (header.fourcc, header.width, header.height) == (b"VP80", 320, 240)
    assert frames[0].keyframe and len(frames) == 60
    for frame in frames[:10]:
        packets = list(packetize(frame.data, mtu=300))
        assert [m for _, m in packets] == [False] * (len(packets) - 1) + [True]
        assert packets[0][0][0] & 0x10 and depacketize([p for p, _ in packets]) == frame.data


@pytest.mark.browser
async def test_chromium_decodes_what_the_sdk_publishes(server: ServerProcess, new_page: NewPage, ivf: Path) -> None:
    room = "sdk-vp8-" + uuid.uuid4().hex[:6]
    camera = await connect(server.ws_base, dev_token(room, "camera"))
    publication = await camera.publish(["video"])
    streaming = asyncio.create_task(stream_ivf(publication, str(ivf)))
    try:
        viewer = await new_page(f"{server.base}/stream?room={room}&role=viewer&identity=viewer")
        await viewer.wait_for_function("window.streamState && window.streamState.joined")
        frames = await decoding_tracks(viewer, 1, timeout=20)
        assert max(frames) > 0
        width = await viewer.evaluate(
            """async () => (await window.room.getStats())
                 .find(s => s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0).frameWidth"""
        )
        assert width == 320
    finally:
        streaming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await streaming
        await camera.close()
