"""The admin dashboard ``/admin`` against a real server with real keys: login required (401 without a
session, CSRF and Origin checked on actions), failed logins rate-limited, and in Chromium the charts move
while an SDK call runs, mute and kick reach the participants, a token is minted."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomcast.rooms.tokens import Grants, mint, verify
from roomcast.sdk import Room, connect
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
API_KEY, API_SECRET = "admin-test", secrets.token_urlsafe(32)


def keyed(artifacts: Path) -> ServerProcess:
    return ServerProcess(artifacts, env={"ROOMCAST_API_KEY": API_KEY, "ROOMCAST_API_SECRET": API_SECRET})


@pytest.fixture(scope="module")
def admin_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = keyed(artifacts)
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log()
    assert API_SECRET not in proc.log()


def login(base: str, secret: str = API_SECRET) -> httpx.Response:
    return httpx.post(base + "/admin/login", json={"key": API_KEY, "secret": secret})


def test_login_is_required_and_actions_need_the_csrf_token(admin_server: ServerProcess) -> None:
    base = admin_server.base
    page = httpx.get(base + "/admin")
    assert page.status_code == 401 and 'id="login"' in page.text
    assert httpx.get(base + "/admin/api/overview").status_code == 401
    action = {"action": "end_room", "room": "x"}
    assert httpx.post(base + "/admin/api/action", json=action).status_code == 401
    ok = login(base)
    assert ok.status_code == 200
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    with httpx.Client(base_url=base, cookies=ok.cookies) as client:
        assert client.get("/admin").status_code == 200
        assert client.get("/admin/api/overview").json()["server"]["node_id"]
        assert client.post("/admin/api/action", json=action).status_code == 403  # no CSRF token
        csrf = {"X-CSRF-Token": ok.json()["csrf"]}
        foreign = {**csrf, "Origin": "https://evil.example"}
        assert client.post("/admin/api/action", json=action, headers=foreign).status_code == 403
        assert client.post("/admin/api/action", json=action, headers=csrf).status_code == 404  # no room x
        assert client.post("/admin/logout", headers=csrf).status_code == 204
        assert client.get("/admin/api/overview").status_code == 401


def test_wrong_passwords_are_rate_limited(artifacts: Path) -> None:
    proc = keyed(artifacts)  # its own server: the lock-out is per client address
    try:
        codes = [login(proc.base, "wrong-" + str(i)).status_code for i in range(5)]
        assert codes == [401] * 5
        locked = login(proc.base)  # the right secret, but locked out for now
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert locked.json()["error"]["code"] == "rate_limited"
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def call(server: ServerProcess, room: str) -> AsyncIterator[tuple[Room, Room, list[dict[str, Any]]]]:
    """alice publishes synthetic video (100 packets/s), bob subscribes; bob's events are collected."""

    def token(identity: str) -> str:
        return mint(API_KEY, API_SECRET, identity=identity, grants=Grants(room=room), now=time.time())

    alice = await connect(server.ws_base, token("alice"))
    bob = await connect(server.ws_base, token("bob"))
    events: list[dict[str, Any]] = []
    bob.on("disconnected", events.append)
    publication = await alice.publish(["video"])

    async def send() -> None:
        n = 0
        while True:
            publication.send("video", bytes([n % 256]) * 1000, n * 900, marker=True)
            n += 1
            await asyncio.sleep(0.01)  # a source's pacing

    sender = asyncio.create_task(send())
    while not bob.tracks:
        bob.tracks_changed.clear()
        await asyncio.wait_for(bob.tracks_changed.wait(), 5)
    await bob.subscribe(lambda sid, pkt: None)
    try:
        yield alice, bob, events
    finally:
        sender.cancel()
        for room_ in (alice, bob):
            with contextlib.suppress(Exception):
                await room_.close()


async def test_dashboard_charts_move_mute_and_kick(
    admin_server: ServerProcess, new_page: NewPage, artifacts: Path
) -> None:
    name = "dash-" + uuid.uuid4().hex[:6]
    async with call(admin_server, name) as (_, _, bob_events):
        page = await new_page(admin_server.base + "/admin")
        await page.fill("#key", API_KEY)
        await page.fill("#secret", "not it")
        await page.click("#login-button")
        await page.wait_for_function("document.getElementById('login-error').dataset.code === 'invalid_credentials'")
        await page.fill("#secret", API_SECRET)
        await page.click("#login-button")
        await page.wait_for_selector(f'.room[data-room="{name}"] tr[data-identity="bob"]')
        assert not await page.is_visible("#login")  # the form gives way to the dashboard
        series = f"window.adminState.series['room:{name}']"
        await page.wait_for_function(f"{series} && {series}.bitrate_kbps.filter(v => v > 100).length >= 3")
        await page.wait_for_function(f"{series}.forwarded_pps.filter(v => v > 50).length >= 3")
        title = f'.room[data-room="{name}"] [data-metric="forwarded_pps"] .title'
        first = await page.inner_text(title)
        await page.wait_for_function(
            "([sel, was]) => document.querySelector(sel).textContent !== was", arg=[title, first]
        )  # the chart redraws with new figures every second
        await page.wait_for_function("window.adminState.series.node.forwarded_pps.some(v => v > 50)")
        node = (await page.evaluate("window.adminState.overview.nodes"))[0]["node_id"]  # per node, as it reports
        await page.wait_for_function(f"window.adminState.series['node:{node}'].participants.some(v => v === 2)")
        await page.wait_for_selector(f'#per-node-charts [data-node="{node}"] [data-metric="loop_lag_ms"]')
        await page.screenshot(path=str(artifacts / "admin-dashboard.png"), full_page=True)

        await page.click(f'.room[data-room="{name}"] tr[data-identity="alice"] button[data-action="mute"]')
        await page.wait_for_selector(f'.room[data-room="{name}"] tr[data-identity="alice"] .tracks:has-text("muted")')

        await page.click(f'.room[data-room="{name}"] tr[data-identity="bob"] button[data-action="remove"]')
        for _ in range(100):  # polling the condition, bounded (5 s)
            if bob_events:
                break
            await asyncio.sleep(0.05)
        assert bob_events, "bob was not disconnected"
        await page.wait_for_selector(f'.room[data-room="{name}"] tr[data-identity="bob"]', state="detached")
        assert await page.evaluate("window.adminState.errors") == []

        await page.fill("#mint-room", name)
        await page.fill("#mint-identity", "carol")
        await page.click("#mint button")
        await page.wait_for_function("document.getElementById('minted').textContent.length > 50")
        token = verify(await page.inner_text("#minted"), {API_KEY: API_SECRET}, now=time.time())
        assert (token.identity, token.grants.room) == ("carol", name)
