"""Capture real packets from Chromium once, for the wire fixtures (not a test module).

    unshare -n sh -c 'ip link set lo up && python -m tests.wire.capture_chromium'

Runs the server in-process, opens the echo page in headless Chromium, and records what the browser
sends: STUN checks (with the ICE password that verifies them), decrypted RTP (audio and video) and
RTCP, and its SDP offer. Writes ``tests/wire/fixtures/chromium.json``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import async_playwright

from roomcast.app.asgi import create_app
from roomcast.app.config import load
from roomcast.proto.ice_lite import IceLiteAgent
from roomcast.sfu.echo import EchoSession
from tests.support.browser import CHROMIUM, chromium_args, csp_safe_waits
from tests.support.server import free_port

OUT = Path(__file__).parent / "fixtures" / "chromium.json"


async def main() -> None:
    captured: dict[str, Any] = {"stun": [], "rtp": [], "rtcp": [], "offer": None, "answer": None, "ice_pwd": None}
    original_stun = IceLiteAgent.handle_stun
    original_rtp, original_rtcp = EchoSession.on_rtp, EchoSession.on_rtcp
    per_pt: dict[int, int] = {}

    def stun(self: IceLiteAgent, data: bytes, remote: Any, now: float) -> None:
        if len(captured["stun"]) < 6:
            captured["stun"].append(data.hex())
            captured["ice_pwd"] = self.local_pwd
        original_stun(self, data, remote, now)

    def rtp(self: EchoSession, pkt: bytes) -> None:
        pt = pkt[1] & 0x7F
        if per_pt.get(pt, 0) < 15:  # a few packets of every payload type the browser uses
            per_pt[pt] = per_pt.get(pt, 0) + 1
            captured["rtp"].append(pkt.hex())
        original_rtp(self, pkt)

    def rtcp(self: EchoSession, pkt: bytes) -> None:
        if len(captured["rtcp"]) < 20:
            captured["rtcp"].append(pkt.hex())
        original_rtcp(self, pkt)

    IceLiteAgent.handle_stun = stun  # type: ignore[method-assign]
    EchoSession.on_rtp = rtp  # type: ignore[method-assign]
    EchoSession.on_rtcp = rtcp  # type: ignore[method-assign]

    port = free_port()
    config = load({"port": port, "media_port": 0})
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
        page = csp_safe_waits(await (await browser.new_context(permissions=["camera", "microphone"])).new_page())
        await page.goto(f"http://127.0.0.1:{port}/echo?room=capture&identity=capture")
        await page.wait_for_function("window.echoState && window.echoState.connected")
        deadline = time.monotonic() + 15
        while (len(captured["rtp"]) < 30 or len(captured["rtcp"]) < 20) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        captured["offer"] = await page.evaluate("window.echoPeer.pc.localDescription.sdp")
        captured["answer"] = await page.evaluate("window.echoPeer.pc.remoteDescription.sdp")
        captured["user_agent"] = await page.evaluate("navigator.userAgent")
        await browser.close()
    server.should_exit = True
    await task
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(captured, indent=1) + "\n")
    print(f"wrote {OUT}: {len(captured['stun'])} STUN, {len(captured['rtp'])} RTP, {len(captured['rtcp'])} RTCP")


if __name__ == "__main__":
    asyncio.run(main())
