"""A page running livekit-client (npm, from tests/support/livekit_js/node_modules; no CDN), served by the test
itself from a small loopback HTTP server: a LiveKit app on its own origin, talking to Roomcast on another,
as LiveKit apps do. (A page answered by Playwright's request interception has no address, so Chromium's
local network access checks would refuse its WebSocket to loopback.)"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

from livekit import api
from playwright.async_api import Page

from tests.signaling.wsclient import DEV_KEY, DEV_SECRET
from tests.support.browser_fixtures import NewPage
from tests.support.server import free_port

LIVEKIT_JS = Path(__file__).parent / "livekit_js"
UMD = LIVEKIT_JS / "node_modules" / "livekit-client" / "dist" / "livekit-client.umd.js"
FILES = {"page.html": LIVEKIT_JS / "page.html", "page.js": LIVEKIT_JS / "page.js", "livekit-client.umd.js": UMD}


def livekit_token(room: str, identity: str, *, ttl: float = 600, secret: str = DEV_SECRET, **grants: bool) -> str:
    """A token from livekit-api's own AccessToken, signed with the dev server's key and secret."""
    video = api.VideoGrants(room_join=True, room=room, **grants)
    token = api.AccessToken(DEV_KEY, secret).with_identity(identity).with_name(identity.title()).with_grants(video)
    return token.with_ttl(datetime.timedelta(seconds=ttl)).to_jwt()


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = FILES.get(self.path.split("?")[0].rsplit("/", 1)[-1])
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if path.suffix == ".html" else "text/javascript")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """Serve the page and livekit-client on a free loopback port; yields its base URL."""
    if not UMD.exists():
        raise RuntimeError(f"{UMD} missing: run `npm ci` in {LIVEKIT_JS} (scripts/test does)")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def open_livekit_page(new_page: NewPage, pages: str) -> Page:
    page = await new_page(f"{pages}/page.html")
    await page.wait_for_function("typeof window.lkJoin === 'function' && typeof LivekitClient === 'object'")
    return page
