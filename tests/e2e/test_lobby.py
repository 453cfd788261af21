"""A newcomer's path: lobby form → call page, and a clean shutdown while people are connected."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from tests.signaling.wsclient import Client
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


async def test_lobby_form_leads_to_the_call(server: ServerProcess, new_page: NewPage) -> None:
    name = "lobby-" + uuid.uuid4().hex[:6]
    page = await new_page(server.base + "/")
    await page.fill("#room", name)
    await page.fill("#identity", "newcomer")
    await page.click("#join")
    await page.wait_for_url(f"**/call?room={name}&identity=newcomer")
    await page.wait_for_function("window.callState && window.callState.joined")
    assert "in room " + name in await page.inner_text("#status")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown_closes_sockets_and_exits_zero(artifacts: Path, sig: signal.Signals) -> None:
    proc = ServerProcess(artifacts)
    client, _ = await Client.joined(proc.ws_base, "r", "alice")
    proc.proc.send_signal(sig)
    code, _ = await client.closed(timeout=10)
    assert code is not None  # the server closed the socket, not a timeout
    assert proc.proc.wait(timeout=15) == 0
    proc.stop()
    assert "Traceback" not in proc.log()
