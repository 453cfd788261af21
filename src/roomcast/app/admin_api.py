"""REST admin API under ``/api/``.

Authentication: ``Authorization: Bearer <token>`` whose grants include ``roomAdmin`` (limited to the
token's room when it names one), or ``Authorization: Basic base64(api_key:api_secret)``.

A Bearer caller is a delegate, not the owner of the key: a kick revokes its token here too, and the tokens
it mints live at most ``DELEGATE_MAX_TTL`` (and not past its own expiry), are never ``hidden`` and carry no
grant it lacks itself, so a room admin cannot mint itself a lasting or invisible foothold.

Bodies are JSON only (a ``text/plain`` POST is what a cross-site form can send with a browser's cached
Basic credentials), at most ``MAX_BODY`` bytes (refused from ``Content-Length`` or while streaming) and
received within ``header_timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roomcast.app.config import Config
from roomcast.errors import http_status
from roomcast.rooms.manager import Room, RoomError, RoomManager
from roomcast.rooms.tokens import (
    AccessToken,
    Grants,
    TokenError,
    mint,
    parse_duration,
    validate_identity,
    validate_room,
    verify,
)
from roomcast.signaling.session import participant_info

MAX_BODY = 16 * 1024
DELEGATE_MAX_TTL = 24 * 3600.0
class CreateRoom(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    max_participants: int | None = None
    mode: Literal["sfu", "p2p"] | None = None
    record: bool = False  # record every publisher from the first on (needs --recordings-dir)


class MintToken(msgspec.Struct, forbid_unknown_fields=True):
    room: str
    identity: str
    name: str | None = None
    ttl: str = "6h"
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    room_admin: bool = False
    hidden: bool = False
    metadata: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key pair (any room, ``token`` None) or an admin token (``room`` empty = any room)."""

    room: str
    token: AccessToken | None = None

    def may(self, room: str) -> bool:
        return not self.room or self.room == room


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def room_json(room: Room) -> dict[str, Any]:
    return {
        "name": room.name,
        "sid": room.sid,
        "created_at": room.created_at,
        "max_participants": room.max_participants,
        "num_participants": len(room.participants),
        "mode": room.mode,
    }


Handler = Callable[[Request, Caller], Awaitable[Response]]


class AdminApi:
    def __init__(self, config: Config, manager: RoomManager, clock: Callable[[], float]) -> None:
        self.config = config
        self.manager = manager
        self.clock = clock
        self.room_stats: Callable[[str], dict[str, object] | None] = lambda room: None
        self.dev_tokens = True  # off when the pages have a login (app/login.py)
        self.auto_record: Callable[[str], None] | None = None  # a room created with record: true (recordings on)

    def routes(self) -> list[Route]:
        a = self._authed
        return [
            Route("/api/rooms", a(self.list_rooms), methods=["GET"]),
            Route("/api/rooms", a(self.create_room), methods=["POST"]),
            Route("/api/rooms/{room}", a(self.get_room), methods=["GET"]),
            Route("/api/rooms/{room}", a(self.delete_room), methods=["DELETE"]),
            Route("/api/rooms/{room}/participants", a(self.list_participants), methods=["GET"]),
            Route("/api/rooms/{room}/stats", a(self.stats), methods=["GET"]),
            Route("/api/rooms/{room}/participants/{identity}", a(self.remove_participant), methods=["DELETE"]),
            Route("/api/tokens", a(self.mint_token), methods=["POST"]),
            Route("/api/dev-token", self.dev_token, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ auth

    def authenticate(self, request: Request) -> Caller | JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                key, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return error(401, "invalid_credentials", "malformed Basic credentials")
            expected = self.config.keys.get(key)
            if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
                return error(401, "invalid_credentials", "unknown API key or wrong secret")
            return Caller(room="")
        if scheme == "bearer":
            try:
                token = verify(credentials.strip(), self.config.keys, now=self.clock())
            except TokenError as exc:
                return error(401, exc.code, exc.message)
            if not token.grants.room_admin:
                return error(403, "permission_denied", "token lacks the roomAdmin grant")
            if self.manager.is_revoked(token, self.clock()):
                return error(401, "token_revoked", "this token was revoked (its holder was removed from the room)")
            return Caller(room=token.grants.room, token=token)
        return error(401, "missing_credentials", "use Authorization: Bearer <admin token> or Basic key:secret")

    def _authed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            caller = self.authenticate(request)
            if isinstance(caller, JSONResponse):
                return caller
            room = request.path_params.get("room")
            if room is not None and not caller.may(room):
                return error(403, "permission_denied", f"token is an admin of {caller.room!r} only")
            try:
                return await handler(request, caller)
            except RoomError as exc:
                response = error(http_status(exc.code), exc.code, exc.message)
                if exc.code in ("body_too_large", "body_timeout"):
                    response.headers["connection"] = "close"  # do not read (or keep) the rest of the upload
                return response

        return endpoint

    async def _body(self, request: Request, kind: type[Any]) -> Any:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise RoomError("unsupported_media_type", "send the request body as Content-Type: application/json")
        too_large = RoomError("body_too_large", f"request body over {MAX_BODY} bytes")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise too_large
        body = bytearray()
        try:
            async with asyncio.timeout(self.config.header_timeout):  # a trickled body holds a socket and a task
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise too_large
        except TimeoutError:
            raise RoomError(
                "body_timeout", f"request body not received within {self.config.header_timeout:g}s"
            ) from None
        try:
            return msgspec.json.decode(body, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise RoomError("invalid_request", f"invalid request body: {exc}") from None

    def _room(self, name: str) -> Room:
        room = self.manager.rooms.get(name)
        if room is None:
            raise RoomError("room_not_found", f"room {name!r} does not exist")
        return room

    # ------------------------------------------------------------------ endpoints

    async def list_rooms(self, request: Request, caller: Caller) -> Response:
        rooms = [room_json(r) for r in self.manager.rooms.values() if caller.may(r.name)]
        return JSONResponse({"rooms": rooms})

    async def create_room(self, request: Request, caller: Caller) -> Response:
        body: CreateRoom = await self._body(request, CreateRoom)
        if not caller.may(body.name):
            return error(403, "permission_denied", f"token is an admin of {caller.room!r} only")
        if body.record and self.auto_record is None:
            raise RoomError("recordings_disabled", "record: true needs a server started with --recordings-dir")
        room = self.manager.create_room(body.name, self.clock(), max_participants=body.max_participants, mode=body.mode)
        if body.record and self.auto_record is not None:
            self.auto_record(room.name)
        return JSONResponse({**room_json(room), "record": body.record}, status_code=201)

    async def get_room(self, request: Request, caller: Caller) -> Response:
        return JSONResponse(room_json(self._room(request.path_params["room"])))

    async def delete_room(self, request: Request, caller: Caller) -> Response:
        self.manager.delete_room(request.path_params["room"])
        return Response(status_code=204)

    async def list_participants(self, request: Request, caller: Caller) -> Response:
        room = self._room(request.path_params["room"])
        people = [msgspec.to_builtins(participant_info(p)) for p in room.participants.values()]
        return JSONResponse({"participants": people})

    async def stats(self, request: Request, caller: Caller) -> Response:
        """Per track bitrate inputs (packets, bytes), forwarding, NACK/PLI counts; per participant state."""
        room = self._room(request.path_params["room"])
        media = self.room_stats(room.name) or {"room": room.name, "tracks": [], "participants": {}, "counters": {}}
        return JSONResponse({**media, "mode": room.mode, "num_participants": len(room.participants)})

    async def remove_participant(self, request: Request, caller: Caller) -> Response:
        room = self._room(request.path_params["room"])
        identity = request.path_params["identity"]
        participant = room.participants.get(identity)
        expires = participant.token_expires_at if participant is not None else None
        self.manager.remove_participant(room.name, identity, self.clock(), expires)
        return Response(status_code=204)

    async def mint_token(self, request: Request, caller: Caller) -> Response:
        body: MintToken = await self._body(request, MintToken)
        if not caller.may(body.room):
            return error(403, "permission_denied", f"token is an admin of {caller.room!r} only")
        if caller.token is None:
            return self._mint(body)
        try:
            ttl = parse_duration(body.ttl)
        except ValueError as exc:
            raise RoomError("invalid_request", str(exc)) from None
        held = caller.token.grants
        asked = {
            "hidden": body.hidden,
            "can_publish": body.can_publish and not held.can_publish,
            "can_subscribe": body.can_subscribe and not held.can_subscribe,
            "can_publish_data": body.can_publish_data and not held.can_publish_data,
        }
        broader = [name for name, wanted in asked.items() if wanted]
        if broader:
            return error(403, "permission_denied", f"an admin token cannot grant {', '.join(broader)}")
        if ttl > DELEGATE_MAX_TTL:
            return error(403, "permission_denied", "an admin token may mint tokens of at most 24h")
        return self._mint(body, ttl=min(ttl, caller.token.expires_at - self.clock()))

    async def dev_token(self, request: Request) -> Response:
        """Tokens for the demo pages, only while the public dev key pair is in use."""
        if not self.config.dev_mode or not self.dev_tokens:
            return error(404, "dev_mode_off", "dev tokens exist only with the built-in dev credentials")
        q = request.query_params
        try:
            validate_room(q.get("room", ""))
        except ValueError as exc:
            return error(400, "invalid_room", str(exc))
        try:
            body = MintToken(
                room=q.get("room", ""),
                identity=q.get("identity", ""),
                name=q.get("name") or None,
                can_publish=q.get("can_publish", "true").lower() not in ("0", "false", "no"),
                room_admin=q.get("room_admin", "false").lower() in ("1", "true", "yes"),
            )
            return self._mint(body)
        except RoomError as exc:
            return error(400, exc.code, exc.message)

    def mint(self, body: MintToken) -> Response:
        """A token for ``body``, as the key pair's owner mints it (the dashboard's logged-in operator)."""
        try:
            return self._mint(body)
        except RoomError as exc:
            return error(http_status(exc.code), exc.code, exc.message)

    def _mint(self, body: MintToken, ttl: float | None = None) -> Response:
        """Sign ``body``; ``ttl`` (seconds) overrides ``body.ttl`` once the caller's caps are applied."""
        try:
            ttl = parse_duration(body.ttl) if ttl is None else ttl
            validate_identity(body.identity)
            grants = Grants(
                room=body.room,
                can_publish=body.can_publish,
                can_subscribe=body.can_subscribe,
                can_publish_data=body.can_publish_data,
                room_admin=body.room_admin,
                hidden=body.hidden,
            )
            token = mint(
                self.config.api_key,
                self.config.api_secret,
                identity=body.identity,
                grants=grants,
                now=self.clock(),
                ttl=ttl,
                name=body.name,
                metadata=body.metadata,
            )
        except ValueError as exc:
            raise RoomError("invalid_request", str(exc)) from None
        expires_at = int(self.clock() + ttl)
        return JSONResponse({"token": token, "identity": body.identity, "room": body.room, "expires_at": expires_at})
