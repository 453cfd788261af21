"""A deterministic simulated network for sans-IO tests: fake clock, lossy links, no sleeps.

    net = SimNetwork(seed=1)
    net.link(a_addr, b_addr, loss=0.1, delay=0.02, jitter=0.01, duplicate=0.01)
    net.run_until(lambda: done(), [ep_a, ep_b], max_time=10)

Endpoints follow the proto shape (``handle_datagram(data, remote, now)``, ``handle_timeout(now)``,
``poll_transmit() -> Transmit | None``, ``poll_timeout()``) and have an ``address``. The driver always
jumps the clock to the next thing that happens: a delivery or an endpoint's timer.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from roomcast.proto.common import Addr, Transmit


class Endpoint(Protocol):
    address: Addr

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None: ...

    def handle_timeout(self, now: float) -> None: ...

    def poll_transmit(self) -> Transmit | None: ...

    def poll_timeout(self) -> float | None: ...


@dataclass
class LinkConfig:
    loss: float = 0.0
    delay: float = 0.01
    jitter: float = 0.0
    duplicate: float = 0.0
    up: bool = True


@dataclass
class SimNetwork:
    seed: int = 0
    now: float = 0.0
    links: dict[tuple[Addr, Addr], LinkConfig] = field(default_factory=dict)
    sent: int = 0
    lost: int = 0
    delivered: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, Addr, Addr, bytes]] = []
        self._order = itertools.count()

    def link(self, a: Addr, b: Addr, **config: float | bool) -> LinkConfig:
        """Configure both directions between ``a`` and ``b`` (same settings each way)."""
        forward = LinkConfig(**config)  # type: ignore[arg-type]
        self.links[(a, b)] = forward
        self.links[(b, a)] = LinkConfig(**config)  # type: ignore[arg-type]
        return forward

    def send(self, src: Addr, dst: Addr, data: bytes) -> None:
        self.sent += 1
        cfg = self.links.get((src, dst), LinkConfig())
        if not cfg.up or self.rng.random() < cfg.loss:
            self.lost += 1
            return
        copies = 2 if self.rng.random() < cfg.duplicate else 1
        for _ in range(copies):
            at = self.now + cfg.delay + self.rng.uniform(0, cfg.jitter)  # jitter reorders
            heapq.heappush(self._queue, (at, next(self._order), src, dst, data))

    def _drain(self, endpoints: Sequence[Endpoint]) -> None:
        for ep in endpoints:
            while (item := ep.poll_transmit()) is not None:
                self.send(ep.address, item.remote, item.data)

    def step(self, endpoints: Sequence[Endpoint], max_time: float) -> bool:
        """Advance to the next event; False when nothing is left to happen before ``max_time``."""
        self._drain(endpoints)
        by_addr = {ep.address: ep for ep in endpoints}
        timers = [(t, ep) for ep in endpoints if (t := ep.poll_timeout()) is not None]
        next_timer = min((t for t, _ in timers), default=None)
        next_packet = self._queue[0][0] if self._queue else None
        candidates = [t for t in (next_timer, next_packet) if t is not None]
        if not candidates or min(candidates) > max_time:
            return False
        self.now = max(self.now, min(candidates))
        if next_packet is not None and next_packet <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            target = by_addr.get(dst)
            if target is not None:
                self.delivered += 1
                target.handle_datagram(data, src, self.now)
        for t, ep in timers:
            if t <= self.now:
                ep.handle_timeout(self.now)
        self._drain(endpoints)
        return True

    def run_until(self, done: Callable[[], bool], endpoints: Sequence[Endpoint], max_time: float = 30.0) -> bool:
        while not done():
            if not self.step(endpoints, max_time):
                return done()
        return True
