"""Transport-wide sequence numbers on the send side, and what transport-cc feedback says about them.

draft-holmer-rmcat-transport-wide-cc-extensions-01: every packet a transport sends carries one
16-bit sequence number shared by all its streams (§2), and the receiver reports, per sequence
number, whether and when it arrived (§3.1). :class:`TwccSender` hands out those numbers and keeps
send time, size and probe cluster of the last ``capacity`` packets in fixed rings (a few list stores
per packet, no per-packet object), then turns each feedback into columns of (send time, arrival
time, size) for the packets it reports received, plus loss counts.

What feedback may do, and what happens:

- report a packet lost, then received (reordering across feedbacks): counted recovered, used;
- report a packet received twice (overlapping or repeated feedback): the second is a duplicate;
- report packets older than the ring (very late feedback): counted unknown, skipped;
- report packets never sent (corrupt or foreign feedback): dropped whole, counted bogus;
- wrap the 16-bit sequence number or the 24-bit reference time: both unwrapped here, the sequence
  number against the newest one sent, the reference time against the previous feedback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import accumulate, compress
from operator import not_
from typing import NamedTuple

from roomcast.proto.bwe.common import BweCounters
from roomcast.wire.rtcp import TransportCC

TICK = 0.00025  # receive delta unit, 250 µs (§3.1.5)
REFERENCE_TICKS = 256  # the reference time unit, 64 ms, in ticks
_HALF_REF = 0x800000


class PacketResults(NamedTuple):
    """One feedback's packets that arrived, in arrival order, as parallel columns.

    ``send_times`` are ours; ``arrival_times`` are the receiver's clock (seconds, unwrapped: only
    differences mean anything). ``clusters`` is the probe cluster of each packet (-1: none), or
    None when no packet of this feedback belonged to one. ``reported`` packets were reported for the
    first time, ``lost`` of them (minus those recovered) had not arrived.
    """

    send_times: list[float]
    arrival_times: list[float]
    sizes: list[int]
    clusters: list[int] | None
    lost: int
    reported: int
    feedback_time: float


ProbeHook = Callable[[int, int, float], None]
_new_results = tuple.__new__  # builds a PacketResults without the Python-level __new__ (once per feedback)


class TwccSender:
    """Sequence stamper plus send history plus feedback adapter of one subscriber transport."""

    __slots__ = (
        "_cluster",
        "_horizon",
        "_last_probe_seq",
        "_last_ref",
        "_lost",
        "_mask",
        "_next",
        "_ref_units",
        "_send_time",
        "_size",
        "_skipped",
        "counters",
        "last_acked_send",
        "on_probe_packet",
        "probe_cluster",
    )

    def __init__(self, capacity: int = 2048, counters: BweCounters | None = None) -> None:
        if capacity & (capacity - 1) or not 64 <= capacity <= 32768:
            raise ValueError("capacity must be a power of two between 64 and 32768")
        self._mask = capacity - 1
        self._send_time = [0.0] * capacity
        self._size = [0] * capacity
        self._cluster = [-1] * capacity
        self._next = 0  # unwrapped sequence number of the next packet
        self._horizon = 0  # first sequence number no feedback has reported yet
        self._lost: set[int] = set()  # reported lost, still in the ring: a later report may recover them
        self._skipped: set[int] = set()  # below the horizon but never reported (a feedback began later)
        self._last_probe_seq = -1
        self._last_ref = -1
        self._ref_units = 0
        self.counters = counters if counters is not None else BweCounters()
        self.last_acked_send = -1.0
        """Send time of the newest packet a feedback reported received (an RTT sample's start)."""
        self.probe_cluster = -1
        """The active probe cluster: packets sent without an explicit cluster are counted into it."""
        self.on_probe_packet: ProbeHook | None = None
        """Called as ``(cluster, size, now)`` for every packet of a probe cluster (the prober's books)."""

    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int:
        """Remember a packet about to go out; returns the 16-bit transport-wide sequence number to
        write into its header extension (:func:`roomcast.wire.twcc.write_transport_seq`).

        ``size`` is what the bottleneck carries (RTP header and payload; add IP/UDP/SRTP overhead if
        the caller knows it). ``probe_cluster`` tags padding sent for a :class:`ProbeRequest`.
        """
        seq = self._next
        self._next = seq + 1
        i = seq & self._mask
        self._send_time[i] = now
        self._size[i] = size
        if probe_cluster < 0:
            probe_cluster = self.probe_cluster
        self._cluster[i] = probe_cluster
        if probe_cluster >= 0:
            self._last_probe_seq = seq
            if self.on_probe_packet is not None:
                self.on_probe_packet(probe_cluster, size, now)
        return seq & 0xFFFF

    @property
    def packets_sent(self) -> int:
        return self._next

    def oldest_unreported(self) -> float | None:
        """Send time of the oldest packet no feedback has covered yet (None: all covered)."""
        if self._horizon >= self._next:
            return None
        seq = max(self._horizon, self._next - self._mask - 1)
        return self._send_time[seq & self._mask]

    def on_feedback(self, fb: TransportCC, now: float) -> PacketResults | None:
        """Match a feedback against the send history; None when it says nothing usable.

        The common case is a range no feedback reported before, still in the ring: its columns are
        slices of the ring filtered by the status symbols, all C-level. Only a feedback overlapping
        earlier ones (re-reports, duplicates) or reaching past the ring takes the per-packet path,
        which tells recovered packets (reported lost before: in :attr:`_lost`) from duplicates.
        """
        counters = self.counters
        statuses = fb.statuses
        count = len(statuses)
        newest = self._next - 1
        base = newest - ((newest - fb.base_seq) & 0xFFFF)
        end = base + count
        if newest < 0 or end - 1 > newest or base < 0:
            counters.bogus_feedback += 1
            return None
        counters.feedbacks += 1
        ref = fb.reference_time & 0xFFFFFF
        if self._last_ref >= 0:
            self._ref_units += ((ref - self._last_ref + _HALF_REF) & 0xFFFFFF) - _HALF_REF
        self._last_ref = ref
        arrivals = [t * TICK for t in accumulate(fb.deltas, initial=self._ref_units * REFERENCE_TICKS)]
        del arrivals[0]

        horizon = self._horizon
        capacity = self._mask + 1
        clusters: list[int] | None = None
        if base >= horizon and base >= self._next - capacity:  # fresh, and all of it still in the ring
            if base > horizon:  # a gap no feedback covered (yet): a later one may report it
                self._remember(self._skipped, range(max(horizon, self._next - capacity), base))
            lost = statuses.count(0)
            reported = count
            self._horizon = end
            b = base & self._mask
            e = b + count
            if e <= capacity:
                send_times = list(compress(self._send_time[b:e], statuses))
                sizes = list(compress(self._size[b:e], statuses))
                if self._last_probe_seq >= base:
                    clusters = list(compress(self._cluster[b:e], statuses))
            else:  # the range wraps around the end of the ring
                e -= capacity
                send_times = list(compress(self._send_time[b:] + self._send_time[:e], statuses))
                sizes = list(compress(self._size[b:] + self._size[:e], statuses))
                if self._last_probe_seq >= base:
                    clusters = list(compress(self._cluster[b:] + self._cluster[:e], statuses))
            if lost:
                self._remember(self._lost, compress(range(base, end), map(not_, statuses)))
            recovered = 0
        else:
            send_times, sizes, clusters, arrivals, lost, reported, recovered = self._match_slowly(
                base, end, statuses, arrivals
            )
        received = len(send_times)
        counters.packets_acked += received
        counters.packets_lost += lost
        if recovered:
            counters.packets_recovered += recovered
        if received:
            self.last_acked_send = send_times[-1]
        if clusters is not None and max(clusters, default=-1) < 0:
            clusters = None
        if 2 in statuses and received and min(fb.deltas) < 0:  # reordered on the way: arrival order
            order = sorted(range(received), key=arrivals.__getitem__)
            arrivals = [arrivals[k] for k in order]
            send_times = [send_times[k] for k in order]
            sizes = [sizes[k] for k in order]
            if clusters is not None:
                clusters = [clusters[k] for k in order]
        return _new_results(PacketResults, (send_times, arrivals, sizes, clusters, lost - recovered, reported, now))

    def _remember(self, where: set[int], seqs: Iterable[int]) -> None:
        where.update(seqs)
        if len(where) > self._mask + 1:  # forget what the ring forgot
            oldest = self._next - self._mask - 1
            kept = {s for s in where if s >= oldest}
            where.clear()
            where.update(kept)

    def _match_slowly(
        self, base: int, end: int, statuses: bytes, arrivals: list[float]
    ) -> tuple[list[float], list[int], list[int] | None, list[float], int, int, int]:
        """Per packet, for feedback overlapping earlier feedback or the ring's end: a packet is new
        (past the horizon, or in a gap no feedback covered), recovered (reported lost before and
        received now), a duplicate (reported received before), or unknown (the ring forgot it)."""
        counters = self.counters
        mask = self._mask
        oldest = self._next - mask - 1
        horizon = self._horizon
        lost_before, skipped = self._lost, self._skipped
        send_time, size, cluster = self._send_time, self._size, self._cluster
        send_times: list[float] = []
        sizes: list[int] = []
        clusters: list[int] = []
        kept: list[float] = []
        lost = reported = recovered = 0
        received = iter(arrivals)
        for seq, status in zip(range(base, end), statuses, strict=True):
            arrival = next(received) if status else 0.0
            if seq < oldest:
                counters.unknown += 1 if status else 0
                continue
            if seq >= horizon or seq in skipped:
                skipped.discard(seq)
                reported += 1
                if not status:
                    lost += 1
                    lost_before.add(seq)
                    continue
            elif not status:
                continue  # reported before, and not received still: nothing new
            elif seq in lost_before:
                lost_before.discard(seq)
                recovered += 1
            else:
                counters.duplicates += 1
                continue
            i = seq & mask
            send_times.append(send_time[i])
            sizes.append(size[i])
            clusters.append(cluster[i])
            kept.append(arrival)
        if end > horizon:
            self._horizon = end
        probed = clusters if self._last_probe_seq >= base else None
        return send_times, sizes, probed, kept, lost, reported, recovered
