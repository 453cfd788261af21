"""Sockets that cross nodes (docs/deploy.md "Cluster"): a client's socket for a room of another node is
relayed there (the JSON protocol and LiveKit's alike), and a relayed one arriving here runs its session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from roomcast.app.cluster import Cluster
from roomcast.app.drain import Drain
from roomcast.livekit.frames import MAX_FRAME as LIVEKIT_MAX_FRAME
from roomcast.livekit.frames import FrameError
from roomcast.livekit.session import LiveKitSession
from roomcast.livekit.ws import join_request_of, run_livekit, token_of
from roomcast.routing.api import Link, RoutingError
from roomcast.rtc.service import MediaService
from roomcast.signaling.remote import Hello, LinkSocket, relay_socket
from roomcast.signaling.socket import FrameSocket, StarletteSocket

RunSession = Callable[[FrameSocket, str, str], Awaitable[None]]  # (socket, token, client key)
Refuse = Callable[[WebSocket, str, str, int], Awaitable[None]]  # (socket, code, message, close code)


class ClusterSockets:
    def __init__(
        self,
        cluster: Cluster,
        count: Callable[[str], None],
        drain: Drain,
        run_session: RunSession,
        livekit_session: Callable[[str, MediaService | None], LiveKitSession],
        media: Callable[[], MediaService | None],
        refuse: Refuse,
    ) -> None:
        self.cluster = cluster
        self.count = count
        self.drain = drain
        self.run_session = run_session
        self.livekit_session = livekit_session
        self.media = media
        self.refuse = refuse

    async def relay(self, ws: WebSocket, node: str, raw_token: str, client: str) -> None:
        """The room lives on ``node``: carry this socket's frames there (signaling/remote.py)."""
        try:
            link = await self.cluster.connect(node, raw_token, client)
        except RoutingError as exc:
            self.count("routing_unavailable")
            await self.refuse(ws, "routing_unavailable", f"cannot reach the room's node ({exc.message})", 1013)
            return
        self.count("relayed_out")
        await relay_socket(StarletteSocket(ws), link)

    async def relay_livekit(self, ws: WebSocket, node: str, client: str) -> None:
        """A LiveKit client for a room of another node: refused tokens never get a socket (as on the room's
        node), the rest is relayed like the JSON protocol's sockets."""
        params = dict(ws.query_params)
        token = token_of(params, ws.headers)
        try:
            join_request_of(params)
        except FrameError:
            await ws.close(1008)
            return
        if self.livekit_session(client, None).authenticate(token) is not None:
            await ws.close(1008)
            return
        try:
            link = await self.cluster.connect(node, token, client, protocol="livekit", params=params)
        except RoutingError:
            self.count("routing_unavailable")
            await ws.close(1013)
            return
        self.count("relayed_out")
        await relay_socket(StarletteSocket(ws), link, max_frame=LIVEKIT_MAX_FRAME)

    async def serve_link(self, link: Link, hello: Hello) -> None:
        """A socket another node accepted for a room hosted here."""
        self.count("relayed_in")
        if hello.protocol != "livekit":
            await self.run_session(LinkSocket(link), hello.token, hello.client)
            return
        lk = self.livekit_session(hello.client, self.media())
        try:
            join = join_request_of(hello.params)
        except FrameError:
            join = None
        if join is None or lk.authenticate(hello.token) is not None:  # checked where it landed; again here
            link.close(1008, "refused")
            return
        self.drain.add(lk)
        try:
            await run_livekit(LinkSocket(link), lk, join)
        finally:
            self.drain.discard(lk)
