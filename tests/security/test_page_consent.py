"""Issue 12 M7 and M6, the pages' part, with real Chromium: a page framed by another site, or opened with a
token from its URL, starts no camera, microphone or peer connection before the user clicks; tokens ride in
the URL fragment, which no HTTP request carries."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.async_api import Frame, Page, Route

from tests.signaling.wsclient import DEV_KEY, DEV_SECRET, dev_token
from tests.support.browser import csp_safe_waits
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

# Runs before the page's scripts, in every frame: counts camera/microphone requests and peer connections.
PROBE = """(() => {
  window.__probe = {gum: 0, pcs: 0};
  const devices = navigator.mediaDevices;
  if (devices) {
    const getUserMedia = devices.getUserMedia.bind(devices);
    devices.getUserMedia = (constraints) => { window.__probe.gum++; return getUserMedia(constraints); };
  }
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__probe.pcs++; }
  };
})();"""

# The page reached its decision: it shows the button, or it already went for the camera.
DECIDED = "document.querySelector('#start-media') || window.__probe.gum > 0 || window.__probe.pcs > 0"


def participants(server: ServerProcess, room: str) -> list[str] | None:
    """Who is in ``room`` (``None``: the room does not exist, i.e. nobody ever joined it)."""
    res = httpx.get(f"{server.base}/api/rooms/{room}/participants", auth=(DEV_KEY, DEV_SECRET))
    if res.status_code == 404:
        return None
    assert res.status_code == 200, res.text
    return [p["identity"] for p in res.json()["participants"]]


async def probed_page(new_page: NewPage, url: str, requests: list[str] | None = None) -> Page:
    page = await new_page("about:blank")
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    await page.add_init_script(PROBE)
    await page.goto(url)
    return page


async def until_clicked_then_published(target: Page | Frame, room: str) -> None:
    """The camera waits for the click on a button that names the room; after the click the call starts."""
    await target.wait_for_function(DECIDED, timeout=20_000)
    assert await target.evaluate("window.__probe") == {"gum": 0, "pcs": 0}
    assert room in await target.inner_text("#consent")
    await target.click("#start-media")
    await target.wait_for_function("window.callState && window.callState.joined", timeout=20_000)
    probe = await target.evaluate("window.__probe")
    assert probe["gum"] == 1 and probe["pcs"] >= 1, probe


@pytest.mark.parametrize("where", ["fragment", "query"])
async def test_a_token_from_the_url_starts_the_camera_only_after_a_click(
    server: ServerProcess, new_page: NewPage, where: str
) -> None:
    room = "m7-" + uuid.uuid4().hex[:8]
    token = dev_token(room, "guest")
    url = f"{server.base}/call#token={token}" if where == "fragment" else f"{server.base}/call?token={token}"
    requests: list[str] = []
    page = await probed_page(new_page, url, requests)
    await page.wait_for_function(DECIDED, timeout=20_000)
    assert participants(server, room) is None  # not even joined before the click
    # M6: the token lives in the fragment from now on (a reload or a copied link does not send it)
    assert await page.evaluate("[location.search, new URLSearchParams(location.hash.slice(1)).get('token')]") == [
        "",
        token,
    ]
    await until_clicked_then_published(page, room)
    assert participants(server, room) == ["guest"]
    carried = [u for u in requests if token in u]  # HTTP requests only (the signaling WebSocket is not one)
    assert carried == ([] if where == "fragment" else [url]), carried


HOSTILE = """<!doctype html><title>a hostile site</title>
<p>Win a prize!</p>
<iframe id="victim" allow="camera; microphone; local-network-access" width="900" height="600" src="{src}"></iframe>"""


@pytest.fixture
def hostile_site() -> Iterator[tuple[str, list[str]]]:
    """Another origin on loopback (its own port) that frames whatever it is told to: (base URL, [src])."""
    src: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = HOSTILE.format(src=src[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", src
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


async def without_frame_blocking(route: Route) -> None:
    """Drop frame-ancestors / X-Frame-Options (M7's headers would refuse the frame outright): this test is
    about the page's own defence, the one left when a proxy drops headers or a browser ignores them."""
    response = await route.fetch()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "x-frame-options"}
    for name in [k for k in headers if k.lower() == "content-security-policy"]:
        kept = [d for d in headers[name].split(";") if not d.strip().lower().startswith("frame-ancestors")]
        headers[name] = ";".join(kept)
    await route.fulfill(response=response, headers=headers)


async def test_a_framed_call_starts_the_camera_only_after_a_click(
    server: ServerProcess, new_page: NewPage, hostile_site: tuple[str, list[str]]
) -> None:
    """The dev-token flow (no token in the URL) inside another site's frame still waits for the click."""
    base, src = hostile_site
    room = "m7f-" + uuid.uuid4().hex[:8]
    src.append(f"{server.base}/call?room={room}&identity=framed")
    page = await new_page("about:blank")
    # Chromium's Local Network Access checks would refuse the framed page's WebSocket on loopback (a public
    # site framing a public server meets no such check): the hostile site gets that permission here.
    await page.context.grant_permissions(["local-network-access"])
    await page.add_init_script(PROBE)
    await page.route(re.compile(re.escape(server.base) + r"/call\b.*"), without_frame_blocking)
    await page.goto(base)
    frame = await (await page.wait_for_selector("#victim")).content_frame()
    assert frame is not None
    frame = csp_safe_waits(frame)  # type: ignore[arg-type]  # the framed page runs under its CSP too
    await frame.wait_for_url(re.compile(r".*/call\?.*"))
    await frame.wait_for_function(DECIDED, timeout=20_000)
    assert await frame.evaluate("window.top !== window.self") is True
    assert participants(server, room) is None
    await until_clicked_then_published(frame, room)
    assert participants(server, room) == ["framed"]
