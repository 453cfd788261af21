"""When to probe, how fast, and the send-side books of each probe cluster (libwebrtc's
ProbeController and BitrateProber, reduced to what an SFU needs).

Additive increase takes tens of seconds to climb from 300 kbit/s to 2 Mbit/s; a probe answers
"does the path carry X?" in one round trip: a short burst at X whose receive rate (see
:mod:`.probe_estimator`) is the path's rate when X exceeds it. Probes are asked for:

- at start: ``initial`` multiples of the start bitrate (3x and 6x), to find the capacity at once;
- after a good result (at least ``continue_ratio`` of the probed rate got through): again at
  twice the result, until ``max_bitrate`` (exponential search);
- every ``interval`` while the estimate sits below ``drop_ratio`` of the highest estimate of the
  last ``recovery_window`` (a drop the path may have recovered from, e.g. a cap lifted); and, with
  ``alr_probing``, while the sender is application-limited (it uses under 65 % of the estimate);
  not while loss is over the loss controller's low threshold: there loss, not rate, is the limit;
- on demand, :meth:`request`: the allocator wants to know whether a higher layer would fit.

The caller sends the packets (:class:`ProbeRequest` from :meth:`poll`); packets of the cluster are
reported back through :meth:`on_packet` so the cluster knows when it is complete.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from roomcast.proto.bwe.common import BweCounters, ProbeRequest


@dataclass(slots=True)
class ClusterBooks:
    request: ProbeRequest
    requested: float = -1.0  # first seen by handle_timeout (requests carry no time)
    started: float = -1.0
    sent_bytes: int = 0
    sent_packets: int = 0
    done: bool = False


class ProbeController:
    __slots__ = (
        "_clusters",
        "_next_id",
        "_next_periodic",
        "_pending",
        "active",
        "alr_probing",
        "continue_ratio",
        "counters",
        "drop_ratio",
        "duration",
        "interval",
        "max_bitrate",
        "min_packets",
        "peak",
        "peak_time",
        "recovery_window",
    )

    def __init__(
        self,
        counters: BweCounters,
        start_bitrate: float,
        max_bitrate: float,
        *,
        initial: tuple[float, ...] = (3.0, 6.0),
        duration: float = 0.03,
        min_packets: int = 5,
        continue_ratio: float = 0.7,
        interval: float = 3.0,
        drop_ratio: float = 0.66,
        recovery_window: float = 30.0,
        alr_probing: bool = False,
    ) -> None:
        self.counters = counters
        self.max_bitrate = max_bitrate
        self.duration = duration
        self.min_packets = min_packets
        self.continue_ratio = continue_ratio
        self.interval = interval
        self.drop_ratio = drop_ratio
        self.recovery_window = recovery_window
        self.alr_probing = alr_probing
        self.active = -1
        self._clusters: dict[int, ClusterBooks] = {}
        self._pending: deque[ProbeRequest] = deque()
        self._next_id = 0
        self._next_periodic = math.inf
        self.peak = start_bitrate
        self.peak_time = -math.inf  # the first estimate replaces it
        for factor in initial:
            self.request(start_bitrate * factor)

    def request(self, bitrate: float) -> ProbeRequest | None:
        """Queue a probe at ``bitrate`` (bounded by ``max_bitrate``); None when a probe is under way."""
        bitrate = min(bitrate, self.max_bitrate)
        if bitrate <= 0 or sum(not c.done for c in self._clusters.values()) >= 2:
            return None
        probe = ProbeRequest(
            self._next_id,
            int(bitrate),
            self.duration,
            self.min_packets,
            max(int(bitrate * self.duration / 8), 1),
        )
        self._next_id += 1
        self._pending.append(probe)
        self._clusters[probe.cluster_id] = ClusterBooks(probe)
        self.counters.probes_requested += 1
        return probe

    def poll(self) -> ProbeRequest | None:
        return self._pending.popleft() if self._pending else None

    def books(self, cluster_id: int) -> ClusterBooks | None:
        return self._clusters.get(cluster_id)

    def on_packet(self, cluster_id: int, size: int, now: float) -> None:
        """A packet of ``cluster_id`` went out; the first one makes it the active cluster."""
        books = self._clusters.get(cluster_id)
        if books is None or books.done:
            if cluster_id == self.active:
                self.active = -1
            return
        if books.started < 0:
            books.started = now
            self.active = cluster_id
        books.sent_bytes += size
        books.sent_packets += 1
        request = books.request
        if (
            books.sent_packets >= request.min_packets
            and books.sent_bytes >= request.min_bytes
            and now - books.started >= request.duration
        ):
            books.done = True
            if self.active == cluster_id:
                self.active = -1

    def on_result(self, cluster_id: int, bitrate: float | None, now: float) -> None:
        """The estimator measured a cluster (None: it could not); continue the search if it passed."""
        books = self._clusters.pop(cluster_id, None)
        if books is None:
            return
        if bitrate is None:
            self.counters.probe_failures += 1
            return
        self.counters.probe_results += 1
        if bitrate >= self.continue_ratio * books.request.bitrate and books.request.bitrate < self.max_bitrate:
            self.request(2 * bitrate)

    def on_estimate(self, target: float, now: float) -> None:
        """A new highest estimate (or the old peak is older than ``recovery_window``); the caller
        skips the call otherwise, it runs per feedback."""
        self.peak = target
        self.peak_time = now
        if self._next_periodic == math.inf:
            self._next_periodic = now + self.interval

    def handle_timeout(self, now: float, target: float, acked: float | None, low_loss: bool = True) -> None:
        """Expire clusters; start a periodic probe when due (not on a lossy path: loss caps the
        estimate there, and a probe measures rate, not loss)."""
        for cluster_id, books in list(self._clusters.items()):
            if books.started < 0:  # asked for, not sent yet
                if books.requested < 0:
                    books.requested = now
                elif now - books.requested >= 1.0:
                    self._drop(cluster_id)
                continue
            if not books.done and now - books.started >= 1.0 + books.request.duration:
                books.done = True  # the caller stopped sending it: measure what went out
                if self.active == cluster_id:
                    self.active = -1
            if now - books.started >= 2.0:  # its feedback never gave a result
                self._drop(cluster_id)
        if now < self._next_periodic:
            return
        self._next_periodic = now + self.interval
        dropped = target < self.drop_ratio * self.peak and now - self.peak_time <= self.recovery_window
        limited = self.alr_probing and acked is not None and acked < 0.65 * target
        if (dropped or limited) and low_loss and target < self.max_bitrate:
            self.request(2 * target)

    def _drop(self, cluster_id: int) -> None:
        self._clusters.pop(cluster_id, None)
        self._pending = deque(p for p in self._pending if p.cluster_id != cluster_id)
        if self.active == cluster_id:
            self.active = -1
        self.counters.probe_failures += 1

    def poll_timeout(self) -> float | None:
        deadlines = [self._next_periodic] if self._next_periodic < math.inf else []
        for books in self._clusters.values():
            if books.started >= 0:
                deadlines.append(books.started + (2.0 if books.done else 1.0 + books.request.duration))
            elif books.requested >= 0:
                deadlines.append(books.requested + 1.0)
        return min(deadlines) if deadlines else None
