"""Chromium ↔ the server's echo endpoint: our own ICE-lite, DTLS-SRTP and RTP path against a real browser."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from tests.e2e.test_call import AUDIO_PACKETS, FRAMES_DECODED, wait_stat
from tests.support.browser import CHROMIUM, chromium_args, csp_safe_waits
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

TRANSPORT_STATE = """async () => {
  const stats = await window.echoPeer.getStats();
  const t = stats.find(s => s.type === 'transport');
  const pair = stats.find(s => s.type === 'candidate-pair' && s.id === (t && t.selectedCandidatePairId));
  return {dtls: t && t.dtlsState, ice: t && t.iceState, pair: pair && pair.state,
          connection: window.echoPeer.pc.connectionState};
}"""


async def test_echo_returns_audio_and_video(server: ServerProcess, new_page: NewPage) -> None:
    page = await new_page(f"{server.base}/echo?room=echo-{uuid.uuid4().hex[:6]}&identity=tester")
    await page.wait_for_function("window.echoState && (window.echoState.connected || window.echoState.errors.length)")
    assert await page.evaluate("window.echoState.errors") == []
    assert await wait_stat(page, FRAMES_DECODED, 30) >= 30
    assert await wait_stat(page, AUDIO_PACKETS, 50) >= 50
    state = await page.evaluate(TRANSPORT_STATE)
    assert state["dtls"] == "connected" and state["connection"] == "connected", state


@pytest.fixture(scope="module")
def y4m_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320x240 test pattern from ffmpeg, to check the echoed picture is the one we sent."""
    path = tmp_path_factory.mktemp("camera") / "cam.y4m"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "3",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


async def test_echo_with_a_video_file_as_camera(server: ServerProcess, y4m_camera: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(y4m_camera))
        try:
            context = await browser.new_context(permissions=["camera", "microphone"])
            page = csp_safe_waits(await context.new_page())
            await page.goto(f"{server.base}/echo?room=file-{uuid.uuid4().hex[:6]}&identity=filecam")
            await page.wait_for_function("window.echoState && window.echoState.connected")
            assert await wait_stat(page, FRAMES_DECODED, 20) >= 20
            width = await page.evaluate(
                """async () => (await window.echoPeer.getStats())
                     .find(s => s.type === 'inbound-rtp' && s.kind === 'video').frameWidth"""
            )
            assert width == 320
        finally:
            await browser.close()
