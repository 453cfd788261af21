"""This node's part in a cluster (docs/deploy.md "Cluster"): the load it reports, where a WebSocket's room
lives, and relayed connections served here. With ``LocalRouting`` (no ``--redis-url``) every room is local
and none of this costs a lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from roomcast.rooms.manager import RoomManager
from roomcast.rooms.tokens import TokenError, verify
from roomcast.routing.api import Link, NodeLoad, Routing, RoutingError
from roomcast.signaling.remote import Hello

log = logging.getLogger("roomcast.cluster")


class LoadMeter:
    """Turns the media counters into forwarded packets per second between two heartbeats."""

    def __init__(self, forwarded: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        self.forwarded = forwarded
        self.clock = clock
        self._last = (clock(), forwarded())
        self.pps = 0.0

    def sample(self) -> float:
        now, count = self.clock(), self.forwarded()
        then, before = self._last
        if now - then >= 0.5:
            self.pps = max(0, count - before) / (now - then)
            self._last = (now, count)
        return self.pps


class Cluster:
    def __init__(
        self,
        routing: Routing,
        manager: RoomManager,
        keys: dict[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.routing = routing
        self.manager = manager
        self.keys = keys
        self.clock = clock
        self.meter: LoadMeter | None = None
        self.loop_lag: Callable[[], float] = lambda: 0.0
        self.serve_link: Callable[[Link, Hello], Coroutine[Any, Any, None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self) -> tuple[NodeLoad, list[str]]:
        rooms = list(self.manager.rooms)
        load = NodeLoad(
            participants=self.manager.participant_count(),
            rooms=len(rooms),
            forwarded_pps=self.meter.sample() if self.meter else 0.0,
            loop_lag=self.loop_lag(),
        )
        return load, rooms

    async def route(self, raw_token: str) -> str | None:
        """The node to relay this socket to, or None to serve it here (rooms hosted here, bad tokens: the
        local session refuses those with its usual typed error). Raises ``RoutingError``."""
        if not self.routing.clustered:
            return None
        try:
            token = verify(raw_token, self.keys, now=self.clock())
        except TokenError:
            return None
        room = token.grants.room
        if not room or room in self.manager.rooms:
            return None
        node = await self.routing.place(room)
        return None if node == self.routing.node_id else node

    def on_link(self, link: Link, hello: bytes) -> None:
        """A socket accepted by another node for a room of this node: run its session here."""
        try:
            parsed = msgspec.json.decode(hello, type=Hello)
        except (msgspec.DecodeError, msgspec.ValidationError):
            link.close(1008, "bad hello")
            return
        if self.serve_link is None:
            link.close(1013, "not ready")
            return
        task = asyncio.get_running_loop().create_task(self.serve_link(link, parsed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect(
        self, node: str, raw_token: str, client: str, protocol: str = "json", params: dict[str, str] | None = None
    ) -> Link:
        hello = Hello(token=raw_token, client=client, protocol=protocol, params=params or {})
        return await self.routing.connect(node, msgspec.json.encode(hello))


class RoutingCollector(Collector):
    """Routing's counters (links, envelopes, Redis errors, relay gaps) as metrics when scraped."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "roomcast_routing_events", "Cluster routing: links, envelopes, Redis errors, gaps", labels=["event"]
        )
        for name, value in sorted(self.routing.counters().items()):
            if name != "links_open":
                events.add_metric([name], value)
        yield events
        yield GaugeMetricFamily(
            "roomcast_relayed_links",
            "Signaling links to or from other nodes",
            value=self.routing.counters().get("links_open", 0),
        )


__all__ = ["Cluster", "LoadMeter", "RoutingCollector", "RoutingError"]
