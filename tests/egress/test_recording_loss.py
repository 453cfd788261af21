"""A Chromium host recorded under 10 % random loss on every packet of the loopback (publisher to server and
server to recorder): the recorder NACKs, skips what stays lost up to the next keyframe it asks for, and the
file decodes without a single error."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.e2e.test_call import frames_decoded
from tests.egress.conftest import (
    decode_errors,
    ffprobe,
    start_recording,
    stop_recording,
    video_packets,
    wait_recording,
)
from tests.support.browser_fixtures import NewPage
from tests.support.lossy_lo import LossyLoopback
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
SECONDS = 12.0
LOSS = 0.10


async def test_recording_under_loss_decodes(recording_server: ServerProcess, new_page: NewPage) -> None:
    server = recording_server
    room = "rec-loss-" + uuid.uuid4().hex[:6]
    host = await new_page(f"{server.base}/call?room={room}&identity=host")
    viewer = await new_page(f"{server.base}/call?room={room}&identity=viewer")
    await frames_decoded(viewer, 10)
    impairment = LossyLoopback()
    try:
        impairment.set_loss(LOSS)
        rec_id = await asyncio.to_thread(start_recording, server, room)
        # both files (host and viewer) began: under this loss a recorder's own WebSocket connect can take
        # seconds (TCP SYN retransmissions on the impaired loopback)
        await asyncio.to_thread(wait_recording, server, room, rec_id, 2, 40)
        began = time.monotonic()
        await asyncio.sleep(SECONDS)  # the length of the recording, not a wait for an event
        dropped = impairment.dropped()
    finally:
        impairment.clear()
    info = await asyncio.to_thread(stop_recording, server, room, rec_id)
    wall = time.monotonic() - began
    assert dropped > 200, dropped  # the loss was real
    files = {f["participant"]: f for f in info["files"]}
    host_file = files["host"]
    path = host_file["path"]
    probe = ffprobe(path)
    assert sorted(s["codec_name"] for s in probe["streams"]) == ["opus", "vp8"], probe["streams"]
    assert decode_errors(path) == ""
    duration = float(probe["format"]["duration"])
    assert duration > 0.6 * wall, (duration, wall, host_file)
    frames = video_packets(path)
    # Chromium itself sends far fewer frames under this loss (its congestion control); the floor says video
    # went on through the recording instead of one keyframe now and then
    assert frames > 2 * duration, (frames, duration, host_file)
    await host.close()
    print(
        f"under {LOSS:.0%} loss ({dropped} packets dropped): {duration:.2f}s of {wall:.2f}s, {frames} video frames"
        f" ({frames / duration:.1f}/s), {host_file['size']} bytes,",
        host_file["counters"],
    )
