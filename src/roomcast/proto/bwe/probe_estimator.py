"""What a probe cluster measured (libwebrtc's ProbeBitrateEstimator).

Per cluster: the send rate over its packets' send span (the last packet's bytes excluded: the
span ends when it starts) and the receive rate over their arrival span (the first packet's bytes
excluded: the span starts when it has arrived). When the path carries the probed rate, both
agree; when it does not, the bottleneck spaced the packets out and the receive rate is the path's
rate. The result is the smaller, and 95 % of the receive rate when that is clearly below the send
rate (we found the capacity: aim just under it). A cluster is measured once most of it (80 % of
the packets and bytes sent) has been reported; a receive rate over twice the send rate is noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from roomcast.proto.bwe.probe_controller import ProbeController


@dataclass(slots=True)
class _Received:
    first_send: float
    last_send: float
    last_send_size: int
    first_arrival: float
    first_arrival_size: int
    last_arrival: float
    size: int = 0
    packets: int = 0


class ProbeEstimator:
    __slots__ = ("_received", "controller", "max_interval", "max_ratio", "min_received", "unsaturated", "utilization")

    def __init__(
        self,
        controller: ProbeController,
        *,
        min_received: float = 0.8,
        max_ratio: float = 2.0,
        unsaturated: float = 0.9,
        utilization: float = 0.95,
        max_interval: float = 1.0,
    ) -> None:
        self.controller = controller
        self.min_received = min_received
        self.max_ratio = max_ratio
        self.unsaturated = unsaturated
        self.utilization = utilization
        self.max_interval = max_interval
        self._received: dict[int, _Received] = {}

    def update(
        self, send_times: list[float], arrival_times: list[float], sizes: list[int], clusters: list[int], now: float
    ) -> float | None:
        """Account one feedback's probe packets; the newest cluster result (bit/s), if one completed."""
        touched: set[int] = set()
        for k, cluster in enumerate(clusters):
            if cluster < 0:
                continue
            s, a, z = send_times[k], arrival_times[k], sizes[k]
            r = self._received.get(cluster)
            if r is None:
                if self.controller.books(cluster) is None:
                    continue  # already measured or given up
                r = self._received[cluster] = _Received(s, s, z, a, z, a)
            if s < r.first_send:
                r.first_send = s
            if s >= r.last_send:
                r.last_send, r.last_send_size = s, z
            if a < r.first_arrival:
                r.first_arrival, r.first_arrival_size = a, z
            if a > r.last_arrival:
                r.last_arrival = a
            r.size += z
            r.packets += 1
            touched.add(cluster)
        result: float | None = None
        for cluster in sorted(touched):
            books = self.controller.books(cluster)
            r = self._received[cluster]
            if books is None:
                del self._received[cluster]
                continue
            if not books.done or r.packets < self.min_received * books.sent_packets:
                continue
            if r.size < self.min_received * books.sent_bytes:
                continue
            rate = self._rate(r)
            del self._received[cluster]
            self.controller.on_result(cluster, rate, now)
            if rate is not None:
                result = rate
        for cluster in [c for c in self._received if self.controller.books(c) is None]:
            del self._received[cluster]  # the controller gave up on it
        return result

    def _rate(self, r: _Received) -> float | None:
        send_interval = r.last_send - r.first_send
        receive_interval = r.last_arrival - r.first_arrival
        if not (0 < send_interval <= self.max_interval and 0 < receive_interval <= self.max_interval):
            return None
        send_rate = (r.size - r.last_send_size) * 8 / send_interval
        receive_rate = (r.size - r.first_arrival_size) * 8 / receive_interval
        if send_rate <= 0 or receive_rate / send_rate > self.max_ratio:
            return None
        if receive_rate < self.unsaturated * send_rate:
            return self.utilization * receive_rate
        return min(send_rate, receive_rate)
