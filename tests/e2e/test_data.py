"""Server-terminated data channels with real Chromium: text, binary, topics, 1 MiB, grants, floods."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid

import httpx
import pytest

from tests.signaling.wsclient import dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

LISTEN = (
    "window.got = []; window.room.on('data', m => window.got.push(m)); window.errs = [];"
    "window.room.on('error', e => window.errs.push(e.code)); window.room.connectData()"
)


async def joined(new_page: NewPage, server: ServerProcess, room: str, who: str, token: str | None = None):  # type: ignore[no-untyped-def]
    url = f"{server.base}/chat?room={room}&identity={who}" + (f"&token={token}" if token else "")
    page = await new_page(url)
    await page.wait_for_function("window.room && window.room.state === 'connected'")
    await page.evaluate(LISTEN)
    return page


def metric(server: ServerProcess, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)", httpx.get(server.base + "/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_three_participants_text_binary_topics_and_one_mebibyte(server: ServerProcess, new_page: NewPage) -> None:
    room = "data-" + uuid.uuid4().hex[:6]
    a, b, c = [await joined(new_page, server, room, who) for who in ("a", "b", "c")]
    await a.wait_for_function("window.room.participants.size === 2")
    await a.evaluate("window.room.sendData('hello all', {topic: 'chat'})")
    await a.evaluate("window.room.sendData(new Uint8Array([9, 8, 7]), {topic: 'telemetry', to: ['c']})")
    await b.wait_for_function("window.got.length >= 1")
    await c.wait_for_function("window.got.length >= 2")
    got_b = await b.evaluate(
        "window.got.map(m => [m.from, m.topic, m.binary, m.binary ? Array.from(m.payload) : m.payload])"
    )
    got_c = await c.evaluate(
        "window.got.map(m => [m.from, m.topic, m.binary, m.binary ? Array.from(m.payload) : m.payload])"
    )
    assert got_b == [["a", "chat", False, "hello all"]]  # the message addressed to c did not reach b
    assert got_c == [["a", "chat", False, "hello all"], ["a", "telemetry", True, [9, 8, 7]]]
    digest = await a.evaluate("""async () => {
        const big = new Uint8Array(1024 * 1024);
        for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
        await window.room.sendData(big, {topic: 'file'});
        const h = await crypto.subtle.digest('SHA-256', big);
        return Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, '0')).join('');
    }""")
    for page in (b, c):
        await page.wait_for_function("window.got.some(m => m.topic === 'file')", timeout=30_000)
        received = await page.evaluate("""async () => {
            const m = window.got.find(m => m.topic === 'file');
            const h = await crypto.subtle.digest('SHA-256', m.payload);
            return [m.payload.length, Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, '0')).join('')];
        }""")
        assert received == [1024 * 1024, digest]
    big = bytes((i * 7919) % 251 for i in range(1024 * 1024))
    assert hashlib.sha256(big).hexdigest() == digest  # and it is the content we meant to send
    assert metric(server, 'roomcast_media_events_total{event="data_messages_out"}') > 0
    stats = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=("devkey", "devsecret")).json()
    assert stats["data"]["data_messages_in"] >= 2 + 18 and stats["data"]["data_bytes_out"] > 2 * 1024 * 1024


async def test_late_joiner_gets_chat_history(server: ServerProcess, new_page: NewPage) -> None:
    room = "hist-" + uuid.uuid4().hex[:6]
    a = await joined(new_page, server, room, "early")
    b = await joined(new_page, server, room, "witness")
    await a.evaluate("window.room.sendData('before you came', {topic: 'chat'})")
    await b.wait_for_function("window.got.length >= 1")
    late = await new_page(f"{server.base}/chat?room={room}&identity=late")
    await late.wait_for_selector("#messages li:has-text('before you came')")


async def test_no_publish_data_grant_is_refused_and_flood_is_limited(server: ServerProcess, new_page: NewPage) -> None:
    room = "deny-" + uuid.uuid4().hex[:6]
    listener = await joined(new_page, server, room, "listener")
    muted = await joined(new_page, server, room, "muted", token=dev_token(room, "muted", can_publish_data=False))
    await muted.evaluate("window.room.sendData('let me talk', {topic: 'chat'})")
    await muted.wait_for_function("window.errs.includes('permission_denied')")
    canary_room = "canary-" + uuid.uuid4().hex[:6]
    canary_a = await joined(new_page, server, canary_room, "ca")
    canary_b = await joined(new_page, server, canary_room, "cb")
    flooder = await joined(new_page, server, room, "flooder")
    await flooder.evaluate(
        "(async () => { for (let i = 0; i < 2000; i++) window.room.sendData('x' + i, {topic: 'spam'}); })()"
    )
    await flooder.wait_for_function("window.errs.includes('rate_limited')", timeout=20_000)
    await canary_a.evaluate("window.room.sendData('still fine', {topic: 'chat'})")
    await canary_b.wait_for_function("window.got.some(m => m.payload === 'still fine')")
    await listener.wait_for_function("window.got.length > 0")
    assert await listener.evaluate("window.got.every(m => m.from !== 'muted')")
    received = await listener.evaluate("window.got.filter(m => m.topic === 'spam').length")
    assert received < 2000  # the excess was dropped ...
    assert metric(server, 'roomcast_media_dropped_total{reason="data_dropped_rate_limited"}') > 0  # ... and counted
    await asyncio.sleep(0)
