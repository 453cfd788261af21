"""Fallback estimator for peers without transport-cc: the receiver's REMB plus receiver-report loss.

A receiver that negotiated ``goog-remb`` but not ``transport-cc`` runs its own delay-based
estimate and sends it as REMB (draft-alvestrand-rmcat-remb); the RTCP receiver reports carry each
stream's cumulative loss (RFC 3550 §6.4.1), summed over the streams it is told to watch
(``media_ssrcs``; the SFU names its video streams) into packets lost over packets expected, as
libwebrtc's sender does. REMB is the upper limit, the loss-based controller (same rules as with
transport-cc) works under it. There is nothing to probe with (no per-packet feedback), so the estimate
can only climb as fast as the receiver's REMB does, or take the REMB at once when the SFU's padding
probe confirms it (:meth:`RembEstimator.accept_remb`). Without any REMB the start bitrate is the limit
until the first one arrives.
"""

from __future__ import annotations

from roomcast.proto.bwe.common import BweCounters, ProbeRequest
from roomcast.proto.bwe.loss_based import LossBasedControl
from roomcast.wire.rtcp import ReceiverReport, Remb, ReportBlock, RtcpPacket, SenderReport


class RembEstimator:
    def __init__(
        self,
        *,
        start_bitrate: int = 300_000,
        min_bitrate: int = 30_000,
        max_bitrate: int = 10_000_000,
        media_ssrcs: frozenset[int] | None = None,
    ) -> None:
        self.counters = BweCounters()
        self.media_ssrcs = media_ssrcs
        """Report blocks about other SSRCs are ignored; None: every block counts."""
        self.loss = LossBasedControl(self.counters, start_bitrate, min_bitrate, max_bitrate)
        self.min_bitrate = min_bitrate
        self.max_bitrate = max_bitrate
        self.remb: float = start_bitrate
        self._target = float(start_bitrate)
        self._reported: dict[int, tuple[int, int]] = {}  # per SSRC: (highest sequence, packets lost) last reported

    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int:
        """Count a packet; there is no transport-wide sequence number without transport-cc (-1)."""
        self.counters.packets_sent += 1
        return -1

    def on_remb(self, bitrate: int, now: float) -> None:
        self.counters.remb += 1
        self.remb = min(max(float(bitrate), self.min_bitrate), self.max_bitrate)
        self._target = self.loss.update(now, self.remb)

    def on_fraction_lost(self, fraction_lost: int, now: float) -> None:
        """``fraction_lost`` as in a report block: lost/expected since the last report, x 256."""
        self.counters.receiver_reports += 1
        self.loss.on_fraction(fraction_lost / 256)
        self._target = self.loss.update(now, self.remb)

    def on_report_blocks(self, blocks: list[ReportBlock], now: float) -> None:
        """Loss from report blocks as libwebrtc's sender takes it: packets lost over packets expected since
        each stream's previous report (cumulative lost and extended highest sequence number, RFC 3550
        §6.4.1), summed over the streams and over reports until there are enough packets to mean something
        (:meth:`LossBasedControl.on_packets`). Cumulative loss counts a packet repaired later (RTX, or a late
        upstream repair the SFU forwards) as received, so this is the loss the viewer is left with. Not the
        worst block's fraction: that counted every hole not yet repaired at the instant of the report, and a
        stream of a few packets a second swings from 0 to 25 % on one packet; each swing over 10 % cut the
        estimate (F5, 10 % random loss: down to 30 kbit/s)."""
        self.counters.receiver_reports += 1
        lost = expected = 0
        for block in blocks:
            before = self._reported.get(block.ssrc)
            self._reported[block.ssrc] = (block.highest_seq, block.packets_lost)
            if before is None:
                continue
            sent = (block.highest_seq - before[0]) & 0xFFFFFFFF
            if sent >= 0x80000000:
                continue  # the sequence went back: a reordered or restarted report, nothing to learn
            expected += sent
            lost += block.packets_lost - before[1]  # may be negative: packets reported lost arrived since
        if expected:  # a repair that arrived late cancels the hole reported before: what the receiver misses
            self.loss.on_packets(min(lost, expected), expected, now)
        self._target = self.loss.update(now, self.remb)

    def on_rtt(self, rtt: float) -> None:
        self.loss.rtt = max(rtt, 0.0)

    def on_rtcp(self, packet: RtcpPacket, now: float) -> None:
        if isinstance(packet, Remb):
            self.on_remb(packet.bitrate, now)
        elif isinstance(packet, ReceiverReport | SenderReport):
            blocks = [b for b in packet.reports if self.media_ssrcs is None or b.ssrc in self.media_ssrcs]
            if blocks:
                self.on_report_blocks(blocks, now)

    def accept_remb(self, now: float) -> None:
        """A probe confirmed the REMB (we padded the path up to a rate and the receiver's estimate rose over
        it): the target takes it at once instead of climbing 8 %/s to it, as a GCC probe result would."""
        self.loss.reset(self.remb)
        self._target = self.loss.update(now, self.remb)

    def handle_timeout(self, now: float) -> None:
        return None

    def poll_timeout(self) -> float | None:
        return None

    def poll_probe(self) -> ProbeRequest | None:
        return None

    @property
    def target_bitrate(self) -> int:
        return int(self._target)
