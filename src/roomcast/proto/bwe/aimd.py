"""AIMD rate controller of the delay-based estimate (draft-ietf-rmcat-gcc-02 §5.5, libwebrtc's
AimdRateControl), with a link-capacity estimate that decides how to increase.

- Overuse: decrease to ``beta`` (0.85) x the acknowledged bitrate, which during overuse is what the
  bottleneck actually carries, so the queue drains; then hold. A decrease is repeated only after a
  round trip (the first one has not taken effect yet) unless the throughput fell below half.
- Underuse: hold (the queue is draining; increasing now would refill it).
- Normal: increase. Far from the last known capacity (no estimate, or the throughput left its
  3-sigma band) multiplicatively, 8 %/s; near it additively, about one packet per response time
  (RTT + 100 ms), so the controller creeps into the capacity instead of overshooting it.
- Never increase beyond 1.5 x the acknowledged bitrate + 10 kbit/s: an application-limited sender
  (an SFU forwarding fixed layers) must not talk the estimate into rates it never tried.
"""

from __future__ import annotations

import math
from enum import IntEnum

from roomcast.proto.bwe.common import BandwidthUsage, BweCounters


class RateControlState(IntEnum):
    HOLD = 0
    INCREASE = 1
    DECREASE = 2


_OVER, _UNDER = BandwidthUsage.OVERUSING, BandwidthUsage.UNDERUSING
_HOLD, _INCREASE, _DECREASE = RateControlState.HOLD, RateControlState.INCREASE, RateControlState.DECREASE


class LinkCapacity:
    """Exponentially smoothed throughput at overuse events, with its normalised variance (kbit/s)."""

    __slots__ = ("deviation", "estimate")

    def __init__(self) -> None:
        self.estimate: float | None = None
        self.deviation = 0.4

    def _band(self) -> float:
        assert self.estimate is not None
        return 3 * math.sqrt(self.estimate * self.deviation)

    def upper_bound(self) -> float:
        return math.inf if self.estimate is None else (self.estimate + self._band()) * 1000

    def lower_bound(self) -> float:
        return 0.0 if self.estimate is None else max(self.estimate - self._band(), 0.0) * 1000

    def on_overuse(self, throughput_bps: float, alpha: float = 0.05) -> None:
        sample = throughput_bps / 1000
        if self.estimate is None:
            self.estimate = sample
        else:
            self.estimate = (1 - alpha) * self.estimate + alpha * sample
        error = self.estimate - sample
        deviation = (1 - alpha) * self.deviation + alpha * error * error / max(self.estimate, 1.0)
        self.deviation = min(max(deviation, 0.4), 2.5)

    def reset(self) -> None:
        self.estimate = None


class AimdRateControl:
    __slots__ = (
        "_last_change",
        "_last_decrease",
        "beta",
        "counters",
        "current",
        "link",
        "max_bitrate",
        "min_bitrate",
        "rtt",
        "state",
    )

    def __init__(
        self, counters: BweCounters, start_bitrate: float, min_bitrate: float, max_bitrate: float, beta: float = 0.85
    ) -> None:
        self.counters = counters
        self.min_bitrate = min_bitrate
        self.max_bitrate = max_bitrate
        self.beta = beta
        self.current = min(max(start_bitrate, min_bitrate), max_bitrate)
        self.state = RateControlState.HOLD
        self.link = LinkCapacity()
        self.rtt = 0.2
        self._last_change = -math.inf
        self._last_decrease = -math.inf

    def set_estimate(self, bitrate: float, now: float) -> None:
        """A measured rate (a probe result) replaces the estimate outright."""
        self.current = min(max(bitrate, self.min_bitrate), self.max_bitrate)
        self._last_change = now

    def time_to_reduce_further(self, now: float, acked: float) -> bool:
        """Still overusing after a decrease: only decrease again once it had a round trip to act."""
        if now - self._last_decrease >= min(max(self.rtt, 0.01), 0.2):
            return True
        return acked < 0.5 * self.current

    def update(self, usage: BandwidthUsage, acked: float | None, now: float) -> float:
        state = self.state
        if usage is _OVER:
            state = _DECREASE
        elif usage is _UNDER:
            state = _HOLD
        elif state is _HOLD:
            state = _INCREASE
            self._last_change = now
        current = new = self.current
        if state is _INCREASE:
            link = self.link
            if link.estimate is not None and acked is not None and acked > link.upper_bound():
                link.reset()  # the path carries more than we thought: search again
            elapsed = now - self._last_change
            elapsed = 0.0 if elapsed < 0 else 1.0 if elapsed > 1.0 else elapsed
            if link.estimate is not None:
                new = current + self._additive_rate(current) * elapsed
            else:
                new = current + max(current * (1.08**elapsed - 1), 1000 * elapsed)
            if acked is not None:
                ceiling = 1.5 * acked + 10_000
                if new > ceiling:
                    new = current if current > ceiling else ceiling
            self._last_change = now
        elif state is _DECREASE:
            if acked is not None:
                link = self.link
                decreased = self.beta * acked
                if decreased > current and link.estimate is not None:
                    decreased = self.beta * link.estimate * 1000
                if decreased < current:
                    new = decreased
                if acked < link.lower_bound():
                    link.reset()  # far below what the path carried: the capacity changed
                link.on_overuse(acked)
            else:
                new = current * self.beta
            self.counters.delay_decreases += 1
            state = _HOLD
            self._last_change = self._last_decrease = now
        self.state = state
        self.current = new = self.min_bitrate if new < self.min_bitrate else min(new, self.max_bitrate)
        return new

    def _additive_rate(self, bitrate: float) -> float:
        """bit/s per second: one average-sized packet of a 30 fps stream per response time."""
        frame_bits = bitrate / 30
        packets = max(math.ceil(frame_bits / (1200 * 8)), 1)
        return max(4000.0, (frame_bits / packets) / (self.rtt + 0.1))
