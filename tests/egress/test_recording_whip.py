"""Recording an H.264 + Opus publisher (PyAV's FFmpeg over WHIP): one Matroska file, both streams as sent."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests.egress.conftest import (
    api,
    decode_errors,
    ffprobe,
    first_frame_times,
    start_recording,
    stop_recording,
    video_packets,
    wait_recording,
)
from tests.support.server import ServerProcess
from tests.whip.conftest import ffmpeg_publisher, mint


def test_whip_publisher_recorded_to_matroska(recording_server: ServerProcess, artifacts: Path) -> None:
    server = recording_server
    room = "rec-whip-" + uuid.uuid4().hex[:6]
    publisher = ffmpeg_publisher(server, room, mint(server, room, "encoder"), 14, artifacts / f"{room}-ffmpeg.log")
    try:
        deadline = time.monotonic() + 20
        while api(server, "GET", room).status_code != 200:
            assert time.monotonic() < deadline, "the WHIP publisher never created its room"
            time.sleep(0.1)  # polling the room's creation with a deadline
        rec_id = start_recording(server, room)
        wait_recording(server, room, rec_id)
        began = time.monotonic()
        time.sleep(8)  # the length of the recording, not a wait for an event
        info = stop_recording(server, room, rec_id)
        wall = time.monotonic() - began
    finally:
        publisher.wait(40)
    assert len(info["files"]) == 1, info
    path = info["path"]
    assert path.endswith(".mkv") and Path(path).stat().st_size == info["size"] > 50_000, info
    probe = ffprobe(path)
    codecs = sorted(s["codec_name"] for s in probe["streams"])
    assert codecs == ["h264", "opus"], probe["streams"]
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (640, 360)
    duration = float(probe["format"]["duration"])
    # The pts are the publisher's RTP clock: 30 frames a second of it. (This publisher catches up in bursts
    # when the machine is loaded, so its media time may run ahead of the wall clock over 8 s; the Chromium
    # test holds the 5 % to the wall clock.)
    frames = video_packets(path)
    assert abs(duration - frames / 30) < 0.05 * duration, (duration, frames)
    assert abs(duration - wall) < 0.15 * wall, (duration, wall)
    assert decode_errors(path) == ""
    first = first_frame_times(path)
    assert abs(first["video"] - first["audio"]) < 0.1, first
    print(
        f"whip recording: {duration:.2f}s of {wall:.2f}s wall, {info['size']} bytes, first pts {first},",
        info["files"][0]["counters"],
    )
