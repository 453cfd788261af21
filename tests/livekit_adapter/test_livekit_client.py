"""livekit-client 2.23 (npm), unchanged, in real Chromium pages against ``roomcast serve``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.e2e.test_call import FRAMES_DECODED, wait_stat
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET
from tests.support.browser_fixtures import NewPage
from tests.support.livekit_page import livekit_token, open_livekit_page, page_server
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with page_server() as base:
        yield base


def room_name() -> str:
    return "lk-" + uuid.uuid4().hex[:8]


async def frames(page: Page, at_least: int, identity: str | None = None, timeout: float = 40.0) -> int:
    """Poll the page's decoded video frames from remote participants until ``at_least``."""
    script = """async ([n, who]) => {
      for (;;) {
        const c = await window.lkFramesDecoded(who);
        if (c >= n) return c;
        await new Promise(r => setTimeout(r, 200));
      }
    }"""
    return int(await asyncio.wait_for(page.evaluate(script, [at_least, identity]), timeout))


async def events(page: Page) -> list[list[Any]]:
    return list(await page.evaluate("window.lkEvents"))


async def wait_event(page: Page, *wanted: Any, timeout: float = 15.0) -> None:
    await page.wait_for_function(
        "(w) => window.lkEvents.some(e => w.every((x, i) => x === null || e[i] === x))",
        arg=list(wanted),
        timeout=timeout * 1000,
    )


async def test_publish_camera_and_a_second_client_decodes_it(
    server: ServerProcess, new_page: NewPage, pages: str
) -> None:
    r = room_name()
    alice = await open_livekit_page(new_page, pages)
    joined = await alice.evaluate(
        "([u, t]) => window.lkJoin(u, t, {publish: true})", [server.ws_base, livekit_token(r, "alice")]
    )
    assert joined["state"] == "connected" and joined["sid"].startswith("PA_")
    bob = await open_livekit_page(new_page, pages)
    await bob.evaluate("([u, t]) => window.lkJoin(u, t)", [server.ws_base, livekit_token(r, "bob")])
    await wait_event(bob, "subscribed", "alice", "video")
    assert await frames(bob, 30, "alice") >= 30
    seen = await events(bob)
    assert ["subscribed", "alice", "audio"] in [e[:3] for e in seen]
    await wait_event(alice, "joined", "bob")
    await bob.evaluate("window.room.disconnect()")
    await wait_event(alice, "left", "bob")
    await alice.evaluate("window.room.disconnect()")
    await room_released(server, r)


async def room_released(server: ServerProcess, room: str, timeout: float = 10.0) -> None:
    """Everyone left: the auto-created room, its router and transports are gone (O4: nothing leaks)."""
    auth = (DEV_KEY, DEV_SECRET)
    async with httpx.AsyncClient(base_url=server.base, auth=auth) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await client.get(f"/api/rooms/{room}/stats")).status_code != 404:
            assert asyncio.get_running_loop().time() < deadline, f"room {room} still held after everyone left"
            await asyncio.sleep(0.1)  # polling a condition with a bound


async def frame_width(
    page: Page, identity: str, below: int | None = None, timeout: float = 20.0, above: int = 0
) -> int:
    """Poll the width of the frames decoded from ``identity`` until one over ``above`` arrives (``below``: and
    under it)."""
    script = """async ([who, below, above]) => {
      for (;;) {
        const w = await window.lkFrameWidth(who);
        if (w > above && (below === null || w < below)) return w;
        await new Promise(r => setTimeout(r, 200));
      }
    }"""
    return int(await asyncio.wait_for(page.evaluate(script, [identity, below, above]), timeout))


async def test_mute_subscription_and_quality_reach_the_other_side(
    server: ServerProcess, new_page: NewPage, pages: str
) -> None:
    r = room_name()
    alice = await open_livekit_page(new_page, pages)
    await alice.evaluate(
        "([u, t]) => window.lkJoin(u, t, {publish: true})", [server.ws_base, livekit_token(r, "alice")]
    )
    bob = await open_livekit_page(new_page, pages)
    await bob.evaluate("([u, t]) => window.lkJoin(u, t)", [server.ws_base, livekit_token(r, "bob")])
    assert await frames(bob, 20, "alice") >= 20
    # mute: alice's MuteTrackRequest -> the room's tracks -> bob's ParticipantUpdate
    await alice.evaluate("window.room.localParticipant.setCameraEnabled(false)")
    await wait_event(bob, "muted", "alice", "video")
    await alice.evaluate("window.room.localParticipant.setCameraEnabled(true)")
    await wait_event(bob, "unmuted", "alice", "video")
    # simulcast: the top layer first, the lowest once bob asks for LOW (UpdateTrackSettings -> layer selection)
    top = await frame_width(bob, "alice")
    await bob.evaluate("window.lkRemoteVideo('alice').setVideoQuality(LivekitClient.VideoQuality.LOW)")
    low = await frame_width(bob, "alice", below=top)
    assert low < top, (low, top)
    # unsubscribe, then subscribe again: the server takes the track off bob's connection and puts it back
    await bob.evaluate("window.lkRemoteVideo('alice').setSubscribed(false)")
    await wait_event(bob, "unsubscribed", "alice", "video")
    before = len([e for e in await events(bob) if e[:3] == ["subscribed", "alice", "video"]])
    await bob.evaluate("window.lkRemoteVideo('alice').setSubscribed(true)")
    await bob.wait_for_function(
        "(n) => window.lkEvents.filter(e => e[0] === 'subscribed' && e[1] === 'alice' && e[2] === 'video').length > n",
        arg=before,
    )
    assert await frames(bob, 10, "alice") >= 10


async def test_a_livekit_client_and_a_roomcast_call_page_decode_each_other(
    server: ServerProcess, new_page: NewPage, pages: str
) -> None:
    r = room_name()
    alice = await open_livekit_page(new_page, pages)
    await alice.evaluate(
        "([u, t]) => window.lkJoin(u, t, {publish: true})", [server.ws_base, livekit_token(r, "alice")]
    )
    carol = await new_page(f"{server.base}/call?room={r}&identity=carol")  # Roomcast's own page and JS SDK
    assert await wait_stat(carol, FRAMES_DECODED, 20, timeout=40) >= 20  # a loaded machine: a wide bound
    await wait_event(alice, "subscribed", "carol", "video")
    assert await frames(alice, 20, "carol") >= 20
    await carol.close()
    await wait_event(alice, "left", "carol")


async def test_dynacast_turns_off_the_layers_nobody_receives(
    server: ServerProcess, new_page: NewPage, pages: str
) -> None:
    r = room_name()
    alice = await open_livekit_page(new_page, pages)
    token = livekit_token(r, "alice")
    await alice.evaluate(
        "([u, t]) => window.lkJoin(u, t, {publish: true, room: {dynacast: true}})", [server.ws_base, token]
    )
    bob = await open_livekit_page(new_page, pages)
    await bob.evaluate("([u, t]) => window.lkJoin(u, t)", [server.ws_base, livekit_token(r, "bob")])
    assert await frames(bob, 10, "alice") >= 10
    # bob asks for LOW: the server's SubscribedQualityUpdate leaves alice encoding her lowest layer only
    await bob.evaluate("window.lkRemoteVideo('alice').setVideoQuality(LivekitClient.VideoQuality.LOW)")
    await alice.wait_for_function(
        "window.lkEncodings().length > 1 && window.lkEncodings().filter(([rid, on]) => on).length === 1",
        timeout=20_000,
    )
    encodings = await alice.evaluate("window.lkEncodings()")
    assert [rid for rid, on in encodings if on] == ["q"], encodings
    low = await frame_width(bob, "alice")
    # and back to HIGH: the top layer is encoded again (with the lowest, kept for new viewers: rtc/dynacast.py)
    await bob.evaluate("window.lkRemoteVideo('alice').setVideoQuality(LivekitClient.VideoQuality.HIGH)")
    await alice.wait_for_function("window.lkEncodings().some(([rid, on]) => rid === 'f' && on)", timeout=20_000)
    assert await frame_width(bob, "alice", above=low) > low


async def test_active_speakers_come_from_the_audio_level_extension(
    server: ServerProcess, new_page: NewPage, pages: str
) -> None:
    r = room_name()
    alice = await open_livekit_page(new_page, pages)
    await alice.evaluate(
        "([u, t]) => window.lkJoin(u, t, {publish: true})", [server.ws_base, livekit_token(r, "alice")]
    )
    bob = await open_livekit_page(new_page, pages)
    await bob.evaluate("([u, t]) => window.lkJoin(u, t)", [server.ws_base, livekit_token(r, "bob")])
    # Chromium's fake microphone beeps: the audio level extension says so, bob's room lists alice speaking
    await bob.wait_for_function("window.room.activeSpeakers.some(p => p.identity === 'alice')", timeout=20_000)
    await alice.evaluate("window.room.localParticipant.setMicrophoneEnabled(false)")
    await wait_event(bob, "speakers", "", timeout=20)  # muted: nobody speaks (ActiveSpeakersChanged)
    assert await bob.evaluate("window.room.activeSpeakers.length") == 0
