"""GCC-style send-side bandwidth estimator for one subscriber transport with transport-cc.

The composition (draft-ietf-rmcat-gcc-02 §4; the structure of libwebrtc's goog_cc, learnt from, not
copied): every sent packet is stamped (:class:`TwccSender`); every feedback yields per-packet
results, which feed the acknowledged bitrate, the probe estimator, the delay-based estimate (groups,
trendline, overuse detector, AIMD) and the loss-based controller; the target is the loss-based
estimate, which never exceeds the delay-based one. Timers: a feedback timeout (packets out, no
feedback for ``feedback_timeout``: cut 20 % per timeout, the path may be gone) and the prober's.

Integration (the pacer/allocator of a subscriber transport)::

    seq = bwe.on_packet_sent(len(pkt), now)          # per packet, then write seq into its TWCC ext
    bwe.on_feedback(transport_cc, now)               # per transport-cc packet from the subscriber
    while (probe := bwe.poll_probe()) is not None:   # send padding tagged probe.cluster_id
        ...
    bwe.handle_timeout(now) when now >= bwe.poll_timeout()
    bwe.target_bitrate                               # what the allocator may spend
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roomcast.proto.bwe.acked_bitrate import AckedBitrateEstimator
from roomcast.proto.bwe.common import BandwidthUsage, BweCounters, ProbeRequest
from roomcast.proto.bwe.delay_based import DelayBasedBwe
from roomcast.proto.bwe.loss_based import LossBasedControl
from roomcast.proto.bwe.probe_controller import ProbeController
from roomcast.proto.bwe.probe_estimator import ProbeEstimator
from roomcast.proto.bwe.twcc_sender import TwccSender
from roomcast.wire.rtcp import RtcpPacket, TransportCC

_OVER = BandwidthUsage.OVERUSING


@dataclass(frozen=True, slots=True)
class GccConfig:
    """Bitrates in bit/s, times in seconds. docs/adaptive.md says why each default is what it is."""

    start_bitrate: int = 300_000
    min_bitrate: int = 30_000
    max_bitrate: int = 10_000_000
    history: int = 2048  # send history ring, packets (power of two)
    beta: float = 0.85
    trendline_window: int = 20
    low_loss: float = 0.02
    high_loss: float = 0.10
    feedback_timeout: float = 1.0
    initial_probes: tuple[float, ...] = (3.0, 6.0)
    probe_interval: float = 3.0
    probe_duration: float = 0.015
    alr_probing: bool = False


class GccEstimator:
    def __init__(self, config: GccConfig | None = None) -> None:
        c = self.config = config or GccConfig()
        counters = self._counters = BweCounters()
        self.twcc = TwccSender(c.history, counters)
        self.acked = AckedBitrateEstimator()
        self.delay = DelayBasedBwe(
            counters, c.start_bitrate, c.min_bitrate, c.max_bitrate, beta=c.beta, window=c.trendline_window
        )
        self.loss = LossBasedControl(
            counters, c.start_bitrate, c.min_bitrate, c.max_bitrate, low_loss=c.low_loss, high_loss=c.high_loss
        )
        self.prober = ProbeController(
            counters,
            c.start_bitrate,
            c.max_bitrate,
            initial=c.initial_probes,
            duration=c.probe_duration,
            interval=c.probe_interval,
            alr_probing=c.alr_probing,
        )
        self.probe_estimator = ProbeEstimator(self.prober)
        self.twcc.on_probe_packet = self._on_probe_packet
        self._target = float(self.loss.estimate)
        self._last_feedback = -math.inf
        self._last_cut = -math.inf
        self._rtt_min = math.inf
        self._rtt_count = 0
        self._rtt: float | None = None

    # ------------------------------------------------------------------ inputs

    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int:
        """Stamp one outgoing packet; returns its 16-bit transport-wide sequence number. The
        forwarding loop may call ``bwe.twcc.on_packet_sent`` directly: it is the same thing."""
        return self.twcc.on_packet_sent(size, now, probe_cluster)

    def _on_probe_packet(self, cluster: int, size: int, now: float) -> None:
        self.prober.on_packet(cluster, size, now)
        self.twcc.probe_cluster = self.prober.active

    def on_feedback(self, fb: TransportCC, now: float) -> None:
        results = self.twcc.on_feedback(fb, now)
        if results is None:
            return
        send_times, arrival_times, sizes, clusters, lost, reported, _ = results
        self._last_feedback = now
        if send_times and self._rtt is None:  # no measured RTT: a windowed minimum of feedback delay
            sample = now - self.twcc.last_acked_send
            if sample < self._rtt_min:
                self._rtt_min = sample
            self._rtt_count += 1
            if self._rtt_count >= 16:
                self.delay.aimd.rtt = self.loss.rtt = self._rtt_min
                self._rtt_min = math.inf
                self._rtt_count = 0
        acked = self.acked
        acked.update(arrival_times, sizes)
        probe: float | None = None
        if clusters is not None:
            probe = self.probe_estimator.update(send_times, arrival_times, sizes, clusters, now)
            self.twcc.probe_cluster = self.prober.active
        loss = self.loss
        delay = self.delay.update(send_times, arrival_times, acked, probe, now, loss.fraction > loss.low_loss)
        if reported:
            loss.on_packets(lost, reported, now)
        if probe is not None and self.delay.detector.state is not _OVER and loss.fraction < loss.low_loss:
            loss.reset(probe)  # a lossy path keeps its loss-based limit: a probe measures rate, not loss
        self._target = target = loss.update(now, delay)
        prober = self.prober
        if target >= prober.peak or now - prober.peak_time > prober.recovery_window:
            prober.on_estimate(target, now)

    def on_rtcp(self, packet: RtcpPacket, now: float) -> None:
        """Any RTCP packet from the subscriber; only transport-cc feedback matters here."""
        if isinstance(packet, TransportCC):
            self.on_feedback(packet, now)

    def on_rtt(self, rtt: float) -> None:
        """An RTT measured elsewhere (RR LSR/DLSR, RFC 3550 §6.4.1) beats the feedback-based guess."""
        self._rtt = max(rtt, 0.0)
        self.delay.aimd.rtt = self.loss.rtt = self._rtt

    def request_probe(self, bitrate: float) -> ProbeRequest | None:
        """Ask whether the path carries ``bitrate`` (e.g. before switching a subscriber up a layer);
        the request also comes out of :meth:`poll_probe`. None when two probes are already queued."""
        return self.prober.request(bitrate)

    # ------------------------------------------------------------------ timers and outputs

    def handle_timeout(self, now: float) -> None:
        oldest = self.twcc.oldest_unreported()
        timeout = self.config.feedback_timeout
        if oldest is not None and now - max(oldest, self._last_feedback, self._last_cut) >= timeout:
            self._last_cut = now
            self.counters.feedback_timeouts += 1
            self.loss.estimate = max(self.loss.estimate * 0.8, self.config.min_bitrate)
            self._target = self.loss.estimate
        self.prober.handle_timeout(now, self._target, self.acked.bitrate, self.loss.low())
        self.twcc.probe_cluster = self.prober.active

    def poll_timeout(self) -> float | None:
        deadline = self.prober.poll_timeout()
        oldest = self.twcc.oldest_unreported()
        if oldest is not None:
            at = max(oldest, self._last_feedback, self._last_cut) + self.config.feedback_timeout
            deadline = at if deadline is None else min(deadline, at)
        return deadline

    def poll_probe(self) -> ProbeRequest | None:
        return self.prober.poll()

    @property
    def target_bitrate(self) -> int:
        return int(self._target)

    @property
    def counters(self) -> BweCounters:
        self._counters.packets_sent = self.twcc.packets_sent  # not counted per packet: it is the seq
        return self._counters

    @property
    def usage(self) -> BandwidthUsage:
        return self.delay.usage

    @property
    def acked_bitrate(self) -> float | None:
        return self.acked.bitrate

    @property
    def delay_bitrate(self) -> float:
        return self.delay.bitrate

    @property
    def loss_fraction(self) -> float:
        return self.loss.fraction
