"""The starlette WebSocket loop of ``WS /rtc``: frames in to a :class:`SignalingSession`, its outbox out.

The session is the protocol and knows nothing of the socket; this loop is the only place that awaits the
WebSocket. That is the seam a multi-worker router uses: the same session can be fed from another process.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from roomcast.signaling.outbox import CLOSE_NORMAL, Outbox
from roomcast.signaling.session import SignalingSession


async def serve_websocket(ws: WebSocket, session: SignalingSession) -> None:
    await ws.accept()
    writer = asyncio.create_task(_write_loop(ws, session.outbox))
    try:
        if session.open(ws.query_params.get("access_token", "")):
            await _read_loop(ws, session)
    finally:
        session.finish()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=5)
        if not writer.done():
            writer.cancel()


async def _read_loop(ws: WebSocket, session: SignalingSession) -> None:
    while session.outbox.close_with is None:
        try:
            frame = await asyncio.wait_for(ws.receive(), timeout=max(0.0, session.deadline() - session.clock()))
        except TimeoutError:
            session.handle_deadline()
            return
        except WebSocketDisconnect as exc:
            session.disconnected(exc.code)
            return
        if frame["type"] == "websocket.disconnect":
            session.disconnected(int(frame.get("code", 1006)))
            return
        text = frame.get("text")
        if text is None:
            session.handle_binary()
            continue
        session.handle_text(text)


async def _write_loop(ws: WebSocket, outbox: Outbox) -> None:
    try:
        while True:
            await outbox.wakeup.wait()
            outbox.wakeup.clear()
            while outbox.items:
                item = outbox.pop()
                await (ws.send_text(item) if isinstance(item, str) else ws.send_bytes(item))
            if outbox.close_with is not None:
                code, reason = outbox.close_with
                if ws.application_state == WebSocketState.CONNECTED:
                    await ws.close(code, reason)
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        outbox.close(CLOSE_NORMAL, "gone")
