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
  the measurement away. Overuse that outlasts the guard is acted on as usual;
- a standing queue under loss is overuse too: when a full drop-tail buffer neither grows nor
  shrinks, the delay gradient is flat and the loss looks random (the excess is dropped), so GCC
  alone can settle above the capacity with ``standing_queue`` seconds of extra delay and a loss
  rate in the loss controller's hold band. The least one-way delay of each feedback is compared
  with the least seen over the last 10-20 s; with loss over 2 % and a queue that deep, decrease.
"""

from __future__ import annotations

import math
from operator import sub

from roomcast.proto.bwe.acked_bitrate import AckedBitrateEstimator
from roomcast.proto.bwe.aimd import AimdRateControl
from roomcast.proto.bwe.common import BandwidthUsage, BweCounters
from roomcast.proto.bwe.inter_arrival import InterArrival
from roomcast.proto.bwe.overuse import OveruseDetector
from roomcast.proto.bwe.trendline import TrendlineFilter

_OVER = BandwidthUsage.OVERUSING


class DelayBasedBwe:
    __slots__ = (
        "_bucket_start",
        "_guard_until",
        "_owd_current",
        "_owd_previous",
        "aimd",
        "counters",
        "detector",
        "inter_arrival",
        "probe_guard",
        "standing_queue",
        "trendline",
    )

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
        standing_queue: float = 0.1,
    ) -> None:
        self.counters = counters
        self.probe_guard = probe_guard
        self.standing_queue = standing_queue
        self._guard_until = -1.0
        self._owd_current = self._owd_previous = math.inf  # least one-way delay, this and the last 10 s
        self._bucket_start = -1.0
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
        lossy: bool = False,
    ) -> float:
        """``lossy``: the loss controller sees more than its low threshold."""
        self.inter_arrival.update(send_times, arrival_times)
        usage = self.detector.state
        if send_times:
            owd = min(map(sub, arrival_times, send_times))  # the receiver's clock: only differences count
            if now - self._bucket_start >= 10.0:
                self._owd_previous, self._owd_current, self._bucket_start = self._owd_current, owd, now
            elif owd < self._owd_current:
                self._owd_current = owd
            if lossy and usage is not _OVER:
                floor = self._owd_current if self._owd_current < self._owd_previous else self._owd_previous
                if owd - floor > self.standing_queue:
                    usage = _OVER
                    self.counters.standing_queue += 1
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
