"""The socket loop of ``WS /rtc``: frames in to a :class:`SignalingSession`, its outbox out.

The session is the protocol and knows nothing of the socket; this loop is the only place that awaits one.
It runs over a :class:`FrameSocket`: the starlette WebSocket here (:class:`StarletteSocket`), or a
connection relayed from another node (``signaling/remote.py``), so the room's node serves every
participant with the same session whichever node accepted its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from roomcast.signaling.outbox import CLOSE_NORMAL, Outbox
from roomcast.signaling.session import SignalingSession


class FrameSocket(Protocol):
    """A message-oriented client connection. ``receive`` returns a text or binary frame, or the close code
    (int) once the client has gone; ``send`` raises ``ConnectionError`` when it has."""

    async def accept(self) -> None: ...

    async def receive(self) -> str | bytes | int: ...

    async def send(self, frame: str | bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class StarletteSocket:
    """A starlette WebSocket as a :class:`FrameSocket`."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def accept(self) -> None:
        await self.ws.accept()

    async def receive(self) -> str | bytes | int:
        try:
            frame = await self.ws.receive()
        except WebSocketDisconnect as exc:
            return exc.code
        if frame["type"] == "websocket.disconnect":
            return int(frame.get("code", 1006))
        text = frame.get("text")
        if text is not None:
            return str(text)
        return bytes(frame.get("bytes") or b"")

    async def send(self, frame: str | bytes) -> None:
        try:
            await (self.ws.send_text(frame) if isinstance(frame, str) else self.ws.send_bytes(frame))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise ConnectionError(str(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code, reason)


async def serve_websocket(ws: WebSocket, session: SignalingSession) -> None:
    sock = StarletteSocket(ws)
    await serve_session(sock, session, ws.query_params.get("access_token", ""))


async def serve_session(sock: FrameSocket, session: SignalingSession, raw_token: str) -> None:
    await sock.accept()
    writer = asyncio.create_task(_write_loop(sock, session.outbox))
    try:
        if session.open(raw_token):
            await _read_loop(sock, session)
    finally:
        session.finish()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=5)
        if not writer.done():
            writer.cancel()


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


async def _write_loop(sock: FrameSocket, outbox: Outbox) -> None:
    try:
        while True:
            await outbox.wakeup.wait()
            outbox.wakeup.clear()
            while outbox.items:
                await sock.send(outbox.pop())
            if outbox.close_with is not None:
                code, reason = outbox.close_with
                await sock.close(code, reason)
                return
    except ConnectionError:
        outbox.close(CLOSE_NORMAL, "gone")
