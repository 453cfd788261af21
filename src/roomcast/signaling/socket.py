"""A client connection as frames (shared by the adapters: the JSON loop in ``ws.py``, the LiveKit loop, and
the relayed connections of ``remote.py``): ``receive`` a text or binary frame or the close code, ``send``,
``close``; and the one loop that drains an adapter's outbox into it. Imports only ``outbox.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from roomcast.signaling.outbox import CLOSE_NORMAL, Outbox


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


async def write_outbox(sock: FrameSocket, outbox: Outbox) -> None:
    """Send what the session queued, in order, until it asks to close (or the client is gone)."""
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


async def stop_writer(writer: asyncio.Task[None]) -> None:
    """Let the writer send the session's last frames and its close (at most 5 s), then stop it."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer, timeout=5)
    if not writer.done():
        writer.cancel()
