"""Capture real Chromium SDP offers once, for the SDP/JSEP fixtures (not a test module).

    unshare -n sh -c 'ip link set lo up && python -m tests.wire.capture_sdp'

Each scenario builds an ``RTCPeerConnection({iceServers: []})`` in headless Debian Chromium, creates an
offer, sets it locally, waits (briefly) for ICE gathering so the offer carries real candidates, and
writes ``tests/wire/fixtures/sdp_<name>.sdp``. The page is served by Playwright's request routing, so no
socket is opened for it; ``http://localhost`` is a secure context, which ``getUserMedia`` requires.
The same scenarios are replayed live by ``tests/proto/test_jsep_chromium.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Browser, Page, Route, async_playwright

from tests.support.browser import CHROMIUM, chromium_args

FIXTURES = Path(__file__).parent / "fixtures"
PAGE_URL = "http://localhost/roomcast-sdp"

# Each scenario is a JS function body: it receives a fresh ``pc`` and adds what the offer should carry.
SCENARIOS: dict[str, str] = {
    "audio_video": """
        const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
        for (const track of stream.getTracks()) pc.addTrack(track, stream);
    """,
    "audio_video_data": """
        const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
        for (const track of stream.getTracks()) pc.addTrack(track, stream);
        pc.createDataChannel("chat");
    """,
    "data": """
        pc.createDataChannel("chat", {ordered: true});
    """,
    "simulcast": """
        const stream = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}});
        pc.addTransceiver(stream.getVideoTracks()[0], {
            direction: "sendonly",
            streams: [stream],
            sendEncodings: [
                {rid: "q", scaleResolutionDownBy: 4.0},
                {rid: "h", scaleResolutionDownBy: 2.0},
                {rid: "f"},
            ],
        });
    """,
    "recvonly": """
        pc.addTransceiver("audio", {direction: "recvonly"});
        pc.addTransceiver("video", {direction: "recvonly"});
    """,
}

_MAKE_OFFER = """async (body) => {
    const pc = new RTCPeerConnection({iceServers: []});
    window.pcs = window.pcs || [];
    window.pcs.push(pc);
    await (new Function("pc", "return (async () => {" + body + "})();"))(pc);
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
        if (pc.iceGatheringState === "complete") return resolve();
        pc.addEventListener("icegatheringstatechange", () => {
            if (pc.iceGatheringState === "complete") resolve();
        });
        setTimeout(resolve, 3000);
    });
    return [window.pcs.length - 1, pc.localDescription.sdp];
}"""

_SET_ANSWER = """async ([index, sdp]) => {
    const pc = window.pcs[index];
    try {
        await pc.setRemoteDescription({type: "answer", sdp});
    } catch (e) {
        return "error: " + e.name + ": " + e.message;
    }
    return pc.signalingState + " " + pc.getTransceivers().map((t) => t.currentDirection).join(",");
}"""


async def open_page(browser: Browser) -> Page:
    """A page at a secure origin whose content comes from Playwright's router, not from a socket."""
    context = await browser.new_context(permissions=["camera", "microphone"])
    page = await context.new_page()

    async def serve(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>sdp</title>")

    await page.route(PAGE_URL, serve)
    await page.goto(PAGE_URL)
    return page


async def make_offer(page: Page, scenario: str) -> tuple[int, str]:
    """Run one scenario in ``page``; returns the peer connection's index and its local offer."""
    index, sdp = await page.evaluate(_MAKE_OFFER, SCENARIOS[scenario])
    return int(index), str(sdp)


async def set_answer(page: Page, index: int, sdp: str) -> str:
    """``setRemoteDescription(answer)`` on connection ``index``: its state, or ``"error: ..."``."""
    return str(await page.evaluate(_SET_ANSWER, [index, sdp]))


async def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
        page = await open_page(browser)
        user_agent = await page.evaluate("navigator.userAgent")
        for name in SCENARIOS:
            _, sdp = await make_offer(page, name)
            path = FIXTURES / f"sdp_{name}.sdp"
            path.write_bytes(sdp.encode())
            print(f"wrote {path} ({len(sdp.splitlines())} lines)")
        print(f"captured with {user_agent}")
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
