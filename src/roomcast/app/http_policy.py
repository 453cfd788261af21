"""HTTP response policy: security headers on every response, a per-page CSP, and the ``Host`` check.

The pages carry inline ``<script>``/``<style>`` blocks. Rather than allowing ``'unsafe-inline'`` (which would
also let any injected markup run), each page's CSP lists the SHA-256 of exactly the inline blocks the file
contains, computed when the file is served: a script injected into the DOM later (an ``onerror=``
attribute, a ``<script>`` built from a participant's name) matches no hash and is refused, and pages can be
edited without anyone maintaining a list of hashes by hand.

The ``Host`` check defeats DNS rebinding: a hostile page whose name resolves to 127.0.0.1 reaches a dev
server on loopback with *its own* name in ``Host``. In dev mode only IP literals and ``localhost`` names are
served (an IP literal cannot be rebound: a page at that origin is this server); otherwise the configured
``allowed_hosts``, and any host when none is configured (a public server usually sits behind a proxy that
already checks it).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
# Anything that is not a page (JSON, JS, CSS, errors) needs no capability at all.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_INLINE = re.compile(r"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.S | re.I)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_csp_for(html: str) -> str:
    """The CSP of one page: same-origin files, plus the hashes of the page's own inline blocks."""
    scripts, styles = [], []
    for kind, attrs, body in _INLINE.findall(html):
        if kind.lower() == "script" and "src=" not in (attrs or "").lower():
            scripts.append(_sha256(body))
        elif kind.lower() == "style":
            styles.append(_sha256(body))
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *scripts]),
            " ".join(["style-src 'self'", *styles]),
            "connect-src 'self'",  # CSP 3: 'self' includes ws:/wss: to this host and port
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@lru_cache(maxsize=64)
def _cached_csp(path: str, mtime_ns: int, size: int) -> str:
    return page_csp_for(Path(path).read_text())


def page_csp(path: Path) -> str:
    """The CSP of a page file (recomputed when the file changes)."""
    stat = path.stat()
    return _cached_csp(str(path), stat.st_mtime_ns, stat.st_size)


class ScriptFiles(StaticFiles):
    """The JS SDK's ES modules (``/sdk/*.js``) and the pages' files (``/static/``; ``page.js`` is a module):
    a JavaScript type whatever the host's ``mimetypes`` says (with ``nosniff``, a browser refuses a module
    served as anything else) and ``no-cache``, so after an upgrade a browser never mixes cached modules of the
    old version with new ones."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith(".js"):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        response.headers["cache-control"] = "no-cache"
        return response


def split_host(header: str) -> str:
    """``example.com:7880`` → ``example.com``; ``[::1]:7880`` → ``::1``; lower case, no trailing dot."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostCheck:
    """Which ``Host`` values are served. Patterns: ``name``, ``*.suffix``, ``*`` (any)."""

    def __init__(self, allowed: Iterable[str], *, dev_mode: bool) -> None:
        patterns = [p.strip().lower().rstrip(".") for p in allowed if p.strip()]
        self.any = "*" in patterns or (not patterns and not dev_mode)
        self.dev_mode = dev_mode
        self.names = {split_host(p) for p in patterns if not p.startswith("*")}
        self.suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))

    @classmethod
    def from_setting(cls, setting: str, *, dev_mode: bool) -> HostCheck:
        return cls(setting.split(","), dev_mode=dev_mode)

    def allows(self, header: str) -> bool:
        if self.any:
            return True
        host = split_host(header)
        if not host:
            return False
        if self.dev_mode and (_is_ip(host) or host == "localhost" or host.endswith(".localhost")):
            return True
        return host in self.names or host.endswith(self.suffixes)


class HttpPolicy:
    """ASGI middleware: refuse unknown ``Host`` values, add the security headers to every response."""

    def __init__(self, app: ASGIApp, hosts: HostCheck) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if not self.hosts.allows(host):
            await self._refuse(scope, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid_host"})  # → HTTP 403
            return
        body = b'{"error":{"code":"invalid_host","message":"this server does not serve that Host name"}}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"content-security-policy", DEFAULT_CSP.encode()),
            *SECURITY_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
