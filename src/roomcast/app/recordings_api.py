"""``/api/rooms/{room}/recordings``: start (POST), list (GET), show (GET …/{id}), stop (DELETE …/{id}).

The admin API's authentication (Basic key pair, or an admin token for that room). The recorder itself is
a client of the server (egress/): this module only mints its hidden, subscribe-only tokens and wires it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roomcast.app.admin_api import AdminApi, Caller, error
from roomcast.app.config import Config
from roomcast.egress.service import EventSink, RecordingService
from roomcast.errors import CodedError, http_status
from roomcast.rooms.tokens import Grants, mint

RECORDER_TTL = 24 * 3600.0


def recorder_url(config: Config) -> str:
    """Where the in-process recorder joins: this server's own HTTP port, over loopback."""
    host = "127.0.0.1" if config.host in ("0.0.0.0", "", "localhost") else config.host
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    scheme = "wss" if config.tls_cert else "ws"
    return f"{scheme}://{host}:{config.port}"


def recording_service(config: Config, clock: Callable[[], float], on_event: EventSink) -> RecordingService | None:
    if not config.recordings_dir:
        return None

    def token(room: str, identity: str) -> str:
        grants = Grants(room=room, can_publish=False, can_subscribe=True, can_publish_data=False, hidden=True)
        return mint(config.api_key, config.api_secret, identity=identity, grants=grants, now=clock(), ttl=RECORDER_TTL)

    return RecordingService(Path(config.recordings_dir), recorder_url(config), token, clock=clock, on_event=on_event)


class RecordingsApi:
    def __init__(self, admin: AdminApi, service: RecordingService | None, clock: Callable[[], float]) -> None:
        self.admin = admin
        self.service = service
        self.clock = clock

    def routes(self) -> list[Route]:
        a = self.admin._authed
        base = "/api/rooms/{room}/recordings"
        return [
            Route(base, a(self.start), methods=["POST"]),
            Route(base, a(self.list), methods=["GET"]),
            Route(base + "/{id}", a(self.show), methods=["GET"]),
            Route(base + "/{id}", a(self.stop), methods=["DELETE"]),
        ]

    def _service(self, request: Request, *, new: bool = False) -> RecordingService:
        """The service, for a room that exists (or, except to start one, that has recordings: a room that
        emptied keeps its list); else 404 room_not_found."""
        if self.service is None:
            raise CodedError("recordings_disabled", "start the server with --recordings-dir to record")
        room = request.path_params["room"]
        if new or not self.service.of_room(room):
            self.admin._room(room)
        return self.service

    async def start(self, request: Request, caller: Caller) -> Response:
        try:
            rec = await self._service(request, new=True).start(request.path_params["room"])
        except CodedError as exc:
            return error(http_status(exc.code), exc.code, exc.message)
        return JSONResponse(rec.info(self.clock()), status_code=201)

    async def list(self, request: Request, caller: Caller) -> Response:
        try:
            recs = self._service(request).of_room(request.path_params["room"])
        except CodedError as exc:
            return error(http_status(exc.code), exc.code, exc.message)
        return JSONResponse({"recordings": [r.info(self.clock()) for r in recs]})

    async def show(self, request: Request, caller: Caller) -> Response:
        try:
            rec = self._service(request).get(request.path_params["room"], request.path_params["id"])
        except CodedError as exc:
            return error(http_status(exc.code), exc.code, exc.message)
        return JSONResponse(rec.info(self.clock()))

    async def stop(self, request: Request, caller: Caller) -> Response:
        """Stop and answer the finished recording (stopping a finished one answers it as it is)."""
        try:
            rec = await self._service(request).stop(request.path_params["room"], request.path_params["id"])
        except CodedError as exc:
            return error(http_status(exc.code), exc.code, exc.message)
        return JSONResponse(rec.info(self.clock()))
