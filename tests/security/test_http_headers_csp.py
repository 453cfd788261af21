"""Issue 12 M7 (headers): CSP, frame-ancestors/X-Frame-Options, nosniff and Referrer-Policy on every HTTP
response; every page still works in real Chromium under its CSP, and script injected into a page does not run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.browser import csp_safe_waits
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser
OpenPage = Callable[[str], Awaitable[Page]]

# Every page, opened as a user would, and the condition that says its inline script did its job.
PAGES = [
    ("/call?room={room}&identity=alice", "window.callState && window.callState.joined"),
    ("/chat?room={room}&identity=bob", "window.room && window.room.state === 'connected'"),
    ("/echo?room={room}&identity=carol", "window.echoState && window.echoState.connected"),
    ("/stream?room={room}&role=host&identity=host", "window.streamState && window.streamState.joined"),
    ("/stream?room={room}&role=viewer", "window.streamState && window.streamState.joined"),
    ("/live?room={room}&role=host&identity=star", "window.liveState && window.liveState.joined"),
    ("/live?room={room}&identity=fan", "window.liveState && window.liveState.joined"),
    ("/classroom?room={room}&role=teacher&identity=teach", "window.classState && window.classState.joined"),
    ("/classroom?room={room}&identity=pupil", "window.classState && window.classState.joined"),
    ("/iot?room={room}&identity=operator", "window.iotState && window.iotState.joined"),
]
# Registered before any page script: counts what the CSP refused.
WATCH_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));
"""
INJECT = """() => {
  const div = document.createElement('div');
  div.innerHTML = '<img src="/nonexistent.png" onerror="window.pwned = 1">';
  document.body.append(div);
  const script = document.createElement('script');
  script.textContent = 'window.pwned = 2';
  document.body.append(script);
}"""


def test_security_headers_on_every_response(server: ServerProcess) -> None:
    paths = ["/", "/call", "/chat", "/echo", "/stream", "/live", "/classroom", "/iot"]
    other = ["/sdk/roomcast.js", "/sdk/index.js", "/sdk/room.js", "/static/style.css", "/static/page.js"]
    other += ["/healthz", "/metrics", "/api/rooms", "/nope"]
    for path in paths + other:
        res = httpx.get(server.base + path)
        assert res.headers.get("x-frame-options") == "DENY", path
        assert res.headers.get("x-content-type-options") == "nosniff", path
        assert res.headers.get("referrer-policy") == "no-referrer", path
        csp = res.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        if path in paths:
            assert "script-src 'self' 'sha256-" in csp, (path, csp)
        else:
            assert csp.startswith("default-src 'none'"), (path, csp)
    assert len(res.headers.get_list("content-security-policy")) == 1  # one policy, not an intersection of two


@pytest.fixture
async def csp_page(browser: Browser) -> AsyncIterator[OpenPage]:
    contexts = []

    async def open_page(url: str) -> Page:
        context = await browser.new_context(permissions=["camera", "microphone"])
        await context.add_init_script(WATCH_VIOLATIONS)
        contexts.append(context)
        page = csp_safe_waits(await context.new_page())  # the CSP stays on: that is what is tested
        await page.goto(url)
        return page

    yield open_page
    for context in contexts:
        await context.close()


PAGE_IDS = [p.split("?")[0] + "-" + str(i) for i, (p, _) in enumerate(PAGES)]


@pytest.mark.parametrize(("path", "ready"), PAGES, ids=PAGE_IDS)
async def test_every_page_works_under_its_csp_and_injected_script_does_not_run(
    server: ServerProcess, csp_page: OpenPage, path: str, ready: str
) -> None:
    page = await csp_page(server.base + path.format(room="csp-" + uuid.uuid4().hex[:6]))
    await page.wait_for_function(ready, timeout=20_000)
    assert await page.evaluate("window.cspViolations") == []
    await page.evaluate(INJECT)
    await page.wait_for_function("window.cspViolations.length >= 2", timeout=5_000)
    assert await page.evaluate("window.pwned") is None
    assert all(v.startswith("script-src") for v in await page.evaluate("window.cspViolations"))


async def test_lobby_form_works_under_its_csp(server: ServerProcess, csp_page: OpenPage) -> None:
    page = await csp_page(server.base + "/")
    name = "lobby-csp-" + uuid.uuid4().hex[:6]
    await page.fill("#room", name)
    await page.fill("#identity", "newcomer")
    await page.click("#join")  # handled by the page's inline script: a refused script would submit the form as GET /
    await page.wait_for_url(f"**/call?room={name}&identity=newcomer")
    await page.wait_for_function("window.callState && window.callState.joined", timeout=20_000)
    assert await page.evaluate("window.cspViolations") == []


async def test_pages_cannot_be_framed_by_another_site(server: ServerProcess, csp_page: OpenPage) -> None:
    target = f"{server.base}/call?room=framed-{uuid.uuid4().hex[:6]}&identity=victim"
    html = f'<!doctype html><iframe id="f" src="{target}"></iframe>'.encode()

    async def attacker_site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n%s" % (len(html), html))
        await writer.drain()
        writer.close()

    # another origin on loopback (a public one would be stopped by Private Network Access, not by our headers)
    site = await asyncio.start_server(attacker_site, "127.0.0.1", 0)
    port = site.sockets[0].getsockname()[1]
    try:
        page = await csp_page(f"http://127.0.0.1:{port}/")  # returns after the load event, which waits for the frame
        frame = page.frames[1]
        assert frame.url != target  # Chromium replaced the refused document with its error page
        assert await frame.evaluate("typeof window.callState") == "undefined"  # the call page never ran in it
    finally:
        site.close()
