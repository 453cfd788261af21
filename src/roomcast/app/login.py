"""The login in front of the built-in pages (see :mod:`roomcast.app.identity`): routes, cookie, gate.

``GET /login`` (the page), ``GET /login/methods``, ``POST /login`` (JSON ``{username, password}``; failed
attempts limited per address like ``/admin``'s), ``POST /logout``, ``GET /login/oidc`` → the provider →
``GET /login/oidc/callback``, and ``GET /api/session-token?room=R`` (a room token for the logged-in user;
the header ``X-Roomcast-Page: 1`` is required, which no cross-site page can send without a preflight).
The session cookie is ``HttpOnly; SameSite=Lax`` (links to a call from elsewhere keep working), its value
a random id; the state of an OIDC login waits server-side, its id in a cookie scoped to ``/login/oidc``.
"""

from __future__ import annotations

import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from roomcast.app.admin_api import error
from roomcast.app.config import Config
from roomcast.app.dashboard import LoginLimiter
from roomcast.app.http_policy import page_csp
from roomcast.app.identity import (
    SESSION_TTL,
    OidcClient,
    OidcLogin,
    PageSession,
    PasswordUsers,
    Sessions,
    load_rules,
    load_users,
    safe_next,
)
from roomcast.rooms.tokens import Grants, mint, validate_identity, validate_room

log = logging.getLogger("roomcast.app")
WEB_DIR = Path(str(resources.files("roomcast") / "web"))
COOKIE = "roomcast_session"
STATE_COOKIE = "roomcast_oidc"
TOKEN_TTL = 6 * 3600.0


class PasswordLogin(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str
    next: str = "/"


class PageLogin:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.passwords = PasswordUsers(load_users(config.users_file)) if config.users_file else None
        self.oidc = (
            OidcClient(config.oidc_issuer, config.oidc_client_id, config.oidc_client_secret, config.oidc_roles_claim)
            if config.oidc_issuer
            else None
        )
        self.rules = load_rules(config.users_file, config.roles_file)
        self.sessions = Sessions(clock)
        self.limiter = LoginLimiter()

    @property
    def enabled(self) -> bool:
        return self.passwords is not None or self.oidc is not None

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.page, methods=["GET"]),
            Route("/login", self.password_login, methods=["POST"]),
            Route("/login/methods", self.methods, methods=["GET"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/login/oidc", self.oidc_start, methods=["GET"]),
            Route("/login/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/api/session-token", self.session_token, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ the gate

    def session(self, request: Request) -> PageSession | None:
        return self.sessions.get(request.cookies.get(COOKIE, "")) if self.enabled else None

    def gate(self, request: Request) -> Response | None:
        """None when the page may be served; else the redirect to the login."""
        if not self.enabled or self.session(request) is not None:
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), status_code=303)

    def _logged_in(self, response: Response, request: Request, identity: str, roles: tuple[str, ...]) -> Response:
        sid = self.sessions.open(identity, roles)
        response.set_cookie(
            COOKIE,
            sid,
            max_age=int(SESSION_TTL),
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        log.info("%s logged in", identity, extra={"participant": identity})
        return response

    # ------------------------------------------------------------------ endpoints

    async def page(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": page_csp(WEB_DIR / "login.html")}
        return FileResponse(WEB_DIR / "login.html", headers=headers)

    async def methods(self, request: Request) -> Response:
        session = self.session(request)
        return JSONResponse(
            {
                "password": self.passwords is not None,
                "oidc": self.oidc is not None,
                "identity": session.identity if session is not None else None,
            }
        )

    async def password_login(self, request: Request) -> Response:
        if self.passwords is None:
            return error(404, "login_off", "password login is not configured (--users)")
        client = request.client.host if request.client else "?"
        now = self.clock()
        wait = self.limiter.retry_after(client, now)
        if wait > 0:
            response = error(429, "rate_limited", f"too many failed logins: try again in {wait:.0f} s")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            return error(415, "unsupported_media_type", "send JSON (Content-Type: application/json)")
        try:
            body = msgspec.json.decode(await request.body(), type=PasswordLogin)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return error(400, "invalid_request", f"invalid request body: {exc}")
        roles = self.passwords.verify(body.username, body.password)
        if roles is None:
            self.limiter.failed(client, now)
            return error(401, "invalid_credentials", "unknown user or wrong password")
        return self._logged_in(JSONResponse({"next": safe_next(body.next)}), request, body.username, roles)

    async def logout(self, request: Request) -> Response:
        self.sessions.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return error(404, "login_off", "OpenID Connect is not configured (--oidc-issuer)")
        redirect_uri = f"{request.base_url}login/oidc/callback"
        login = OidcLogin(
            nonce=secrets.token_urlsafe(16),
            verifier=secrets.token_urlsafe(48),
            next=safe_next(request.query_params.get("next")),
            redirect_uri=redirect_uri,
            expires=0.0,
        )
        state = self.sessions.wait(login)
        try:
            url = await self.oidc.authorization_url(state, login)
        except Exception as exc:  # the provider is down or misconfigured: say so, keep serving
            log.warning("OpenID provider unusable: %s", exc)
            return error(502, "connection_failed", f"the OpenID provider cannot be reached: {exc}")
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            STATE_COOKIE, state, max_age=600, path="/login/oidc", httponly=True, samesite="lax",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return error(404, "login_off", "OpenID Connect is not configured (--oidc-issuer)")
        state = request.query_params.get("state", "")
        if not state or not secrets.compare_digest(state, request.cookies.get(STATE_COOKIE, "")):
            return error(400, "invalid_request", "this login did not start in this browser (state mismatch)")
        login = self.sessions.came_back(state)
        if login is None:
            return error(400, "invalid_request", "this login expired or was used already: log in again")
        if "error" in request.query_params:
            return error(401, "invalid_credentials", f"the provider refused: {request.query_params['error']}")
        try:
            identity, roles = await self.oidc.exchange(request.query_params.get("code", ""), login, self.clock)
            validate_identity(identity)
        except ValueError as exc:
            log.warning("OpenID login refused: %s", exc)
            return error(401, "invalid_credentials", str(exc))
        response = self._logged_in(RedirectResponse(login.next, status_code=303), request, identity, roles)
        response.delete_cookie(STATE_COOKIE, path="/login/oidc")
        return response

    async def session_token(self, request: Request) -> Response:
        if not self.enabled:
            return error(404, "login_off", "no login is configured: pages use /api/dev-token")
        session = self.session(request)
        if session is None:
            return error(401, "login_required", "log in at /login first")
        if request.headers.get("x-roomcast-page") != "1":
            return error(403, "permission_denied", "send X-Roomcast-Page: 1")
        q = request.query_params
        room = q.get("room", "")
        try:
            validate_room(room)
        except ValueError as exc:
            return error(400, "invalid_room", str(exc))
        allowed = self.rules.grants(session.roles)
        grants = Grants(
            room=room,
            can_publish=allowed.can_publish and q.get("can_publish", "true").lower() not in ("0", "false", "no"),
            can_subscribe=allowed.can_subscribe,
            can_publish_data=allowed.can_publish_data,
            room_admin=allowed.room_admin and q.get("room_admin", "false").lower() in ("1", "true", "yes"),
            hidden=allowed.hidden and q.get("hidden", "false").lower() in ("1", "true", "yes"),
        )
        token = mint(
            self.config.api_key,
            self.config.api_secret,
            identity=session.identity,
            grants=grants,
            now=self.clock(),
            ttl=TOKEN_TTL,
        )
        return JSONResponse({"token": token, "identity": session.identity, "roles": list(session.roles)})
