"""Signaling for a room hosted on another node: the client's socket stays where it landed, its session runs
on the room's node, and a routing :class:`~roomcast.routing.api.Link` carries the frames between them.

- :func:`relay_socket` runs on the node that accepted the WebSocket: client frames go to the link, the
  link's frames to the client, and either side's close ends both.
- :class:`LinkSocket` runs on the room's node: the link as a :class:`~roomcast.signaling.socket.FrameSocket`,
  so ``serve_session`` drives the normal :class:`~roomcast.signaling.session.SignalingSession` over it.

A lost relay (routing says ``LinkClosed(1012)``) closes the client's socket with 1012, which clients take
as a drop: they resume their session within its window, on whichever node they reach.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from roomcast.routing.api import Link, LinkClosed
from roomcast.signaling.messages import MAX_MESSAGE_BYTES
from roomcast.signaling.socket import FrameSocket

CLOSE_RELAY_LOST = 1012  # "service restart": the client reconnects (and resumes)


class Hello(msgspec.Struct, frozen=True):
    """What the accepting node tells the room's node when it opens a link."""

    token: str
    client: str  # the client's address key (per-client quotas are charged on the room's node)
    protocol: str = "json"  # or "livekit" (/rtc/v1)
    params: dict[str, str] = {}  # the query parameters (LiveKit's join request)


class LinkSocket:
    """A relayed connection, seen by the room's node as a client socket."""

    def __init__(self, link: Link) -> None:
        self.link = link

    async def accept(self) -> None:
        return None

    async def receive(self) -> str | bytes | int:
        frame = await self.link.receive()
        if isinstance(frame, LinkClosed):
            return frame.code
        return frame

    async def send(self, frame: str | bytes) -> None:
        self.link.send(frame)

    async def close(self, code: int, reason: str) -> None:
        self.link.close(code, reason)


async def relay_socket(sock: FrameSocket, link: Link, max_frame: int = MAX_MESSAGE_BYTES) -> None:
    """Pump frames both ways until one side ends; the other side is then closed with its code."""
    await sock.accept()
    up = asyncio.create_task(_client_to_link(sock, link, max_frame))
    down = asyncio.create_task(_link_to_client(sock, link))
    try:
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        link.close(1006, "gone")


async def _client_to_link(sock: FrameSocket, link: Link, max_frame: int) -> None:
    while True:
        frame = await sock.receive()
        if isinstance(frame, int):
            link.close(frame, "client closed")
            return
        if len(frame) > max_frame:
            # The session refuses it (1009) from its size alone: do not carry the rest across the cluster.
            frame = frame[: max_frame + 1]
        link.send(frame)


async def _link_to_client(sock: FrameSocket, link: Link) -> None:
    try:
        while True:
            frame = await link.receive()
            if isinstance(frame, LinkClosed):
                await sock.close(frame.code, frame.reason)
                return
            await sock.send(frame)
    except ConnectionError:
        link.close(1006, "client gone")
