"""Overuse detector with an adaptive threshold (draft-ietf-rmcat-gcc-02 §5.4-5.5, as in libwebrtc).

The trend is scaled by the number of deltas seen (up to 60) and a gain, then compared with a
threshold that follows the signal: it moves towards ``|modified trend|`` slowly upwards (``k_up``)
and faster downwards (``k_down``), per millisecond, clamped to [6, 600]. Without the adaptation a
fixed threshold either starves against a concurrent TCP flow (too low) or never fires (too high).
Overuse needs the signal over the threshold for ``overuse_time`` and two groups in a row with a
trend that is not falling; a value far over the threshold (a sudden capacity drop) is not learnt.
The adaptation step is capped at the distance to the signal (libwebrtc's per-ms gains times a
100 ms gap can exceed 1 and overshoot it).
"""

from __future__ import annotations

from roomcast.proto.bwe.common import BandwidthUsage, BweCounters

_NORMAL, _UNDER, _OVER = BandwidthUsage.NORMAL, BandwidthUsage.UNDERUSING, BandwidthUsage.OVERUSING


class OveruseDetector:
    __slots__ = (
        "_count",
        "_last_update",
        "_prev_trend",
        "_time_over",
        "counters",
        "gain",
        "k_down",
        "k_up",
        "max_adapt_offset",
        "overuse_time",
        "state",
        "threshold",
    )

    def __init__(
        self,
        counters: BweCounters,
        *,
        gain: float = 4.0,
        threshold: float = 12.5,
        k_up: float = 0.0087,
        k_down: float = 0.039,
        overuse_time: float = 0.010,
        max_adapt_offset: float = 15.0,
    ) -> None:
        self.counters = counters
        self.gain = gain
        self.threshold = threshold
        self.k_up = k_up * 1000  # per second
        self.k_down = k_down * 1000
        self.overuse_time = overuse_time
        self.max_adapt_offset = max_adapt_offset
        self.state = _NORMAL
        self._time_over = -1.0
        self._count = 0
        self._prev_trend = 0.0
        self._last_update = -1.0

    def detect(self, trend: float, num_deltas: int, send_delta: float, now: float) -> BandwidthUsage:
        """One group: its trend, the number of deltas the trendline has seen (itself included)."""
        if num_deltas < 2:
            return self.state
        modified = (num_deltas if num_deltas < 60 else 60) * trend * self.gain
        threshold = self.threshold
        if modified > threshold:
            self._time_over = send_delta / 2 if self._time_over < 0 else self._time_over + send_delta
            self._count += 1
            if self._time_over > self.overuse_time and self._count > 1 and trend >= self._prev_trend:
                self._time_over = 0.0
                self._count = 0
                if self.state is not _OVER:
                    self.counters.overuse += 1
                    self.state = _OVER
        elif modified < -threshold:
            self._time_over = -1.0
            self._count = 0
            self.state = _UNDER
        else:
            self._time_over = -1.0
            self._count = 0
            self.state = _NORMAL
        self._prev_trend = trend
        magnitude = modified if modified >= 0 else -modified  # now adapt the threshold
        last = self._last_update
        self._last_update = now
        if last >= 0 and magnitude <= threshold + self.max_adapt_offset:
            elapsed = now - last
            step = (self.k_down if magnitude < threshold else self.k_up) * (elapsed if elapsed < 0.1 else 0.1)
            threshold += (step if step < 1.0 else 1.0) * (magnitude - threshold)
            self.threshold = 6.0 if threshold < 6.0 else 600.0 if threshold > 600.0 else threshold
        return self.state
