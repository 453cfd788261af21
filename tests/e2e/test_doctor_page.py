"""``/doctor`` in real Chromium: the checks of ``roomcast doctor`` run in the browser, against a healthy
server and with UDP blackholed (ICE over UDP fails, over TCP passes, the video round trip goes over TCP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.support.browser_fixtures import NewPage
from tests.support.coturn import Coturn
from tests.support.server import ServerProcess
from tests.support.udp_blackhole import UdpBlackhole

pytestmark = pytest.mark.browser


@pytest.fixture
def no_udp() -> Iterator[UdpBlackhole]:
    blackhole = UdpBlackhole()
    blackhole.install()
    yield blackhole
    blackhole.lift()


async def results(page: Page) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    await page.wait_for_function("window.doctorState && window.doctorState.done", timeout=60_000)
    state: dict[str, Any] = await page.evaluate("window.doctorState")
    return state, {c["name"]: c for c in state["checks"]}


async def test_doctor_page_on_a_healthy_server(server: ServerProcess, new_page: NewPage) -> None:
    page = await new_page(f"{server.base}/doctor?media_seconds=2")
    state, checks = await results(page)
    assert state["exitCode"] == 0, state
    for name in ("secure", "http", "clock", "token", "signaling", "ice_udp", "ice_tcp", "media"):
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["turn"]["status"] == "skip"
    assert checks["ice_udp"]["data"]["remote"][1:] == [server.media_port, "udp"]
    assert checks["ice_tcp"]["data"]["remote"][1:] == [server.media_tcp_port, "tcp"]
    media = checks["media"]
    assert media["title"] == "Media round trip (UDP)"
    assert media["data"]["frames_decoded"] > 10 and media["data"]["throughput_kbps"] > 0
    rows = await page.eval_on_selector_all("#checks tbody tr", "rows => rows.map(r => r.dataset.status)")
    assert len(rows) == len(state["checks"]) and "running" not in rows
    assert "Every check passed" in await page.inner_text("#verdict")


async def test_doctor_page_with_udp_blocked(server: ServerProcess, new_page: NewPage, no_udp: UdpBlackhole) -> None:
    page = await new_page(f"{server.base}/doctor?timeout=4&media_seconds=2")
    state, checks = await results(page)
    assert state["exitCode"] == 1, state
    assert checks["ice_udp"]["status"] == "fail" and "UDP" in checks["ice_udp"]["detail"]
    assert checks["ice_tcp"]["status"] == "pass"
    assert checks["media"]["title"] == "Media round trip (TCP)" and checks["media"]["status"] == "pass"
    assert checks["media"]["data"]["frames_decoded"] > 10
    assert "A call can connect, over ICE over TCP" in state["verdict"]
    assert no_udp.dropped() > 0


async def test_doctor_page_relays_through_turn(artifacts: Path, new_page: NewPage) -> None:
    turn = Coturn(artifacts / "coturn-doctor-page", dev=True)
    env = {"ROOMCAST_TURN_SECRET": turn.secret, "ROOMCAST_TURN_HOST": "127.0.0.1", "ROOMCAST_TURN_PORT": str(turn.port)}
    proc = ServerProcess(artifacts, env=env)
    try:
        page = await new_page(f"{proc.base}/doctor?media_seconds=1")
        state, checks = await results(page)
    finally:
        proc.stop()
        turn.stop()
    assert checks["turn"]["status"] == "pass", checks["turn"]
    assert "relay" in checks["turn"]["detail"]
    assert state["exitCode"] == 0, state
