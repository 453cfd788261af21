"""Chromium ↔ the server's echo endpoint: our own ICE-lite, DTLS-SRTP and RTP path against a real browser."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_call import AUDIO_PACKETS, FRAMES_DECODED, wait_stat
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
