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
from tests.support.canary import Canaries
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


async def sent_and_decoded(server: ServerProcess, room: str, host: Page, viewer: Page) -> tuple[int, int]:
    """(frames sent to the viewer so far, frames it decoded). Sent: without simulcast, every frame the host
    encodes; with it, the frames of the viewer's layer the SFU sends it to decode (its consumer's ``frames``:
    the viewer's bandwidth estimate may lower the frame rate, loss lowers it (issue 14), and frames of a
    temporal layer the SFU does not forward are not losses to repair)."""
    consumer = video_consumer(server, room)
    host_stats, viewer_stats = await video_stats(host), await video_stats(viewer)
    sent = consumer["frames"] if consumer else host_stats["by_rid"][""]
    return int(sent), int(viewer_stats["decoded"])


@pytest.mark.parametrize("simulcast", [False, True], ids=["single", "simulcast"])
async def test_f5_ten_percent_loss_still_delivers_95_percent_of_frames(
    server: ServerProcess, new_page: NewPage, lossy_lo: LossyLoopback, simulcast: bool, canaries: Canaries
) -> None:
    """Of the frames sent to the viewer while ``lo`` loses 10 %, 95 % are decoded. The count starts on the clean
    stream and ends once the healed network has let the repairs still in flight arrive (a viewer waiting for
    one holds the frames after it: at either end of the window they would count as lost, or twice)."""
    canary = await canaries.sdk(server)  # O3: another room, through the same lossy lo
    room, host, viewer = await host_and_viewer(server, new_page, "f5", simulcast=simulcast)
    await pin_lowest_layer(server, room, viewer)
    start_host = await video_stats(host)
    sent0, decoded0 = await sent_and_decoded(server, room, host, viewer)
    lossy_lo.set_loss(0.10)
    lossy_from = canary.mark()
    await until_async(lambda: _nacked(viewer), 10, "the viewer sending NACKs under 10 % loss")

    async def window_done() -> bool:
        rid = forwarded_rid(server, room)
        return int((await video_stats(host))["by_rid"][rid]) >= int(start_host["by_rid"][rid]) + WINDOW_FRAMES

    await until_async(window_done, 20, f"the host encoding {WINDOW_FRAMES} frames under loss")
    sent1, _ = await sent_and_decoded(server, room, host, viewer)
    end_host, end_consumer = await video_stats(host), video_consumer(server, room)
    dropped = lossy_lo.dropped()
    lossy_lo.clear()
    canary_gap = canary.assert_flowed(since=lossy_from, max_gap=1.0)  # 10 % loss never stops it for a second
    nacks = {"count": -1, "since": 0.0}

    async def repairs_done() -> bool:  # no NACK for half a second on the healed network
        count, now = int((await video_stats(viewer))["nacks"]), asyncio.get_running_loop().time()
        if count != nacks["count"]:
            nacks.update(count=count, since=now)
        return now - nacks["since"] >= 0.5

    await until_async(repairs_done, 10, "the viewer done with its repairs once the loss stopped")
    sent2, decoded2 = await sent_and_decoded(server, room, host, viewer)
    sent = sent1 - sent0
    decoded = decoded2 - decoded0 - (sent2 - sent1)  # those sent on the healed network all decoded too
    ratio = decoded / sent
    rid = forwarded_rid(server, room)
    encoded = end_host["by_rid"][rid] - start_host["by_rid"][rid]
    stats = room_stats(server, room)
    track = next(t for t in stats["tracks"] if t["kind"] == "video")
    estimate = stats["participants"]["viewer"].get("estimate", {})
    print(
        f"\nF5 ({'simulcast' if simulcast else 'single'}): 10 % loss on lo: {decoded}/{sent} frames decoded = "
        f"{ratio:.1%} ({encoded} encoded, temporal layers 0..{end_consumer.get('temporal', '-')}, estimate "
        f"{estimate.get('target', '-')} bit/s, REMB {estimate.get('remb', '-')}); viewer NACKs {nacks['count']}, "
        f"SFU retransmitted {track['retransmitted']}, SFU NACKs upstream {track['nacks_sent_upstream']}, "
        f"host retransmitted {end_host['retransmitted']}, dropped on lo {dropped}; {end_consumer}"
    )
    assert ratio >= 0.95, ratio
    assert track["retransmitted"] > 0 and end_host["retransmitted"] > 0  # both legs repaired by RTX
    assert sent <= encoded  # the SFU sent no frame the host did not encode (the count is honest)
    await canary.assert_alive()
    print(f"F5: canary's longest gap under loss {canary_gap:.2f}s")


async def _nacked(viewer: Any) -> bool:
    return int((await video_stats(viewer))["nacks"]) > 0


async def test_f6_thirty_percent_loss_stays_connected_and_recovers(
    server: ServerProcess, new_page: NewPage, lossy_lo: LossyLoopback, canaries: Canaries
) -> None:
    canary = await canaries.sdk(server)
    room, host, viewer = await host_and_viewer(server, new_page, "f6")
    joins = joined_count(server)
    lossy_lo.set_loss(0.30)
    lossy_from = canary.mark()
    await asyncio.sleep(6)  # the fault's duration: six seconds of 30 % loss
    during = await video_stats(viewer)
    assert "failed" not in during["states"] and during["room"] == "connected", during
    dropped = lossy_lo.dropped()
    assert dropped > 100  # the loss was real
    lossy_lo.clear()
    canary.assert_flowed(since=lossy_from, max_gap=1.5)  # O3: frames kept coming, at half the rate
    took = await until_async(
        lambda: _decoded_beyond(viewer, int(during["decoded"]) + 60), 15, "decoding again after healing"
    )
    states = during["states"]
    print(f"\nF6: 30 % loss for 6 s ({dropped} dropped): states {states}, 60 more frames {took:.1f}s after healing")
    assert both_connected(server, room)
    assert joined_count(server) == joins  # nobody had to join again
    assert await viewer.evaluate("window.resumed") == 0 and await host.evaluate("window.resumed") == 0
    await canary.assert_alive()


async def _decoded_beyond(viewer: Any, frames: int) -> bool:
    return int((await video_stats(viewer))["decoded"]) >= frames


async def test_f2_five_second_blackhole_then_media_resumes_without_rejoin(
    server: ServerProcess, new_page: NewPage, lossy_lo: LossyLoopback, canaries: Canaries
) -> None:
    canary = await canaries.sdk(server)
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
    await canary.assert_alive(timeout=15)  # O3 after: a blackhole stops everything; the canary comes back too
