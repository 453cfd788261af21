"""Trendline filter (libwebrtc's TrendlineEstimator; draft-ietf-rmcat-gcc-02 §5.3 uses a Kalman filter,
Chrome replaced it with this): is the queueing delay growing, and how fast?

Each group delta adds ``arrival delta - send delta`` to an accumulated delay, which is smoothed
exponentially (``smoothing``) and kept for the last ``window`` groups against their arrival time.
The slope of a least-squares line through that window is the trend: 0 when the queue is steady,
> 0 while it fills (we send faster than the bottleneck drains), < 0 while it drains.

The regression runs once per burst group, a few times per feedback, so its sums are kept running
(add the new point, subtract the evicted one) and recomputed exactly every ``REFRESH`` groups so
rounding cannot accumulate; x is kept relative to a base that moves forward with the window.
"""

from __future__ import annotations

from collections import deque
from operator import mul

REFRESH = 256
REBASE_AFTER = 60.0  # seconds of x before the base moves to the window's first point


class TrendlineFilter:
    __slots__ = (
        "_accumulated",
        "_base",
        "_points",
        "_smoothed",
        "_sx",
        "_sxx",
        "_sxy",
        "_sy",
        "_updates",
        "num_deltas",
        "smoothing",
        "trend",
        "window",
    )

    def __init__(self, *, window: int = 20, smoothing: float = 0.9) -> None:
        if window < 2:
            raise ValueError("the trendline needs a window of at least 2 groups")
        self.window = window
        self.smoothing = smoothing
        self._points: deque[tuple[float, float]] = deque()
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._base = -1.0
        self._updates = 0
        self.num_deltas = 0
        self.trend = 0.0

    def update(self, send_delta: float, arrival_delta: float, arrival_time: float) -> float:
        """Add one group delta (seconds); returns the trend (dimensionless slope, s of delay per s)."""
        if self.num_deltas < 1000:
            self.num_deltas += 1
        if self._base < 0:
            self._base = arrival_time
        self._accumulated += arrival_delta - send_delta
        y = self._smoothed = self.smoothing * self._smoothed + (1 - self.smoothing) * self._accumulated
        x = arrival_time - self._base
        points = self._points
        points.append((x, y))
        sx = self._sx = self._sx + x
        sy = self._sy = self._sy + y
        sxx = self._sxx = self._sxx + x * x
        sxy = self._sxy = self._sxy + x * y
        n = len(points)
        if n > self.window:
            ox, oy = points.popleft()
            sx = self._sx = sx - ox
            sy = self._sy = sy - oy
            sxx = self._sxx = sxx - ox * ox
            sxy = self._sxy = sxy - ox * oy
            n -= 1
        self._updates += 1
        if self._updates >= REFRESH or x > REBASE_AFTER:
            self._refresh()
        elif n == self.window:
            den = sxx - sx * sx / n
            if den > 1e-12:
                self.trend = (sxy - sx * sy / n) / den
        return self.trend

    def _refresh(self) -> None:
        """Exact sums again, with x relative to the window's first point."""
        points = self._points
        shift = points[0][0]
        self._base += shift
        xs = [x - shift for x, _ in points]
        ys = [y for _, y in points]
        self._points = deque(zip(xs, ys, strict=True))
        self._sx = sum(xs)
        self._sy = sum(ys)
        self._sxx = sum(map(mul, xs, xs))
        self._sxy = sum(map(mul, xs, ys))
        self._updates = 0
        n = len(xs)
        if n == self.window:
            den = self._sxx - self._sx * self._sx / n
            if den > 1e-12:
                self.trend = (self._sxy - self._sx * self._sy / n) / den
