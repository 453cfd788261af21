"""The starlette side of LiveKit's signal connection (``WS /rtc/v1``) and its ``validate`` endpoint.

A refused token never gets a socket: the upgrade is refused (HTTP 403) and the client then asks
``/rtc/v1/validate``, which answers 401 with the reason, as LiveKit's server does. After the upgrade, the
session speaks; this loop only moves frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from livekit.protocol import rtc
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from roomcast.errors import http_status
from roomcast.livekit.frames import MAX_FRAME, FrameError, decode_join_request
from roomcast.livekit.session import LiveKitSession
from roomcast.signaling.socket import FrameSocket, StarletteSocket, stop_writer, write_outbox


def token_of(params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """``access_token`` (livekit-client), else ``Authorization: Bearer`` (the Rust SDK and its Python wheel)."""
    token = params.get("access_token", "")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return token or (value.strip() if scheme.lower() == "bearer" else "")


def join_request_of(params: dict[str, str]) -> rtc.JoinRequest:
    """``/rtc/v1`` carries a JoinRequest; without one (an older client's query parameters) join with defaults."""
    raw = params.get("join_request")
    if raw is None:
        request = rtc.JoinRequest()
        request.connection_settings.auto_subscribe = params.get("auto_subscribe", "1") != "0"
        request.reconnect = params.get("reconnect") == "1"
        return request
    return decode_join_request(raw)


# LiveKit apps live on their own origin and read validate's answer with fetch(): it says only whether a
# token would be accepted, so any origin may read it (as LiveKit's server allows).
_CORS = {"Access-Control-Allow-Origin": "*"}


async def validate(request: Request, session: LiveKitSession) -> Response:
    """``GET /rtc/v1/validate``: why a connection would be refused (401/403 with the reason), else 200."""
    refused = session.authenticate(token_of(request.query_params, request.headers))
    if refused is not None:
        status = http_status(refused.code)
        return PlainTextResponse(f"{refused.code}: {refused.message}", status_code=status, headers=_CORS)
    try:
        join_request_of(dict(request.query_params))
    except FrameError as exc:
        return PlainTextResponse(f"{exc.code}: {exc.message}", status_code=400, headers=_CORS)
    return PlainTextResponse("success", headers=_CORS)


async def serve_livekit(ws: WebSocket, session: LiveKitSession) -> None:
    params = dict(ws.query_params)
    if session.authenticate(token_of(params, ws.headers)) is not None:
        await ws.close(1008)  # before accept: the upgrade is refused with HTTP 403
        return
    try:
        join = join_request_of(params)
    except FrameError:
        session.on_event("livekit_bad_frame")
        await ws.close(1008)
        return
    await ws.accept()
    await run_livekit(StarletteSocket(ws), session, join)


async def run_livekit(sock: FrameSocket, session: LiveKitSession, join: rtc.JoinRequest) -> None:
    """The session over an accepted socket: this node's WebSocket, or one relayed from another node of the
    cluster (the token was checked and the join request decoded where the client connected, and again here)."""
    writer = asyncio.create_task(write_outbox(sock, session.outbox))
    try:
        if session.start(join):
            await _read_loop(sock, session)
    finally:
        session.finish()
        await stop_writer(writer)


async def _read_loop(sock: FrameSocket, session: LiveKitSession) -> None:
    while session.outbox.close_with is None:
        try:
            frame = await asyncio.wait_for(sock.receive(), timeout=max(0.0, session.deadline() - session.clock()))
        except TimeoutError:
            session.handle_deadline()
            return
        if isinstance(frame, int):
            return
        if isinstance(frame, str):
            session.handle_text()
            continue
        session.handle_bytes(frame)


__all__ = ["MAX_FRAME", "run_livekit", "serve_livekit", "validate"]
