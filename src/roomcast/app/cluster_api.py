"""The admin API and metrics of the whole cluster from any node (docs/deploy.md "Cluster").

An ASGI middleware in front of the routes: a call about one room (``/api/rooms/{room}...``, and creating
one) runs on the room's node, as the same HTTP request carried by a routing call (that node checks the
credentials again and answers); ``GET /api/rooms`` gathers every node's list; ``GET /metrics?node=ID`` is
that node's (workers share one port, so this is how a scraper reaches each). WHIP/WHEP requests
(``/whip/{room}...``, ``/whep/{room}...``) go to the room's node the same way, POST placing the room.
``GET /api/nodes`` lists the registry: each node's load, rooms, and whether it drains. With one process none
of it does anything.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roomcast.app.admin_api import MAX_BODY, AdminApi, error
from roomcast.routing.api import Routing, RoutingError

FORWARDED = b"x-roomcast-forwarded"  # set on a request another node handed over: answer it here
CLIENT = b"x-roomcast-client"  # the address the handing node saw (per-client limits); never taken from outside
_HOP_HEADERS = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"content-length", FORWARDED, CLIENT}


class HttpCall(msgspec.Struct, array_like=True, frozen=True):
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class HttpReply(msgspec.Struct, array_like=True, frozen=True):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ClusterAdmin:
    def __init__(self, app: ASGIApp, routing: Routing, timeout: float = 5.0) -> None:
        self.app = app
        self.routing = routing
        self.timeout = timeout
        self.outer: ASGIApp | None = None  # the Starlette app (``scope["app"]`` of replayed requests)
        if routing.clustered:
            routing.serve("http", self._serve_http)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.outer is None and "app" in scope:
            self.outer = scope["app"]
        if scope["type"] != "http" or not self.routing.clustered or _header(scope, FORWARDED) is not None:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/metrics":
            node = _query(scope).get("node")
            if node and node != self.routing.node_id:
                await self._forward(node, scope, b"", send)
                return
        elif path == "/api/rooms" and method == "GET":
            await self._gather(scope, send)
            return
        elif path == "/api/rooms" and method == "POST":
            body = await _read_body(receive)
            if body is None:
                await _respond(send, error(413, "body_too_large", f"request body over {MAX_BODY} bytes"))
                return
            name = _room_name(body)
            if name is not None:
                node = await self._node(lambda: self.routing.place(name), send)
                if node is None:
                    return
                if node != self.routing.node_id:
                    await self._forward(node, scope, body, send)
                    return
            await self.app(scope, _replay(body), send)
            return
        elif path.startswith(("/whip/", "/whep/")) and method != "OPTIONS" and path.count("/") >= 2:
            # WHIP/WHEP (docs/whip.md): the session lives on the room's node; its answer names that node's media
            room = unquote(path.split("/")[2])
            lookup = (lambda: self.routing.place(room)) if method == "POST" else (lambda: self.routing.owner(room))
            node = await self._node(lookup, send)
            if node == "" or await self._to_owner(node, scope, receive, send):
                return
        elif path.startswith("/api/rooms/"):
            room = path.split("/")[3]
            node = await self._node(lambda: self.routing.owner(room), send)
            if node == "" or await self._to_owner(node, scope, receive, send):
                return
        await self.app(scope, receive, send)

    async def _to_owner(self, node: str | None, scope: Scope, receive: Receive, send: Send) -> bool:
        """Forward the request, body and all, when ``node`` is another node; True when it was answered
        (forwarded, or refused for an oversized body), False when this node serves it."""
        if node is None or node == self.routing.node_id:
            return False
        body = await _read_body(receive)
        if body is None:
            await _respond(send, error(413, "body_too_large", f"request body over {MAX_BODY} bytes"))
            return True
        await self._forward(node, scope, body, send)
        return True

    async def _node(self, lookup: Any, send: Send) -> str | None:
        """The answer of ``lookup()``; on a routing failure a 503 is sent and "" returned."""
        try:
            node: str | None = await lookup()
        except RoutingError as exc:
            await _respond(send, error(503, "routing_unavailable", exc.message))
            return ""
        return node

    async def _forward(self, node: str, scope: Scope, body: bytes, send: Send) -> None:
        try:
            reply = await self._call(node, scope, body)
        except RoutingError as exc:
            await _respond(send, error(502, "node_unreachable", f"node {node!r}: {exc.message}"))
            return
        await _respond(send, _response(reply))

    async def _call(self, node: str, scope: Scope, body: bytes) -> HttpReply:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_HEADERS]
        client = scope.get("client")
        if client:
            headers.append((CLIENT, str(client[0]).encode()))
        call = HttpCall(scope["method"], scope["path"], scope.get("query_string", b""), headers, body)
        raw = await self.routing.call(node, "http", msgspec.msgpack.encode(call), self.timeout)
        return msgspec.msgpack.decode(raw, type=HttpReply)

    async def _gather(self, scope: Scope, send: Send) -> None:
        """Every node's room list (those not answering are named in ``unreachable_nodes``)."""
        local = await self._run(scope, b"")
        if local.status != 200:
            await _respond(send, _response(local))
            return
        try:
            others = [n.node_id for n in await self.routing.nodes() if n.node_id != self.routing.node_id]
        except RoutingError as exc:
            others, failed = [], [f"registry: {exc.message}"]
        else:
            failed = []
        replies = await asyncio.gather(*(self._call(n, scope, b"") for n in others), return_exceptions=True)
        rooms: dict[str, Any] = {}
        for node, reply in [(self.routing.node_id, local), *zip(others, replies, strict=True)]:
            if isinstance(reply, BaseException) or reply.status != 200:
                failed.append(node)
                continue
            for room in json.loads(reply.body).get("rooms", []):
                rooms.setdefault(room["name"], {**room, "node": node})
        body: dict[str, Any] = {"rooms": sorted(rooms.values(), key=lambda r: str(r["name"]))}
        if failed:
            body["unreachable_nodes"] = failed
        await _respond(send, JSONResponse(body))

    async def _serve_http(self, raw: bytes) -> bytes:
        """A request another node handed over: run it through this node's routes."""
        call = msgspec.msgpack.decode(raw, type=HttpCall)
        client = next((v.decode("latin-1") for k, v in call.headers if k == CLIENT), "127.0.0.1")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": call.method,
            "scheme": "http",
            "path": call.path,
            "raw_path": call.path.encode(),
            "query_string": call.query,
            "root_path": "",
            "headers": [*[(k, v) for k, v in call.headers if k != CLIENT], (FORWARDED, self.routing.node_id.encode())],
            "client": (client, 0),
            "server": ("127.0.0.1", 0),
        }
        if self.outer is not None:
            scope["app"] = self.outer
        return msgspec.msgpack.encode(await self._run(scope, call.body))

    async def _run(self, scope: Scope, body: bytes) -> HttpReply:
        status, headers, chunks = 500, [], []

        async def collect(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, _replay(body), collect)
        return HttpReply(status, [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS], b"".join(chunks))


def nodes_route(admin: AdminApi, routing: Routing) -> Route:
    async def nodes(request: Request) -> Response:
        caller = admin.authenticate(request)
        if isinstance(caller, JSONResponse):
            return caller
        if caller.room:
            return error(
                403, "permission_denied", "listing nodes needs the API key pair or an admin token for every room"
            )
        try:
            found = await routing.nodes()
        except RoutingError as exc:
            return error(503, "routing_unavailable", exc.message)
        listed = [
            {
                "id": n.node_id,
                "self": n.node_id == routing.node_id,
                "draining": n.draining,
                "media": n.media,
                "started_at": n.started_at,
                "load": msgspec.to_builtins(n.load),
                "score": round(n.load.score(), 2),
                "rooms": list(n.rooms),
            }
            for n in found
        ]
        return JSONResponse({"node": routing.node_id, "clustered": routing.clustered, "nodes": listed})

    return Route("/api/nodes", nodes, methods=["GET"])


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _query(scope: Scope) -> dict[str, str]:
    return dict(Request(scope).query_params)


def _room_name(body: bytes | None) -> str | None:
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None when it is over ``MAX_BODY`` (the local handler then refuses it: 413)."""
    body = bytearray()
    async with asyncio.timeout(10.0):
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                return None
            if not message.get("more_body", False):
                return bytes(body)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no more body: like a client that keeps the connection open
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _response(reply: HttpReply) -> Response:
    response = Response(reply.body, status_code=reply.status)
    response.raw_headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    return response


async def _respond(send: Send, response: Response) -> None:
    async def no_body() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    await response({"type": "http"}, no_body, send)
