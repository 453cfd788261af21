"""The JS SDK as ES modules (web/sdk/, no build step): every module is served as JavaScript (a browser
refuses a module of any other type under ``nosniff``), every import resolves to a served file, and the
classic ``<script src="/sdk/roomcast.js">`` users were told to write keeps working (a classic script
cannot hold ``import``: loading a module file that way is a SyntaxError, shown here too)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from roomcast.app.asgi import WEB_DIR
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

SDK = WEB_DIR / "sdk"
IMPORT = re.compile(r"^(?:import|export) [^;]*? from '([^']+)';", re.M)


def _imports(path: Path) -> list[str]:
    """Same-origin URL paths ``path`` imports, resolved against the URL path it is served at."""
    base = "/sdk/" if path.parent == SDK else "/static/"
    return [
        spec if spec.startswith("/") else base + spec.removeprefix("./") for spec in IMPORT.findall(path.read_text())
    ]


def test_every_module_and_every_import_is_served_as_javascript(server: ServerProcess) -> None:
    modules = sorted(SDK.glob("*.js"))
    assert len(modules) >= 10, modules
    urls = {"/sdk/" + p.name for p in modules}
    imported = {url for p in [*modules, WEB_DIR / "page.js"] for url in _imports(p)}
    assert imported - {"/sdk/index.js"} <= urls and len(imported) >= 10, sorted(imported)
    assert urls - imported == set(), "modules nothing imports"
    for url in sorted(urls | imported | {"/sdk/roomcast.js", "/static/page.js"}):
        res = httpx.get(server.base + url)
        assert res.status_code == 200, url
        assert res.headers["content-type"].startswith("text/javascript"), (url, res.headers["content-type"])
        assert res.headers["x-content-type-options"] == "nosniff", url
        assert res.headers["cache-control"] == "no-cache", url  # never old modules mixed with new ones
    assert httpx.get(server.base + "/sdk/nope.js").status_code == 404
    assert httpx.get(server.base + "/sdk/../asgi.py").status_code == 404


def test_no_module_is_over_500_lines_and_the_shim_has_no_import_statement() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in SDK.glob("*.js")}
    assert max(sizes.values()) <= 500, sizes
    shim = (WEB_DIR / "roomcast.js").read_text()
    assert not re.search(r"^\s*(import|export)\b", shim, re.M)


CLASSIC = """async ({room}) => {
  const early = typeof Roomcast.connect;   // right after the classic script ran: no waiting yet
  const r = await Roomcast.connect(location.origin, await Roomcast.devToken(room, 'classic'), {iceServers: []});
  await Roomcast.ready;
  const mod = await import('/sdk/index.js');
  const out = {early, identity: r.identity, version: Roomcast.PROTOCOL_VERSION,
    same: mod.RoomcastError === Roomcast.RoomcastError && mod.connect === Roomcast.connect,
    peer: typeof Roomcast.ServerPeer};
  try { await Roomcast.devToken('', ''); } catch (e) { out.error = e instanceof Roomcast.RoomcastError && e.code; }
  r.leave();
  return out;
}"""


@pytest.mark.browser
async def test_a_classic_script_tag_keeps_working(server: ServerProcess, new_page: NewPage) -> None:
    page = await new_page(server.base + "/")
    await page.add_script_tag(url="/sdk/roomcast.js")
    got = await page.evaluate(CLASSIC, {"room": "classic-" + uuid.uuid4().hex[:6]})
    assert got == {
        "early": "function",
        "identity": "classic",
        "version": 1,
        "same": True,
        "peer": "function",
        "error": "invalid_room",
    }, got


@pytest.mark.browser
async def test_a_module_file_in_a_classic_script_tag_is_a_syntax_error(
    server: ServerProcess, new_page: NewPage
) -> None:
    page = await new_page(server.base + "/")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.add_script_tag(url="/sdk/index.js")
    await page.wait_for_function("true")  # a round trip: the error event has reached us
    assert any("import" in e for e in errors), errors
    assert await page.evaluate("typeof window.Roomcast") == "undefined"
