"""F2, F5, F6 with real Chromium: host → Roomcast SFU → viewer while ``lo`` loses packets.

The impairment (:mod:`tests.support.lossy_lo`) drops packets at random on ``lo`` in this namespace, so
both legs (host → SFU and SFU → viewer) lose, and so do NACKs, retransmissions, RTCP and signaling TCP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page

from tests.e2e.test_sfu import room_stats
from tests.faults.bots import joined_count
from tests.faults.browsers import host_and_viewer, until_async, video_stats
from tests.support.browser_fixtures import NewPage
from tests.support.lossy_lo import LossyLoopback
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
WINDOW_FRAMES = 240  # about 8 s of the fake camera's 30 fps


def forwarded_rid(server: ServerProcess, room: str) -> str:
    """The rid of the simulcast layer the viewer receives ('' without simulcast)."""
    stats = room_stats(server, room)
    track = next(t for t in stats["tracks"] if t["kind"] == "video")
    if not track.get("simulcast"):
        return ""
    consumer = next(c for c in stats["participants"]["viewer"]["consumers"] if c["track"] == track["sid"])
    return str(track["layers"][max(consumer["spatial"], 0)]["rid"])


async def pin_lowest_layer(server: ServerProcess, room: str, viewer: Page) -> None:
    """With simulcast, measure one steady layer: the lowest, which the publisher always encodes (its
    bandwidth estimate, shaken by the loss, may turn the top layer off and on, and each switch of the
    viewer's layer would mix two layers' frame counts)."""
    track = next(t for t in room_stats(server, room)["tracks"] if t["kind"] == "video")
    if not track.get("simulcast"):
        return
    await viewer.evaluate(f"window.room.setVideoQuality('{track['sid']}', 'low')")

    async def on_lowest() -> bool:
        consumers = room_stats(server, room)["participants"]["viewer"]["consumers"]
        return any(c["track"] == track["sid"] and c.get("spatial") == 0 for c in consumers)

    await until_async(on_lowest, 10, "the viewer on the lowest layer")


def both_connected(server: ServerProcess, room: str) -> bool:
    """The server still has both participants, with the same media connections, connected."""
    people = room_stats(server, room)["participants"]
    return (
        set(people) == {"host", "viewer"}
        and people["host"]["publisher"] == "connected"
        and people["viewer"]["subscriber"] == "connected"
    )


def video_consumer(server: ServerProcess, room: str) -> dict[str, Any]:
    """The viewer's consumer of the video track in the room's stats ({} without simulcast)."""
    stats = room_stats(server, room)
    track = next(t for t in stats["tracks"] if t["kind"] == "video")
    consumers = stats["participants"]["viewer"]["consumers"]
    return next((c for c in consumers if c["track"] == track["sid"] and "frames" in c), {})


@pytest.mark.parametrize("simulcast", [False, True], ids=["single", "simulcast"])
async def test_f5_ten_percent_loss_still_delivers_95_percent_of_frames(
    server: ServerProcess, new_page: NewPage, lossy_lo: LossyLoopback, simulcast: bool
) -> None:
    """Of the frames the SFU forwards to the viewer, 95 % are decoded. Without simulcast that is every frame
    the host encodes; with it, the frames of the layer the viewer receives that the SFU sends it to decode
    (its ``frames`` count): the viewer's bandwidth estimate may lower the frame rate (loss lowers it, issue
    14), and the frames of a temporal layer the SFU does not forward are not losses to repair."""
    room, host, viewer = await host_and_viewer(server, new_page, "f5", simulcast=simulcast)
    await pin_lowest_layer(server, room, viewer)
    lossy_lo.set_loss(0.10)
    # measure once recovery is at work (the viewer has asked for retransmissions), not before
    await until_async(lambda: _nacked(viewer), 10, "the viewer sending NACKs under 10 % loss")
    start_host, start_viewer = await video_stats(host), await video_stats(viewer)
    start_consumer = video_consumer(server, room)

    async def window_done() -> bool:
        rid = forwarded_rid(server, room)
        return int((await video_stats(host))["by_rid"][rid]) >= int(start_host["by_rid"][rid]) + WINDOW_FRAMES

    await until_async(window_done, 20, f"the host encoding {WINDOW_FRAMES} frames under loss")
    end_host, end_viewer = await video_stats(host), await video_stats(viewer)
    end_consumer = video_consumer(server, room)
    rid = forwarded_rid(server, room)  # with simulcast, the frames of the layer the viewer receives
    encoded = end_host["by_rid"][rid] - start_host["by_rid"][rid]
    forwarded = end_consumer["frames"] - start_consumer["frames"] if simulcast else encoded
    decoded = end_viewer["decoded"] - start_viewer["decoded"]
    ratio = decoded / forwarded
    stats = room_stats(server, room)
    track = next(t for t in stats["tracks"] if t["kind"] == "video")
    estimate = stats["participants"]["viewer"].get("estimate", {})
    print(
        f"\nF5 ({'simulcast' if simulcast else 'single'}): 10 % loss on lo: {decoded}/{forwarded} frames "
        f"decoded = {ratio:.1%} ({encoded} encoded, temporal layers 0..{end_consumer.get('temporal', '-')}, "
        f"estimate {estimate.get('target', '-')} bit/s); viewer NACKs {end_viewer['nacks']}, SFU retransmitted "
        f"{track['retransmitted']}, SFU NACKs upstream {track['nacks_sent_upstream']}, host retransmitted "
        f"{end_host['retransmitted']}, dropped on lo {lossy_lo.dropped()}; {end_consumer}"
    )
    assert ratio >= 0.95, ratio
    assert track["retransmitted"] > 0 and end_host["retransmitted"] > 0  # both legs repaired by RTX
    assert forwarded <= encoded  # the SFU sent no frame the host did not encode (the count is honest)


async def _nacked(viewer: Any) -> bool:
    return int((await video_stats(viewer))["nacks"]) > 0


async def test_f6_thirty_percent_loss_stays_connected_and_recovers(
    server: ServerProcess, new_page: NewPage, lossy_lo: LossyLoopback
) -> None:
    room, host, viewer = await host_and_viewer(server, new_page, "f6")
    joins = joined_count(server)
    lossy_lo.set_loss(0.30)
    await asyncio.sleep(6)  # the fault's duration: six seconds of 30 % loss
    during = await video_stats(viewer)
    assert "failed" not in during["states"] and during["room"] == "connected", during
    dropped = lossy_lo.dropped()
    assert dropped > 100  # the loss was real
    lossy_lo.clear()
    took = await until_async(
        lambda: _decoded_beyond(viewer, int(during["decoded"]) + 60), 15, "decoding again after healing"
    )
    states = during["states"]
    print(f"\nF6: 30 % loss for 6 s ({dropped} dropped): states {states}, 60 more frames {took:.1f}s after healing")
    assert both_connected(server, room)
    assert joined_count(server) == joins  # nobody had to join again
    assert await viewer.evaluate("window.resumed") == 0 and await host.evaluate("window.resumed") == 0


async def _decoded_beyond(viewer: Any, frames: int) -> bool:
    return int((await video_stats(viewer))["decoded"]) >= frames


async def test_f2_five_second_blackhole_then_media_resumes_without_rejoin(
    server: ServerProcess, new_page: NewPage, lossy_lo: LossyLoopback
) -> None:
    room, host, viewer = await host_and_viewer(server, new_page, "f2")
    joins = joined_count(server)
    lossy_lo.set_loss(1.0)
    before = int((await video_stats(viewer))["decoded"])
    await asyncio.sleep(5)  # the fault's duration: a five-second blackhole
    during = int((await video_stats(viewer))["decoded"])
    dropped = lossy_lo.dropped()
    lossy_lo.clear()
    assert during - before < 15 and dropped > 100  # the blackhole was real: decoding stopped
    took = await until_async(lambda: _decoded_beyond(viewer, during + 30), 15, "decoding again after the blackhole")
    print(f"\nF2: 5 s blackhole ({dropped} packets dropped); decoding again {took:.1f}s after it ended")
    assert both_connected(server, room)
    assert joined_count(server) == joins  # same participants, no new join (not even a resume)
    assert await viewer.evaluate("window.resumed") == 0 and await host.evaluate("window.resumed") == 0
