"""Acknowledged bitrate: what the receiver says it got, as a smoothed rate (libwebrtc's
AcknowledgedBitrateEstimator / BitrateEstimator).

Acknowledged bytes are summed over windows of receive time (the first one longer, 500 ms, so a
start-up burst does not dominate; then 150 ms); each window's rate is a sample that moves the
estimate by a Bayesian update whose sample variance grows with the distance from the estimate, so
one odd window (a keyframe, a feedback gap) moves it little and a lasting change moves it quickly.
Rates are in kbit/s internally, which is what the noise constants are tuned for.

:attr:`AckedBitrateEstimator.recent` is the plain receive rate over the last ``recent_window``
(500 ms) instead, the "R_hat" of draft-ietf-rmcat-gcc-02 §5.5: while the path is overused the
bottleneck is busy all the time, so that rate *is* its capacity, and a decrease based on it tracks
a capacity drop at once where the smoothed estimate would lag for seconds.
"""

from __future__ import annotations

from collections import deque


class AckedBitrateEstimator:
    __slots__ = (
        "_bytes",
        "_estimate",
        "_last_arrival",
        "_recent",
        "_recent_bytes",
        "_var",
        "_window",
        "_window_start",
        "initial_window",
        "process_noise",
        "recent_window",
        "uncertainty_scale",
        "window",
    )

    def __init__(
        self,
        *,
        initial_window: float = 0.5,
        window: float = 0.15,
        uncertainty_scale: float = 10.0,
        process_noise: float = 5.0,
        recent_window: float = 0.5,
    ) -> None:
        self.initial_window = initial_window
        self.window = window
        self.uncertainty_scale = uncertainty_scale
        self.process_noise = process_noise
        self.recent_window = recent_window
        self._recent: deque[tuple[float, float, int]] = deque()  # per feedback: first, last arrival, bytes
        self._recent_bytes = 0
        self._estimate: float | None = None
        self._var = 50.0
        self._bytes = 0
        self._window = initial_window
        self._window_start = -1.0
        self._last_arrival = -1.0

    @property
    def bitrate(self) -> float | None:
        """bit/s, None until the first window closed."""
        return None if self._estimate is None else self._estimate * 1000

    @property
    def recent(self) -> float | None:
        """bit/s received over the last ``recent_window``; None while under half a window is known."""
        recent = self._recent
        if not recent:
            return None
        span = recent[-1][1] - recent[0][0]
        if span < self.recent_window / 2:
            return None
        return self._recent_bytes * 8 / span

    def update(self, arrival_times: list[float], sizes: list[int]) -> None:
        if not sizes:
            return
        first, last = arrival_times[0], arrival_times[-1]
        size = sum(sizes)
        recent = self._recent
        recent.append((first, last, size))
        self._recent_bytes += size
        while recent[0][1] < last - self.recent_window:
            self._recent_bytes -= recent.popleft()[2]
        if self._window_start < 0 or first - self._last_arrival > self._window:
            self._window_start = first  # the first packets, or after an idle gap: a fresh window
            self._bytes = 0
        self._bytes += size
        self._last_arrival = last
        span = last - self._window_start
        if span >= self._window:
            self._sample(self._bytes * 8 / span / 1000)
            self._window_start = last
            self._bytes = 0
            self._window = self.window

    def _sample(self, kbps: float) -> None:
        if self._estimate is None:
            self._estimate = kbps
            return
        estimate = self._estimate
        uncertainty = self.uncertainty_scale * abs(estimate - kbps) / max(estimate, 1.0)
        sample_var = uncertainty * uncertainty
        pred_var = self._var + self.process_noise
        total = sample_var + pred_var
        if total <= 0:
            self._estimate = kbps
            return
        self._estimate = (sample_var * estimate + pred_var * kbps) / total
        self._var = sample_var * pred_var / total
