"""Capture Chromium's transport-cc feedback once, for the wire fixtures (not a test module).

    unshare -n sh -c 'ip link set lo up && python -m tests.wire.capture_twcc'

Like capture_chromium.py, but the echo answer negotiates transport-cc (CodecPolicy(transport_cc=True)):
the echoed packets carry the browser's own transport-wide sequence numbers back to it, so the
browser's receive side reports their arrival in transport-cc feedback. Records, in arrival order,
the transport-wide sequence number and size of every RTP packet echoed back (what the browser
received) and every transport-cc packet the browser sent, with the server's receive time of each.
Writes ``tests/wire/fixtures/chromium_twcc.json``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import async_playwright

import roomcast.rtc.service as service
from roomcast.app.asgi import create_app
from roomcast.app.config import load
from roomcast.proto.codecs import TWCC_URI, CodecPolicy
from roomcast.sfu.echo import EchoSession
from roomcast.wire.rtcp import TransportCC, parse_compound
from roomcast.wire.sdp import SessionDescription
from roomcast.wire.twcc import read_transport_seq
from tests.support.browser import CHROMIUM, chromium_args, csp_safe_waits
from tests.support.server import free_port

OUT = Path(__file__).parent / "fixtures" / "chromium_twcc.json"


async def main() -> None:
    captured: dict[str, Any] = {"packets": [], "feedback": [], "answer": None, "user_agent": None}
    start = time.monotonic()
    ext_ids: dict[int, int] = {}  # id(EchoSession) -> TWCC extension id of its answer
    patched = vars(service)  # the service module's globals: its answers now offer transport-cc
    original_answer, original_rtp, original_rtcp = patched["create_answer"], EchoSession.on_rtp, EchoSession.on_rtcp
    patched["AnswerParams"] = functools.partial(patched["AnswerParams"], codecs=CodecPolicy(transport_cc=True))

    def answer(offer: SessionDescription, params: Any) -> Any:
        negotiated = original_answer(offer, params)
        captured["answer"] = negotiated.answer.serialize()
        return negotiated

    def rtp(self: EchoSession, pkt: bytes) -> None:
        if id(self) not in ext_ids:
            ext_ids[id(self)] = next(
                (i for m in self._by_mid.values() for u, i in m.media.extensions.items() if u == TWCC_URI), 0
            )
        seq = read_transport_seq(pkt, ext_ids[id(self)])
        if seq >= 0 and len(captured["packets"]) < 3000:
            captured["packets"].append([round(time.monotonic() - start, 6), seq, len(pkt)])
        original_rtp(self, pkt)

    def rtcp(self: EchoSession, data: bytes) -> None:
        if any(isinstance(p, TransportCC) for p in parse_compound(data)) and len(captured["feedback"]) < 200:
            captured["feedback"].append([round(time.monotonic() - start, 6), data.hex()])
        original_rtcp(self, data)

    patched["create_answer"] = answer
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
        deadline = time.monotonic() + 20
        while len(captured["feedback"]) < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        captured["user_agent"] = await page.evaluate("navigator.userAgent")
        await browser.close()
    server.should_exit = True
    await task
    # the packets the feedback can be about: those sent before the last feedback arrived
    last = captured["feedback"][-1][0] if captured["feedback"] else 0
    captured["packets"] = [p for p in captured["packets"] if p[0] <= last]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(captured, indent=1) + "\n")
    print(f"wrote {OUT}: {len(captured['packets'])} packets, {len(captured['feedback'])} transport-cc feedbacks")


if __name__ == "__main__":
    asyncio.run(main())
