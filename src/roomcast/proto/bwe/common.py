"""Types every part of the bandwidth estimator shares: usage signal, probe requests, counters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from roomcast.wire.rtcp import RtcpPacket


class BandwidthUsage(IntEnum):
    """The delay-based detector's verdict on the path (draft-ietf-rmcat-gcc-02 §5.4)."""

    NORMAL = 0
    UNDERUSING = 1
    OVERUSING = 2


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """ "Probe now at ``bitrate`` bps for ``duration`` seconds": send padding (or RTX) packets tagged
    with ``cluster_id`` until at least ``min_packets`` packets and ``min_bytes`` bytes have gone out
    over at least ``duration``. Media sent meanwhile is counted into the cluster too, so the padding
    only has to make up the difference between the media rate and ``bitrate``."""

    cluster_id: int
    bitrate: int
    duration: float
    min_packets: int
    min_bytes: int

    @property
    def packet_size(self) -> int:
        """Suggested padding packet size: ``min_packets`` of them make ``min_bytes``, within
        [200, 1200] bytes. Full-size packets at a low rate would make the probe several times
        longer (and its queue several times deeper) than asked for."""
        return min(max(self.min_bytes // self.min_packets, 200), 1200)


@dataclass(slots=True)
class BweCounters:
    """What one estimator did, for stats and Prometheus; every field only grows."""

    packets_sent: int = 0
    feedbacks: int = 0
    packets_acked: int = 0
    packets_lost: int = 0  # reported not received the first time they were reported
    packets_recovered: int = 0  # reported lost, then received in a later report (reordering)
    duplicates: int = 0  # reported received again (overlapping or repeated feedback)
    unknown: int = 0  # reported, but no longer (or never) in the send history
    bogus_feedback: int = 0  # feedback about packets never sent: dropped whole
    reordered: int = 0  # arrived after a later-sent burst group: not used for delay
    overuse: int = 0  # times the detector entered OVERUSING
    standing_queue: int = 0  # feedbacks that showed a deep standing queue under loss
    delay_decreases: int = 0
    loss_decreases: int = 0
    feedback_timeouts: int = 0
    probes_requested: int = 0
    probe_results: int = 0
    probe_failures: int = 0  # cluster expired or its feedback could not give a rate
    remb: int = 0
    receiver_reports: int = 0


class BandwidthEstimator(Protocol):
    """What the stream allocator and the pacer of a subscriber transport use, whichever estimator."""

    @property
    def counters(self) -> BweCounters: ...

    @property
    def target_bitrate(self) -> int: ...

    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int: ...

    def on_rtcp(self, packet: RtcpPacket, now: float) -> None: ...

    def handle_timeout(self, now: float) -> None: ...

    def poll_timeout(self) -> float | None: ...

    def poll_probe(self) -> ProbeRequest | None: ...
