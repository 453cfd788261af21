"""The delay-based estimate: burst groups -> trendline -> overuse detector -> AIMD (draft-ietf-rmcat-
gcc-02 §5, libwebrtc's DelayBasedBwe).

Per feedback: the packets update the groups (each completed group updates the trendline and the
detector); then the detector's verdict drives the rate controller once. A probe result, when the
path is not overusing, replaces the estimate: it is a measurement, the controller only a search.

Two choices of ours on top of libwebrtc's structure:

- a decrease uses the smaller of the smoothed acknowledged bitrate and the plain receive rate of
  the last 500 ms (draft §5.5's R_hat): after a capacity drop the smoothed one lags for seconds;
- for ``probe_guard`` seconds after a probe result raised the estimate, overuse does not
  decrease it: the probe's own burst (above capacity, by design) queues for a moment, and the
  acknowledged bitrate still shows the rate from before the probe, so a decrease then would throw
  the measurement away. Overuse that outlasts the guard is acted on as usual.
"""

from __future__ import annotations

from roomcast.proto.bwe.acked_bitrate import AckedBitrateEstimator
from roomcast.proto.bwe.aimd import AimdRateControl
from roomcast.proto.bwe.common import BandwidthUsage, BweCounters
from roomcast.proto.bwe.inter_arrival import InterArrival
from roomcast.proto.bwe.overuse import OveruseDetector
from roomcast.proto.bwe.trendline import TrendlineFilter

_OVER = BandwidthUsage.OVERUSING


class DelayBasedBwe:
    __slots__ = ("_guard_until", "aimd", "detector", "inter_arrival", "probe_guard", "trendline")

    def __init__(
        self,
        counters: BweCounters,
        start_bitrate: float,
        min_bitrate: float,
        max_bitrate: float,
        *,
        beta: float = 0.85,
        window: int = 20,
        probe_guard: float = 0.5,
    ) -> None:
        self.probe_guard = probe_guard
        self._guard_until = -1.0
        self.detector = OveruseDetector(counters)
        self.trendline = TrendlineFilter(window=window)
        self.inter_arrival = InterArrival(self._on_group, counters)
        self.aimd = AimdRateControl(counters, start_bitrate, min_bitrate, max_bitrate, beta)

    def _on_group(self, send_delta: float, arrival_delta: float, arrival_time: float) -> None:
        trendline = self.trendline
        trend = trendline.update(send_delta, arrival_delta, arrival_time)
        self.detector.detect(trend, trendline.num_deltas, send_delta, arrival_time)

    @property
    def usage(self) -> BandwidthUsage:
        return self.detector.state

    @property
    def bitrate(self) -> float:
        return self.aimd.current

    def update(
        self,
        send_times: list[float],
        arrival_times: list[float],
        acked_bitrate: AckedBitrateEstimator,
        probe: float | None,
        now: float,
    ) -> float:
        self.inter_arrival.update(send_times, arrival_times)
        usage = self.detector.state
        aimd = self.aimd
        acked = acked_bitrate.bitrate
        if usage is _OVER:
            if now < self._guard_until:
                return aimd.current
            recent = acked_bitrate.recent
            throughput = acked if recent is None or (acked is not None and acked < recent) else recent
            if throughput is not None and aimd.time_to_reduce_further(now, throughput):
                aimd.update(usage, throughput, now)
            elif throughput is None and aimd.time_to_reduce_further(now, aimd.current):
                aimd.update(usage, None, now)
        elif probe is not None:
            if probe > aimd.current:
                self._guard_until = now + self.probe_guard
            aimd.set_estimate(probe, now)
        else:
            aimd.update(usage, acked, now)
        return aimd.current
