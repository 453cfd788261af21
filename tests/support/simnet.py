"""A deterministic simulated network for sans-IO tests: fake clock, impaired links, no sleeps, no asyncio.

Why: the proto machines take time as an argument, so a test can run minutes of lossy network in
milliseconds and get the same result every run. Every random choice comes from one seeded
``random.Random``; the same seed and the same inputs give the same packet schedule.

    net = SimNetwork(seed=1)
    net.link(a_addr, b_addr, loss=0.1, delay=0.02, jitter=0.01, duplicate=0.01, bandwidth=2e6)
    net.run_until(lambda: done(), [ep_a, ep_b], max_time=10)   # max_time is absolute fake time

Endpoints (:class:`Endpoint`) follow the proto shape and have an ``address``::

    handle_datagram(data, remote, now)   handle_timeout(now)   poll_transmit() -> Transmit | None
    poll_timeout() -> float | None       poll_event() -> object | None   (optional)

The driver jumps the clock to the next thing that happens (the earliest delivery or endpoint timer),
delivers every datagram due by then, calls ``handle_timeout`` on every endpoint whose timer is due, and
drains ``poll_transmit`` into the links and ``poll_event`` (when the endpoint has it) into
:attr:`SimNetwork.events` (read them with :meth:`SimNetwork.events_at`). A machine without addresses
(DTLS, SCTP) needs a small adapter that knows its peer, such as :class:`DtlsEndpoint`. Code outside the
driver (an SFU fake, a media source, an attacker) may inject datagrams with :meth:`SimNetwork.send`.

Link model, per direction (``link()`` sets both directions alike): a bandwidth cap first serialises the
datagram behind earlier ones (drop-tail when more than ``queue_bytes`` wait), then it is lost with
probability ``loss``, duplicated with probability ``duplicate``, and each copy arrives after
``delay + uniform(0, jitter)``; jitter therefore reorders. ``up=False`` (or :meth:`SimNetwork.set_up`)
is a blackhole. ``drop_if`` sees every datagram first, for targeted faults and tracing.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.dtls import DtlsConnection, DtlsEvent


class Endpoint(Protocol):
    address: Addr

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None: ...

    def handle_timeout(self, now: float) -> None: ...

    def poll_transmit(self) -> Transmit | None: ...

    def poll_timeout(self) -> float | None: ...


Endpoints = Sequence[Endpoint]


@runtime_checkable
class EventSource(Protocol):
    def poll_event(self) -> object | None: ...


@dataclass
class LinkConfig:
    """One direction of a link. ``bandwidth`` in bits/s (None: unlimited); ``queue_bytes`` is the
    bottleneck buffer (None: unbounded)."""

    loss: float = 0.0
    delay: float = 0.01
    jitter: float = 0.0
    duplicate: float = 0.0
    bandwidth: float | None = None
    queue_bytes: int | None = None
    up: bool = True
    busy_until: float = 0.0  # when the bottleneck finishes sending what is already queued


@dataclass
class SimNetwork:
    seed: int = 0
    now: float = 0.0
    links: dict[tuple[Addr, Addr], LinkConfig] = field(default_factory=dict)
    sent: int = 0
    lost: int = 0  # random loss, link down, drop_if, and queue overflow
    queue_dropped: int = 0
    duplicated: int = 0
    delivered: int = 0
    steps: int = 0
    max_steps: int = 2_000_000
    """More steps than this is a livelock (a timer that never moves on, two machines answering each
    other forever): the driver raises instead of hanging the test run."""
    events: dict[Addr, list[tuple[float, object]]] = field(default_factory=dict)
    drop_if: Callable[[Addr, Addr, bytes, float], bool] | None = None
    """A hook that sees every datagram ``(src, dst, data, now)`` before the link does; True drops it."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, Addr, Addr, bytes]] = []
        self._order = itertools.count()  # ties at the same instant keep send order

    # ------------------------------------------------------------------ topology

    def link(
        self,
        a: Addr,
        b: Addr,
        *,
        loss: float = 0.0,
        delay: float = 0.01,
        jitter: float = 0.0,
        duplicate: float = 0.0,
        bandwidth: float | None = None,
        queue_bytes: int | None = None,
        up: bool = True,
    ) -> LinkConfig:
        """Configure both directions between ``a`` and ``b``; returns the ``a -> b`` direction."""
        for src, dst in ((a, b), (b, a)):
            self.links[(src, dst)] = LinkConfig(loss, delay, jitter, duplicate, bandwidth, queue_bytes, up)
        return self.links[(a, b)]

    def set_up(self, a: Addr, b: Addr, up: bool) -> None:
        """Cut (``up=False``) or heal both directions; datagrams already in flight still arrive."""
        for key in ((a, b), (b, a)):
            self.links.setdefault(key, LinkConfig()).up = up

    # ------------------------------------------------------------------ datagrams

    def send(self, src: Addr, dst: Addr, data: bytes, now: float | None = None) -> None:
        """Put one datagram on the ``src -> dst`` link at ``now`` (default: the network's clock)."""
        at = self.now if now is None else now
        self.sent += 1
        cfg = self.links.get((src, dst))
        if cfg is None:
            cfg = self.links[(src, dst)] = LinkConfig()
        if not cfg.up or (self.drop_if is not None and self.drop_if(src, dst, data, at)):
            self.lost += 1
            return
        if cfg.bandwidth is not None:
            start = max(at, cfg.busy_until)
            if cfg.queue_bytes is not None and (start - at) * cfg.bandwidth / 8 + len(data) > cfg.queue_bytes:
                self.lost += 1
                self.queue_dropped += 1
                return
            cfg.busy_until = start + len(data) * 8 / cfg.bandwidth
            at = cfg.busy_until
        if self.rng.random() < cfg.loss:
            self.lost += 1
            return
        copies = 1
        if self.rng.random() < cfg.duplicate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            arrive = at + cfg.delay + (self.rng.uniform(0, cfg.jitter) if cfg.jitter else 0.0)
            heapq.heappush(self._queue, (arrive, next(self._order), src, dst, bytes(data)))

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def events_at(self, address: Addr) -> list[object]:
        """Events drained from the endpoint at ``address``, oldest first."""
        return [event for _, event in self.events.get(address, [])]

    # ------------------------------------------------------------------ driver

    def drain(self, endpoints: Endpoints) -> None:
        """Move every endpoint's pending transmits onto the links and its events into :attr:`events`."""
        for ep in endpoints:
            while (item := ep.poll_transmit()) is not None:
                self.send(ep.address, item.remote, item.data)
            if isinstance(ep, EventSource):
                while (event := ep.poll_event()) is not None:
                    self.events.setdefault(ep.address, []).append((self.now, event))

    def next_time(self, endpoints: Endpoints) -> float | None:
        times = [t for ep in endpoints if (t := ep.poll_timeout()) is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def step(self, endpoints: Endpoints, max_time: float) -> bool:
        """Advance to the next event and process it; False (clock at ``max_time``) when none is left."""
        self.drain(endpoints)
        at = self.next_time(endpoints)
        if at is None or at > max_time:
            self.now = max(self.now, max_time)
            return False
        self.steps += 1
        if self.steps > self.max_steps:
            raise RuntimeError(f"simnet livelock: {self.steps} steps by t={self.now:.3f}")
        self.now = max(self.now, at)
        by_addr = {ep.address: ep for ep in endpoints}
        while self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            target = by_addr.get(dst)
            if target is not None:
                self.delivered += 1
                target.handle_datagram(data, src, self.now)
                self.drain([target])
        for ep in endpoints:
            timeout = ep.poll_timeout()
            if timeout is not None and timeout <= self.now:
                ep.handle_timeout(self.now)
        self.drain(endpoints)
        return True

    def run_until(self, done: Callable[[], bool], endpoints: Endpoints, max_time: float = 30.0) -> bool:
        """Step until ``done()`` holds (True) or nothing is left to happen by ``max_time`` (``done()``)."""
        self.drain(endpoints)
        while not done():
            if not self.step(endpoints, max_time):
                return done()
        return True

    def run_for(self, duration: float, endpoints: Endpoints) -> None:
        """Let ``duration`` seconds of fake time pass, processing everything that happens."""
        self.run_until(lambda: False, endpoints, self.now + duration)


@dataclass
class DtlsEndpoint:
    """Adapter: a :class:`DtlsConnection` knows no addresses, so this one always talks to ``peer``."""

    address: Addr
    peer: Addr
    conn: DtlsConnection

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.conn.handle_datagram(data, now)

    def handle_timeout(self, now: float) -> None:
        self.conn.handle_timeout(now)

    def poll_transmit(self) -> Transmit | None:
        data = self.conn.poll_transmit()
        return None if data is None else Transmit(self.peer, data)

    def poll_timeout(self) -> float | None:
        return self.conn.poll_timeout()

    def poll_event(self) -> DtlsEvent | None:
        return self.conn.poll_event()
