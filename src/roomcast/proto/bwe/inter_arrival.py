"""Inter-arrival deltas of burst groups (draft-ietf-rmcat-gcc-02 §5.2, libwebrtc's InterArrivalDelta).

A video frame leaves as a burst and the queueing delay of its last packet is what matters, so
packets are grouped: a group is the packets sent within ``group_length`` (5 ms) of its first one,
plus packets that arrive within ``burst_length`` of the group's last one *faster than they were
sent* (a queue draining: same congestion, same group), up to ``max_burst`` of arrival time. For
every two consecutive groups the sink gets ``(send delta, arrival delta, arrival time)`` of their
last packets; arrival delta minus send delta is the change in queueing delay the trendline fits.
"""

from __future__ import annotations

from collections.abc import Callable

from roomcast.proto.bwe.common import BweCounters

DeltaSink = Callable[[float, float, float], None]
NAN = float("nan")


class InterArrival:
    __slots__ = (
        "_first_arrival",
        "_first_send",
        "_have_prev",
        "_last_arrival",
        "_last_send",
        "_prev_arrival",
        "_prev_send",
        "_sink",
        "burst_length",
        "counters",
        "group_length",
        "max_burst",
        "reset_offset",
    )

    def __init__(
        self,
        sink: DeltaSink,
        counters: BweCounters,
        *,
        group_length: float = 0.005,
        burst_length: float = 0.005,
        max_burst: float = 0.1,
        reset_offset: float = 3.0,
    ) -> None:
        self._sink = sink
        self.counters = counters
        self.group_length = group_length
        self.burst_length = burst_length
        self.max_burst = max_burst
        self.reset_offset = reset_offset
        """An arrival delta this much larger than its send delta is a clock jump or a long outage:
        start over instead of feeding it to the trendline."""
        self.reset()

    def reset(self) -> None:
        # NaN compares false with everything, so the first packet starts a group without a branch
        self._first_send = self._last_send = self._first_arrival = self._last_arrival = NAN
        self._prev_send = self._prev_arrival = NAN
        self._have_prev = False

    def update(self, send_times: list[float], arrival_times: list[float]) -> None:
        """Feed one feedback's packets (arrival order); completed groups go to the sink."""
        fs, ls, fa, la = self._first_send, self._last_send, self._first_arrival, self._last_arrival
        ps, pa, have_prev = self._prev_send, self._prev_arrival, self._have_prev
        group, burst, max_burst, sink = self.group_length, self.burst_length, self.max_burst, self._sink
        limit = fs + group
        for s, a in zip(send_times, arrival_times, strict=True):
            if fs <= s <= limit:
                if s > ls:
                    ls = s
                la = a
                continue
            if s < fs:  # sent before the current group began: reordered, says nothing new
                self.counters.reordered += 1
                continue
            ad = a - la
            if ad < burst and ad < s - ls and a - fa < max_burst:
                ls, la = s, a
                continue
            if la == la:  # a group was open: it is complete now
                if have_prev:
                    send_delta, arrival_delta = ls - ps, la - pa
                    if arrival_delta - send_delta > self.reset_offset or arrival_delta < 0:
                        have_prev = False  # clock jump or outage: start the comparison over
                    else:
                        sink(send_delta, arrival_delta, la)
                ps, pa, have_prev = ls, la, True
            fs = ls = s
            fa = la = a
            limit = s + group
        self._first_send, self._last_send, self._first_arrival, self._last_arrival = fs, ls, fa, la
        self._prev_send, self._prev_arrival, self._have_prev = ps, pa, have_prev
