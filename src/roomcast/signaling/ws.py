"""The socket loop of ``WS /rtc``: frames in to a :class:`SignalingSession`, its outbox out.

The session is the protocol and knows nothing of the socket; this loop is the only place that awaits one.
It runs over a :class:`FrameSocket`: the starlette WebSocket here (:class:`StarletteSocket`), or a
connection relayed from another node (``signaling/remote.py``), so the room's node serves every
participant with the same session whichever node accepted its socket.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from roomcast.signaling.session import SignalingSession
from roomcast.signaling.socket import FrameSocket, StarletteSocket, stop_writer, write_outbox


async def serve_websocket(ws: WebSocket, session: SignalingSession) -> None:
    sock = StarletteSocket(ws)
    await serve_session(sock, session, ws.query_params.get("access_token", ""))


async def serve_session(sock: FrameSocket, session: SignalingSession, raw_token: str) -> None:
    await sock.accept()
    writer = asyncio.create_task(write_outbox(sock, session.outbox))
    try:
        if session.open(raw_token):
            await _read_loop(sock, session)
    finally:
        session.finish()
        await stop_writer(writer)


async def _read_loop(sock: FrameSocket, session: SignalingSession) -> None:
    while session.outbox.close_with is None:
        try:
            frame = await asyncio.wait_for(sock.receive(), timeout=max(0.0, session.deadline() - session.clock()))
        except TimeoutError:
            session.handle_deadline()
            return
        if isinstance(frame, int):
            session.disconnected(frame)
            return
        if isinstance(frame, bytes):
            session.handle_binary()
            continue
        session.handle_text(frame)


__all__ = ["FrameSocket", "StarletteSocket", "serve_session", "serve_websocket"]
