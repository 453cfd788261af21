"""Two real Chromium participants in ``/call``: video both ways, chat, leave, refused tokens."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from playwright.async_api import Page

from tests.signaling.wsclient import dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

FRAMES_DECODED = """async () => {
  if (!window.room) return 0;
  const stats = await window.room.getStats();
  return stats.filter(s => s.type === 'inbound-rtp' && s.kind === 'video')
              .reduce((n, s) => n + (s.framesDecoded || 0), 0);
}"""

AUDIO_PACKETS = """async () => {
  const stats = await window.room.getStats();
  return stats.filter(s => s.type === 'inbound-rtp' && s.kind === 'audio')
              .reduce((n, s) => n + (s.packetsReceived || 0), 0);
}"""


async def wait_stat(page: Page, counter: str, at_least: int = 1, timeout: float = 20.0) -> int:
    """Poll a getStats() counter inside the page until it reaches ``at_least``; return its value."""
    script = f"""async (n) => {{
      const count = {counter};
      for (;;) {{
        const c = await count();
        if (c >= n) return c;
        await new Promise(r => setTimeout(r, 200));
      }}
    }}"""
    return int(await asyncio.wait_for(page.evaluate(script, at_least), timeout))


async def frames_decoded(page: Page, at_least: int = 1) -> int:
    return await wait_stat(page, FRAMES_DECODED, at_least)


def room() -> str:
    return "call-" + uuid.uuid4().hex[:8]


async def test_two_browsers_see_each_other_and_leave_is_announced(server: ServerProcess, new_page: NewPage) -> None:
    r = room()
    alice = await new_page(f"{server.base}/call?room={r}&identity=alice")
    await alice.wait_for_function("window.callState && window.callState.joined")
    bob = await new_page(f"{server.base}/call?room={r}&identity=bob")
    assert await frames_decoded(alice, 10) >= 10
    assert await frames_decoded(bob, 10) >= 10
    assert await wait_stat(bob, AUDIO_PACKETS, 1) > 0
    # the remote tile shows the other participant's video
    await alice.wait_for_selector("#tile-bob video")
    width = await alice.eval_on_selector("#tile-bob video", "v => v.videoWidth")
    assert width > 0
    assert await alice.evaluate("window.callState.errors") == []

    # mute/unmute and camera off/on are local toggles that keep the call up
    await alice.click("#mic")
    assert await alice.eval_on_selector("#mic", "b => b.textContent") == "Unmute"
    await alice.click("#cam")
    assert await alice.evaluate("window.room.localTracks.find(t => t.kind === 'video').enabled") is False
    await alice.click("#cam")

    await bob.click("#leave")
    await alice.wait_for_function("window.callState.left.includes('bob')")
    assert await alice.query_selector("#tile-bob") is None


async def test_chat_messages_arrive(server: ServerProcess, new_page: NewPage) -> None:
    r = room()
    alice = await new_page(f"{server.base}/chat?room={r}&identity=alice")
    await alice.wait_for_function("window.room && window.room.state === 'connected'")
    bob = await new_page(f"{server.base}/chat?room={r}&identity=bob")
    await bob.wait_for_function("window.room && window.room.state === 'connected'")
    await alice.wait_for_selector("text=bob joined")
    await alice.fill("#text", "hello from alice")
    await alice.press("#text", "Enter")
    await bob.wait_for_selector("#messages li:has-text('hello from alice')")
    assert await bob.inner_text("#messages li:last-child .who") == "alice"
    await bob.fill("#text", "hi alice")
    await bob.click("button[type=submit]")
    await alice.wait_for_selector("#messages li:has-text('hi alice')")


async def test_sdk_binary_data_and_topics(server: ServerProcess, new_page: NewPage) -> None:
    r = room()
    url = f"{server.base}/chat?room={r}&identity="
    a = await new_page(url + "a")
    await a.wait_for_function("window.room && window.room.state === 'connected'")
    b = await new_page(url + "b")
    await b.wait_for_function("window.room && window.room.state === 'connected'")
    await b.evaluate("window.got = []; window.room.on('data', m => window.got.push(m))")
    await b.evaluate("window.room.connectData()")  # b's data channel is open: nothing can be missed
    await a.wait_for_function("window.room.participants.has('b')")
    await a.evaluate("window.room.sendData(new Uint8Array([0, 1, 2, 255]), {topic: 'bin'})")
    await b.wait_for_function("window.got.length >= 1")
    got = await b.evaluate(
        "({topic: window.got[0].topic, bytes: Array.from(window.got[0].payload), from: window.got[0].from})"
    )
    assert got == {"topic": "bin", "bytes": [0, 1, 2, 255], "from": "a"}


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda r: dev_token(r, "eve", secret="forged-secret"), "invalid_signature"),
        (lambda r: dev_token(r, "eve", now=1_000_000_000), "token_expired"),
        (lambda r: dev_token("another-room", "eve"), "wrong_room"),
    ],
)
async def test_bad_tokens_are_refused_in_the_page(
    server: ServerProcess, new_page: NewPage, make_token, code: str
) -> None:  # type: ignore[no-untyped-def]
    r = room()
    page = await new_page(f"{server.base}/call?room={r}&identity=eve#token={make_token(r)}")
    await page.click("#start-media")  # a token from the URL: the camera (and the call) wait for the user
    await page.wait_for_function("window.callState.errors.length > 0")
    assert await page.evaluate("window.callState.errors") == [code]
    assert code in await page.inner_text("#status")
