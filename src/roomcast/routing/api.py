"""What the rest of Roomcast asks of routing: which node hosts a room, a signaling connection relayed to that
node, calls to another node, and the node registry with each node's load.

A room lives whole on one node (its participants' sessions, its SFU router, its data routing): placement
decides where, and a WebSocket that lands on another node is relayed there as a :class:`Link`. Cross-
participant delivery therefore stays inside the owner's ``rooms.RoomManager``; only connections and admin
calls cross nodes. Implementations: ``routing.local.LocalRouting`` (one process, the default) and
``routing.redis.RedisRouting`` (nodes and workers sharing a Redis). Nothing outside ``routing/`` knows Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


class RoutingError(Exception):
    """The coordination engine cannot answer (unreachable, timed out, the peer node gone)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What placement weighs: a node's participants, forwarded RTP packets per second and event-loop lag."""

    participants: int = 0
    rooms: int = 0
    forwarded_pps: float = 0.0
    loop_lag: float = 0.0

    def score(self) -> float:
        """Lower is better. Participants cost signaling and media state; forwarded packets are the CPU; a
        loop lagging over 100 ms (worst in the last second) is overloaded whatever the counts say (each
        further 10 ms counts as a participant; short stalls of a shared machine do not sway placement);
        rooms break ties (placement adds one at once, so a burst of new rooms spreads)."""
        lag_penalty = 100.0 * max(0.0, self.loop_lag - 0.1)
        return self.participants + self.forwarded_pps / 100.0 + lag_penalty + 0.5 * self.rooms


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    load: NodeLoad = field(default_factory=NodeLoad)
    rooms: tuple[str, ...] = ()
    draining: bool = False
    media: str = ""  # announced media address(es), "ip:port" (display only: clients learn it from the answer)
    started_at: float = 0.0


@dataclass(frozen=True, slots=True)
class LinkClosed:
    """The end of a :class:`Link`, with a WebSocket close code and reason."""

    code: int
    reason: str


class Link(Protocol):
    """A relayed signaling connection between the node holding the client's socket and the room's node.
    Frames arrive in order; a lost frame (the engine restarted) ends the link (``LinkClosed(1012, ...)``)
    instead of going unnoticed, so the client resumes its session."""

    @property
    def id(self) -> str: ...

    @property
    def peer(self) -> str: ...

    def send(self, frame: str | bytes) -> None:
        """Queue a text or binary frame for the peer; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """End the link on both sides (idempotent)."""

    async def receive(self) -> str | bytes | LinkClosed: ...


# A relayed connection arrived for this node: (link, the opening side's hello bytes).
LinkHandler = Callable[[Link, bytes], None]
# A call from another node: request body -> reply body.
CallHandler = Callable[[bytes], Awaitable[bytes]]
# What the node reports each heartbeat: its load and the rooms it hosts (their ownership is renewed).
LoadSource = Callable[[], tuple[NodeLoad, list[str]]]


class Routing(Protocol):
    @property
    def node_id(self) -> str: ...

    @property
    def clustered(self) -> bool:
        """False for the one-process default: callers may skip the cluster paths."""

    async def start(self, load: LoadSource, on_link: LinkHandler, media: str = "") -> None: ...

    async def stop(self) -> None:
        """Leave the registry and release this node's rooms (clean shutdown)."""

    async def place(self, room: str) -> str:
        """The node hosting ``room``; if none does (or its node is gone), claim it atomically for the least
        loaded live node that is not draining and return that."""

    async def owner(self, room: str) -> str | None:
        """The node hosting ``room``, without claiming it."""

    async def connect(self, node: str, hello: bytes) -> Link:
        """Open a relayed connection to ``node``; its ``LinkHandler`` gets ``hello``."""

    async def call(self, node: str, method: str, body: bytes, timeout: float = 3.0) -> bytes:
        """Run ``method`` on ``node`` (a handler registered with :meth:`serve`) and return its reply."""

    def serve(self, method: str, handler: CallHandler) -> None: ...

    async def nodes(self) -> list[NodeInfo]:
        """Every live node of the cluster (this one included)."""

    def set_draining(self) -> None:
        """New rooms go elsewhere from the next heartbeat on; this node's rooms stay."""

    def counters(self) -> dict[str, int]: ...
