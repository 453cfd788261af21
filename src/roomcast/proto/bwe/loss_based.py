"""Loss-based controller (draft-ietf-rmcat-gcc-02 §6, libwebrtc's SendSideBandwidthEstimation).

Loss is measured over at least ``min_packets`` reported packets and ``min_interval`` of reports
(fewer say nothing: 3 of 20 packets is noise, not 15 % loss, and the 2 %/10 % thresholds were made
for receiver reports, about one a second). Under
``low_loss`` (2 %) the estimate may grow, at most 8 %/s, compounding; over ``high_loss`` (10 %) it
drops to ``(1 - loss / 2)`` of itself, at most once per 300 ms + RTT and only on a fresh report, so
one bad report is acted on once; in between it holds (random loss that low is the path, not us).
The result never exceeds ``upper_limit`` (the delay-based estimate, or REMB): loss can only lower
the target, the delay signal decides how high it goes.
"""

from __future__ import annotations

import math

from roomcast.proto.bwe.common import BweCounters


class LossBasedControl:
    __slots__ = (
        "_expected",
        "_fresh",
        "_interval_start",
        "_last_decrease",
        "_last_update",
        "_lost",
        "counters",
        "estimate",
        "fraction",
        "high_loss",
        "low_loss",
        "max_bitrate",
        "min_bitrate",
        "min_interval",
        "min_packets",
        "rtt",
    )

    def __init__(
        self,
        counters: BweCounters,
        start_bitrate: float,
        min_bitrate: float,
        max_bitrate: float,
        *,
        low_loss: float = 0.02,
        high_loss: float = 0.10,
        min_packets: int = 20,
        min_interval: float = 0.5,
    ) -> None:
        self.counters = counters
        self.min_bitrate = min_bitrate
        self.max_bitrate = max_bitrate
        self.estimate = min(max(start_bitrate, min_bitrate), max_bitrate)
        self.low_loss = low_loss
        self.high_loss = high_loss
        self.min_packets = min_packets
        self.min_interval = min_interval
        self._interval_start = -1.0
        self.fraction = 0.0
        self.rtt = 0.2
        self._lost = 0
        self._expected = 0
        self._fresh = False
        self._last_decrease = -math.inf
        self._last_update = -1.0

    def on_packets(self, lost: int, expected: int, now: float) -> None:
        """Transport-cc: packets newly reported (``expected``), of which ``lost`` had not arrived."""
        self._lost += lost
        self._expected += expected
        if self._interval_start < 0:
            self._interval_start = now
        if self._expected >= self.min_packets and now - self._interval_start >= self.min_interval:
            self._interval_start = now
            self.fraction = min(max(self._lost / self._expected, 0.0), 1.0)
            self._lost = self._expected = 0
            self._fresh = True

    def on_fraction(self, fraction: float) -> None:
        """A receiver report's fraction lost (RFC 3550 §6.4.1), already a per-interval figure."""
        self.fraction = min(max(fraction, 0.0), 1.0)
        self._fresh = True

    def low(self) -> bool:
        """Loss under ``low_loss``: nothing speaks against a higher rate."""
        return self.fraction < self.low_loss

    def reset(self, bitrate: float) -> None:
        """A probe measured the path: start from that."""
        self.estimate = min(max(bitrate, self.min_bitrate), self.max_bitrate)

    def update(self, now: float, upper_limit: float) -> float:
        elapsed = 0.0 if self._last_update < 0 else min(max(now - self._last_update, 0.0), 1.0)
        self._last_update = now
        if self.fraction < self.low_loss:
            self.estimate = self.estimate * 1.08**elapsed + 1000 * elapsed
        elif self.fraction > self.high_loss and self._fresh and now - self._last_decrease >= 0.3 + self.rtt:
            self.estimate *= 1 - self.fraction / 2
            self._last_decrease = now
            self._fresh = False
            self.counters.loss_decreases += 1
        self.estimate = min(max(min(self.estimate, upper_limit), self.min_bitrate), self.max_bitrate)
        return self.estimate
