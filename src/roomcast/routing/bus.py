"""Links and calls over any node-to-node message transport (Redis pub/sub in ``routing/redis.py``).

Every message is an :class:`Envelope` to one node. A link numbers its frames: a frame lost in transit
(the transport restarted, a publish failed) shows up as a gap and ends the link with ``1012`` on both
sides instead of leaving a client and its session silently out of step; :meth:`Bus.resync` pings every
link after the transport comes back so a gap is found even when no frame follows it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable

import msgspec

from roomcast.routing.api import CallHandler, LinkClosed, LinkHandler, RoutingError

log = logging.getLogger("roomcast.routing")

OPEN, TEXT, BINARY, CLOSE, PING, CALL, REPLY, FAIL = range(1, 9)
CLOSE_LOST = 1012
MAX_QUEUED_FRAMES = 1024  # frames waiting for a slow reader on one link before the link is closed


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    kind: int
    src: str  # the sending node
    ref: str  # link id, or call id
    seq: int = 0
    text: str = ""  # a text frame, a close reason, a call's method or failure message
    code: int = 0
    data: bytes = b""  # a binary frame, a hello, a call's body or reply


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Envelope).decode


class BusLink:
    """One end of a relayed connection (the ``routing.api.Link`` protocol)."""

    def __init__(self, bus: Bus, link_id: str, peer: str) -> None:
        self._bus = bus
        self._id = link_id
        self._peer = peer
        self._sent = 0
        self._received = 0
        self._frames: deque[str | bytes | LinkClosed] = deque()
        self._ready = asyncio.Event()
        self.closed = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def peer(self) -> str:
        return self._peer

    def send(self, frame: str | bytes) -> None:
        if self.closed:
            return
        if isinstance(frame, str):
            self._post(TEXT, text=frame)
        else:
            self._post(BINARY, data=frame)

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self._post(CLOSE, text=reason, code=code)
        self._end(LinkClosed(code, reason))

    def ping(self) -> None:
        if not self.closed:
            self._post(PING)

    async def receive(self) -> str | bytes | LinkClosed:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames[0]
        if isinstance(frame, LinkClosed):
            return frame  # stays: every later receive sees the end too
        self._frames.popleft()
        return frame

    def deliver(self, env: Envelope) -> None:
        if self.closed:
            return
        if env.seq <= self._received:
            self._bus.count("relay_duplicates")  # a batch written again after a failed attempt
            return
        if env.seq != self._received + 1:
            self._bus.count("relay_gaps")
            log.warning(
                "link %s: frame %d arrived, %d expected: relay lost, closing", self._id, env.seq, self._received + 1
            )
            self.close(CLOSE_LOST, "relay_lost")
            return
        self._received = env.seq
        if env.kind == CLOSE:
            self._end(LinkClosed(env.code, env.text))
        elif env.kind in (TEXT, BINARY):
            if len(self._frames) >= MAX_QUEUED_FRAMES:
                self._bus.count("relay_overflow")
                self.close(1008, "relay_overflow")
                return
            self._frames.append(env.text if env.kind == TEXT else env.data)
            self._ready.set()

    def lost(self) -> None:
        """The peer node is gone: end here (nothing can be sent there)."""
        self._end(LinkClosed(CLOSE_LOST, "relay_lost"))

    def _post(self, kind: int, *, text: str = "", code: int = 0, data: bytes = b"") -> None:
        self._sent += 1
        self._bus.post(self._peer, Envelope(kind, self._bus.node_id, self._id, self._sent, text, code, data))

    def _end(self, closed: LinkClosed) -> None:
        self.closed = True
        self._frames.append(closed)
        self._ready.set()
        self._bus.forget(self)


class Bus:
    """This node's links and calls; ``post(node, bytes)`` hands an encoded envelope to the transport."""

    def __init__(self, node_id: str, post: Callable[[str, bytes], None]) -> None:
        self.node_id = node_id
        self._post = post
        self.links: dict[str, BusLink] = {}
        self.on_link: LinkHandler = lambda link, hello: link.close(1013, "not ready")
        self.handlers: dict[str, CallHandler] = {}
        self._calls: dict[str, asyncio.Future[bytes]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def post(self, node: str, env: Envelope) -> None:
        if node == self.node_id:
            self.received(_encode(env))  # a call to ourselves (scatter-gather includes this node)
            return
        self._post(node, _encode(env))

    def open(self, peer: str, hello: bytes) -> BusLink:
        link = BusLink(self, f"{self.node_id}/{next(self._ids)}", peer)
        self.links[link.id] = link
        link._post(OPEN, data=hello)
        self.count("links_opened")
        return link

    def forget(self, link: BusLink) -> None:
        self.links.pop(link.id, None)

    async def call(self, node: str, method: str, body: bytes, timeout: float) -> bytes:
        call_id = f"{self.node_id}/c{next(self._ids)}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            self.post(node, Envelope(CALL, self.node_id, call_id, 0, method, 0, body))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self.count("calls_timed_out")
            raise RoutingError("node_timeout", f"node {node!r} did not answer {method!r} within {timeout:g}s") from None
        finally:
            self._calls.pop(call_id, None)

    def resync(self) -> None:
        """The transport is back after an outage: a ping per link finds the frames it lost."""
        for link in list(self.links.values()):
            link.ping()

    def drop_peer(self, node: str) -> int:
        gone = [link for link in self.links.values() if link.peer == node]
        for link in gone:
            link.lost()
        return len(gone)

    def received(self, raw: bytes) -> None:
        try:
            env = _decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.count("bad_envelopes")
            return
        self.count("envelopes_in")
        if env.kind == OPEN:
            if env.ref in self.links or env.seq != 1:
                self.count("bad_envelopes")
                return
            link = BusLink(self, env.ref, env.src)
            link._received = 1
            self.links[link.id] = link
            self.count("links_accepted")
            self.on_link(link, env.data)
        elif env.kind in (TEXT, BINARY, CLOSE, PING):
            existing = self.links.get(env.ref)
            if existing is not None:
                existing.deliver(env)
            elif env.kind != CLOSE:  # a link this node does not know (it restarted): tell the other end
                self._post(
                    env.src, _encode(Envelope(CLOSE, self.node_id, env.ref, env.seq + 1, "relay_lost", CLOSE_LOST))
                )
        elif env.kind == CALL:
            task = asyncio.get_running_loop().create_task(self._serve_call(env))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif env.kind in (REPLY, FAIL):
            future = self._calls.get(env.ref)
            if future is not None and not future.done():
                if env.kind == REPLY:
                    future.set_result(env.data)
                else:
                    future.set_exception(RoutingError(env.text or "call_failed", f"node {env.src!r}: {env.text}"))
        else:
            self.count("bad_envelopes")

    async def _serve_call(self, env: Envelope) -> None:
        handler = self.handlers.get(env.text)
        if handler is None:
            self.post(env.src, Envelope(FAIL, self.node_id, env.ref, 0, "unknown_method"))
            return
        try:
            reply = await handler(env.data)
        except Exception:
            log.exception("call %r from %s failed", env.text, env.src)
            self.post(env.src, Envelope(FAIL, self.node_id, env.ref, 0, "call_failed"))
            return
        self.post(env.src, Envelope(REPLY, self.node_id, env.ref, 0, "", 0, reply))
