"""Our answers, fed back to real Chromium: ``setRemoteDescription`` must accept them (RFC 8829 §5.3).

Each scenario of ``tests/wire/capture_sdp.py`` is replayed live (a browser only takes an answer to an
offer it made itself), answered by :func:`create_answer`, and checked against what the browser then
reports for its transceivers. No ICE happens: the answer's candidate points at a closed loopback port.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from roomcast.proto.jsep import AnswerParams, Mode, SendTrack, create_answer
from roomcast.wire.sdp import parse
from tests.wire.capture_sdp import SCENARIOS, make_offer, open_page, set_answer

pytestmark = pytest.mark.browser

FINGERPRINT = ":".join(f"{i * 7 % 256:02X}" for i in range(32))

CASES: list[tuple[str, Mode, str]] = [
    ("audio_video", "echo", "stable sendrecv,sendrecv"),
    ("audio_video", "publish", "stable sendonly,sendonly"),
    ("audio_video_data", "echo", "stable sendrecv,sendrecv"),
    ("data", "publish", "stable "),
    ("simulcast", "publish", "stable sendonly"),
    ("recvonly", "subscribe", "stable recvonly,recvonly"),
    ("recvonly", "echo", "stable inactive,inactive"),
]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    p = await open_page(browser)
    yield p
    await p.context.close()


@pytest.mark.parametrize(("scenario", "mode", "expected"), CASES)
async def test_chromium_accepts_our_answer(page: Page, scenario: str, mode: Mode, expected: str) -> None:
    assert scenario in SCENARIOS
    index, offer_sdp = await make_offer(page, scenario)
    offer = parse(offer_sdp)
    mids = [m.mid or "" for m in offer.media if m.kind != "application"]
    params = AnswerParams(
        ice_ufrag="rcst",
        ice_pwd="roomcast-password-0123456789",
        fingerprint=FINGERPRINT,
        candidates=[("127.0.0.1", 9)],
        mode=mode,
        send_tracks={mid: SendTrack("alice", f"track-{mid}") for mid in mids} if mode == "subscribe" else {},
        rng=random.Random(7),
    )
    negotiated = create_answer(offer, params)
    state = await set_answer(page, index, negotiated.answer.serialize())
    assert state == expected, negotiated.answer.serialize()
    if scenario == "simulcast":
        assert negotiated.media[0].rids == ("q", "h", "f")
        layers = await page.evaluate(
            "i => window.pcs[i].getSenders()[0].getParameters().encodings.map(e => e.rid).join(',')", index
        )
        assert layers == "q,h,f"  # the browser keeps sending three layers: simulcast was accepted
    if "data" in scenario:
        assert negotiated.data_mid is not None and negotiated.remote_sctp_port == 5000
