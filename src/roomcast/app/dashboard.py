"""The admin dashboard, ``/admin``: rooms, participants and tracks, live charts, moderation.

Login with the API key and secret (``POST /admin/login``, JSON) gives a server-side session: a random id in
an ``HttpOnly; SameSite=Strict`` cookie scoped to ``/admin``, nothing secret in it. Every action is a JSON
``POST`` carrying the session's CSRF token in ``X-CSRF-Token`` (a cross-site form can send neither a JSON
body without a preflight nor that header), and a request whose ``Origin`` is another site is refused.
Failed logins are limited per client address: after ``LOGIN_FAILURES`` within ``LOGIN_WINDOW`` seconds,
every login from there gets ``429`` until the window has passed, the right secret included, so guessing
is slow. ``GET /admin`` without a session answers ``401`` with the login page.

The page (``web/admin.html``, ``web/admin.js``) polls ``GET /admin/api/overview`` every second: the rooms
with their participants and tracks, per-room media figures from the SFU's stats (bitrate, packets
forwarded, subscriber loss, RTT) and per-node load (participants, forwarded packets/s, event-loop lag).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from roomcast.app.admin_api import AdminApi, MintToken, error, room_json
from roomcast.app.config import Config
from roomcast.app.http_policy import page_csp
from roomcast.rooms.manager import RoomError, RoomManager
from roomcast.routing.api import Routing, RoutingError

WEB_DIR = Path(str(resources.files("roomcast") / "web"))
COOKIE = "roomcast_admin"
SESSION_TTL = 8 * 3600.0
MAX_SESSIONS = 256
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0
MAX_BODY = 8 * 1024


class Login(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    secret: str


class Action(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["remove", "mute", "unmute", "end_room", "mint_token"]
    room: str
    identity: str = ""
    ttl: str = "1h"
    can_publish: bool = True
    room_admin: bool = False


@dataclass
class AdminSession:
    csrf: str
    expires: float


@dataclass
class LoginLimiter:
    """Failed logins per client address in a sliding window; bounded state."""

    failures: int = LOGIN_FAILURES
    window: float = LOGIN_WINDOW
    _seen: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        recent = [t for t in self._seen.get(client, ()) if now - t < self.window]
        if recent:
            self._seen[client] = recent
        else:
            self._seen.pop(client, None)
        return self.window - (now - recent[0]) if len(recent) >= self.failures else 0.0

    def failed(self, client: str, now: float) -> None:
        if len(self._seen) > 10_000:
            self._seen = {c: ts for c, ts in self._seen.items() if ts and now - ts[-1] < self.window}
        self._seen.setdefault(client, []).append(now)


class Dashboard:
    def __init__(
        self,
        config: Config,
        manager: RoomManager,
        admin: AdminApi,
        routing: Routing,
        loop_lag: Callable[[], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.manager = manager
        self.admin = admin
        self.routing = routing
        self.loop_lag = loop_lag
        self.clock = clock
        self.media: Any = None  # rtc.service.MediaService once the lifespan started it
        self.sessions: dict[str, AdminSession] = {}
        self.limiter = LoginLimiter()

    def routes(self) -> list[Route]:
        return [
            Route("/admin", self.page, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            Route("/admin/api/overview", self.overview, methods=["GET"]),
            Route("/admin/api/action", self.action, methods=["POST"]),
        ]

    # ------------------------------------------------------------------ sessions

    def _session(self, request: Request) -> AdminSession | None:
        sid = request.cookies.get(COOKIE, "")
        session = self.sessions.get(sid)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self.sessions[sid]
            return None
        return session

    def _checked(self, request: Request) -> AdminSession | Response:
        """A state-changing request: a session, its CSRF token, and no foreign Origin."""
        session = self._session(request)
        if session is None:
            return error(401, "missing_credentials", "log in at /admin first")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return error(403, "permission_denied", "cross-site request refused")
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), session.csrf):
            return error(403, "permission_denied", "missing or wrong X-CSRF-Token")
        return session

    async def _json(self, request: Request, kind: type[Any]) -> Any:
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            raise RoomError("unsupported_media_type", "send JSON (Content-Type: application/json)")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise RoomError("body_too_large", f"request body over {MAX_BODY} bytes")
        try:
            return msgspec.json.decode(body, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise RoomError("invalid_request", f"invalid request body: {exc}") from None

    # ------------------------------------------------------------------ endpoints

    async def page(self, request: Request) -> Response:
        status = 200 if self._session(request) is not None else 401
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": page_csp(WEB_DIR / "admin.html")}
        return FileResponse(WEB_DIR / "admin.html", status_code=status, headers=headers)

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        now = self.clock()
        wait = self.limiter.retry_after(client, now)
        if wait > 0:
            response = error(429, "rate_limited", f"too many failed logins: try again in {wait:.0f} s")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        try:
            body: Login = await self._json(request, Login)
        except RoomError as exc:
            return error(400, exc.code, exc.message)
        expected = self.config.keys.get(body.key)
        if expected is None or not hmac.compare_digest(expected.encode(), body.secret.encode()):
            self.limiter.failed(client, now)
            return error(401, "invalid_credentials", "unknown API key or wrong secret")
        if len(self.sessions) >= MAX_SESSIONS:
            for sid in sorted(self.sessions, key=lambda s: self.sessions[s].expires)[: len(self.sessions) // 4]:
                del self.sessions[sid]  # the oldest quarter goes
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self.sessions[sid] = AdminSession(csrf, now + SESSION_TTL)
        response = JSONResponse({"csrf": csrf})
        response.set_cookie(
            COOKIE,
            sid,
            max_age=int(SESSION_TTL),
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        checked = self._checked(request)
        if isinstance(checked, Response):
            return checked
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    async def overview(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return error(401, "missing_credentials", "log in at /admin first")
        rooms = [self._room(name) for name in sorted(self.manager.rooms)]
        try:
            nodes = [
                {
                    "node_id": n.node_id,
                    "participants": n.load.participants,
                    "rooms": n.load.rooms,
                    "forwarded_pps": round(n.load.forwarded_pps, 1),
                    "loop_lag_ms": round(n.load.loop_lag * 1000, 2),
                    "draining": n.draining,
                }
                for n in await self.routing.nodes()
            ]
        except RoutingError:
            nodes = []
        counters = self.media.counters() if self.media is not None else {}
        server = {
            "node_id": self.routing.node_id,
            "loop_lag_ms": round(self.loop_lag() * 1000, 2),
            "forwarded_packets": sum(counters.get(k, 0) for k in ("forwarded", "retransmitted", "rtp_echoed")),
            "forwarded_bytes": counters.get("forwarded_bytes", 0),
            "transports": self.media.transports() if self.media is not None else 0,
        }
        return JSONResponse(
            {"time": self.clock(), "csrf": session.csrf, "server": server, "nodes": nodes, "rooms": rooms}
        )

    def _room(self, name: str) -> dict[str, Any]:
        room = self.manager.rooms[name]
        stats = (self.media.room_stats(name) if self.media is not None else None) or {}
        tracks: list[dict[str, Any]] = list(stats.get("tracks", []))
        people = []
        for p in room.participants.values():
            people.append(
                {
                    "identity": p.identity,
                    "sid": p.sid,
                    "tracks": [
                        {k: t.get(k) for k in ("sid", "kind", "source", "muted", "bitrate", "subscribers")}
                        for t in tracks
                        if t.get("participant") == p.identity
                    ],
                }
            )
        rtts = [t["rtt_ms"] for t in tracks if t.get("rtt_ms") is not None]
        return {
            **room_json(room),
            "participants": people,
            "media": {
                "bitrate": sum(int(t.get("bitrate") or 0) for t in tracks),
                "packets_in": sum(int(t.get("packets_in") or 0) for t in tracks),
                "packets_forwarded": sum(int(t.get("packets_forwarded") or 0) for t in tracks),
                "loss_pct": max((float(t.get("subscriber_loss_pct") or 0) for t in tracks), default=0.0),
                "rtt_ms": round(sum(rtts) / len(rtts), 1) if rtts else None,
            },
        }

    async def action(self, request: Request) -> Response:
        checked = self._checked(request)
        if isinstance(checked, Response):
            return checked
        try:
            body: Action = await self._json(request, Action)
            return self._act(body)
        except RoomError as exc:
            status = {"room_not_found": 404, "unknown_participant": 404}.get(exc.code, 400)
            return error(status, exc.code, exc.message)

    def _act(self, body: Action) -> Response:
        if body.action == "mint_token":  # for any room, existing or not (rooms are created on first join)
            return self.admin.mint(
                MintToken(
                    room=body.room,
                    identity=body.identity,
                    ttl=body.ttl,
                    can_publish=body.can_publish,
                    room_admin=body.room_admin,
                )
            )
        room = self.manager.rooms.get(body.room)
        if room is None:
            raise RoomError("room_not_found", f"room {body.room!r} does not exist")
        if body.action == "end_room":
            self.manager.delete_room(room.name)
            return Response(status_code=204)
        participant = room.participants.get(body.identity)
        if participant is None:
            raise RoomError("unknown_participant", f"no participant {body.identity[:128]!r} in this room")
        if body.action == "remove":
            self.manager.remove_participant(room.name, participant.identity, self.clock(), participant.token_expires_at)
            return Response(status_code=204)
        if self.media is None or self.media.mute_owner(room.name, participant.sid, body.action == "mute") == 0:
            raise RoomError("nothing_to_mute", f"{participant.identity!r} publishes no tracks")
        return Response(status_code=204)
