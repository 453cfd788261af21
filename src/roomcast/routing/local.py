"""The one-process default: every room lives here, nothing is relayed, the registry is this node alone."""

from __future__ import annotations

import secrets

from roomcast.routing.api import CallHandler, Link, LinkHandler, LoadSource, NodeInfo, RoutingError


class LocalRouting:
    """``Routing`` for the embedded mode: ``place`` always answers this node; calls run in-process."""

    clustered = False

    def __init__(self, node_id: str = "") -> None:
        self._node_id = node_id or "node-" + secrets.token_hex(4)
        self._load: LoadSource = lambda: (NodeInfo(self._node_id).load, [])
        self._handlers: dict[str, CallHandler] = {}
        self._draining = False
        self._media = ""

    @property
    def node_id(self) -> str:
        return self._node_id

    async def start(self, load: LoadSource, on_link: LinkHandler, media: str = "") -> None:
        self._load, self._media = load, media

    async def stop(self) -> None:
        return None

    async def place(self, room: str) -> str:
        return self._node_id

    async def owner(self, room: str) -> str | None:
        return self._node_id

    async def connect(self, node: str, hello: bytes) -> Link:
        raise RoutingError("unknown_node", f"no node {node!r}: this server runs alone (no --redis-url)")

    async def call(self, node: str, method: str, body: bytes, timeout: float = 3.0) -> bytes:
        handler = self._handlers.get(method)
        if node != self._node_id or handler is None:
            raise RoutingError("unknown_node", f"no node {node!r} serving {method!r}")
        return await handler(body)

    def serve(self, method: str, handler: CallHandler) -> None:
        self._handlers[method] = handler

    async def nodes(self) -> list[NodeInfo]:
        load, rooms = self._load()
        return [NodeInfo(self._node_id, load, tuple(rooms), self._draining, self._media)]

    def set_draining(self) -> None:
        self._draining = True

    def counters(self) -> dict[str, int]:
        return {}
