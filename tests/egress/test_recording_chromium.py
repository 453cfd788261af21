"""Recording a 20 s Chromium call (two /call pages, fake camera and microphone): one WebM per participant,
VP8 + Opus as Chromium sent them, as long as the call, decodable, audio and video starting together."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.e2e.test_call import AUDIO_PACKETS, frames_decoded, wait_stat
from tests.egress.conftest import (
    decode_errors,
    ffprobe,
    first_frame_times,
    start_recording,
    stop_recording,
    wait_recording,
)
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
SECONDS = 20.0


async def test_chromium_call_recorded_per_participant(recording_server: ServerProcess, new_page: NewPage) -> None:
    server = recording_server
    room = "rec-call-" + uuid.uuid4().hex[:6]
    alice = await new_page(f"{server.base}/call?room={room}&identity=alice")
    await alice.wait_for_function("window.callState && window.callState.joined")
    bob = await new_page(f"{server.base}/call?room={room}&identity=bob")
    await frames_decoded(alice, 10)
    await frames_decoded(bob, 10)
    rec_id = await asyncio.to_thread(start_recording, server, room)
    began: dict[str, float] = {}  # participant -> when its file was first seen begun (its first keyframe)
    deadline = time.monotonic() + 20
    while len(began) < 2:
        info = await asyncio.to_thread(wait_recording, server, room, rec_id, 1)
        for f in info["files"]:
            began.setdefault(f["participant"], time.monotonic())
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.05)  # polling the API with a deadline
    await asyncio.sleep(SECONDS)  # the length of the recording, not a wait for an event
    decoded = await frames_decoded(bob, 1)
    info = await asyncio.to_thread(stop_recording, server, room, rec_id)
    ended = time.monotonic()
    assert await wait_stat(alice, AUDIO_PACKETS, 1) > 0
    assert await frames_decoded(bob, decoded + 10) > decoded, "the call stalled while it was recorded"
    files = {f["participant"]: f for f in info["files"]}
    assert sorted(files) == ["alice", "bob"], info
    for who, f in files.items():
        wall = ended - began[who]
        path = f["path"]
        assert path.endswith(".webm") and f["state"] == "finished", f
        probe = ffprobe(path)
        assert sorted(s["codec_name"] for s in probe["streams"]) == ["opus", "vp8"], probe["streams"]
        duration = float(probe["format"]["duration"])
        assert abs(duration - wall) < 0.05 * wall, (who, duration, wall)
        assert decode_errors(path) == "", who
        first = first_frame_times(path)
        offset = abs(first["video"] - first["audio"])
        assert offset < 0.1, (who, first)
        print(
            f"{who}: {duration:.2f}s of {wall:.2f}s wall, {f['size']} bytes, A/V start {offset * 1000:.0f} ms,",
            "sender clock" if f["sender_clock"] else "arrival clock",
            f["counters"],
        )
