"""A consumer: one track as one subscriber receives it.

The hot path (`roomcast bench`): hand the decrypted source packet and the subscriber's SSRC, sequence number,
timestamp and payload type to the subscriber's transport, which rewrites them inside its SRTP buffer
(``send_rewritten``; without one, a rewritten ``bytearray`` copy goes to ``send``). The RTX ring
keeps the *source* packet (one immutable object shared by every consumer of the producer) with the
timestamp we gave it, and a NACK rewrites it again: memory per subscriber is a few pointers per
packet instead of a copy (1,024 packets of 1.2 kB = 1.2 MB per video subscriber otherwise).
Offsets are re-based whenever the source changes (another producer, a resume after a pause), so
the subscriber sees one continuous stream (RFC 3550 §5.1: seq +1, timestamp advancing).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from roomcast.proto.feedback import RtxRing
from roomcast.wire.rtp import header_length

_SEQ_TS = struct.Struct("!HI")
_B1_SEQ_TS_SSRC = struct.Struct("!BHII")
# Probe padding repeats packets sent this far back (in sequence numbers): a few frames old, so a receiver's
# delay estimate (abs-send-time inter-arrival groups) sees them out of order and skips them, while its
# incoming-bitrate measurement still counts them.
PROBE_BACK_MIN, PROBE_BACK_MAX = 8, 200
# A packet is retransmitted at most once per round trip (and per RTX_MIN_INTERVAL), as libwebrtc's sender
# does: a receive-only Chrome re-NACKs every 100 ms, so behind a bottleneck's queue (a second of delay at a
# 250 kbit/s cap) each lost packet went out again and again, and those copies filled the link (200 kbit/s of
# retransmissions for a few packets lost per second), which lost more.
RTX_MIN_INTERVAL = 0.02
_RESENT_SLOTS = 256

Sender = Callable[[bytes | bytearray], None]
RewritingSender = Callable[[bytes | bytearray, int, int, int, int], None]
"""``(source packet, byte 1, sequence number, timestamp, SSRC)``: send the source with those replaced.
The packet may be a buffer its caller reuses: copy it to keep it."""


class Consumer:
    __slots__ = (
        "bytes_sent",
        "clock_rate",
        "fraction_lost",
        "kind",
        "last_out_seq",
        "last_out_ts",
        "last_sent_at",
        "packets_sent",
        "padding_bytes",
        "padding_packets",
        "paused",
        "probe_back",
        "pt_map",
        "resent_at",
        "resent_seq",
        "retransmits",
        "retransmits_suppressed",
        "ring",
        "rtt",
        "rtx_pt",
        "rtx_seq",
        "rtx_ssrc",
        "send",
        "send_rewritten",
        "send_rtcp",
        "seq_offset",
        "source_ssrc",
        "sr_sent",
        "ssrc",
        "ts_offset",
    )

    def __init__(
        self,
        *,
        ssrc: int,
        kind: str,
        clock_rate: int,
        send: Sender,
        pt_map: dict[int, int] | None = None,
        rtx_ssrc: int | None = None,
        rtx_pt: dict[int, int] | None = None,
        ring_size: int = 1024,
        send_rtcp: Sender | None = None,
        send_rewritten: RewritingSender | None = None,
    ) -> None:
        self.send_rtcp = send_rtcp
        self.send_rewritten = send_rewritten  # the transport's in-place rewrite + protect, when it has one
        self.rtt: float | None = None  # from the subscriber's receiver reports (RFC 3550 §6.4.1)
        self.fraction_lost = 0.0
        self.sr_sent: dict[int, float] = {}  # middle 32 bits of each SR's NTP -> when we sent it
        self.ssrc = ssrc
        self.kind = kind
        self.clock_rate = clock_rate
        self.send = send
        self.pt_map = pt_map or {}
        self.rtx_ssrc = rtx_ssrc
        self.rtx_pt = rtx_pt or {}
        self.ring = RtxRing(ring_size)
        self.source_ssrc: int | None = None
        self.seq_offset = 0
        self.ts_offset = 0
        self.last_out_seq: int | None = None
        self.last_out_ts = 0
        self.last_sent_at = 0.0
        self.rtx_seq = 0
        self.paused = False
        self.packets_sent = 0
        self.bytes_sent = 0
        self.retransmits = 0
        self.retransmits_suppressed = 0
        self.resent_seq = [-1] * _RESENT_SLOTS  # the last packets retransmitted, by sequence number, and when
        self.resent_at = [0.0] * _RESENT_SLOTS
        self.probe_back = PROBE_BACK_MIN
        self.padding_packets = self.padding_bytes = 0

    def forward(self, pkt: bytes, source_ssrc: int, now: float) -> None:
        """Rewrite and send one decrypted RTP packet of the source."""
        if self.paused:
            return
        seq, ts = _SEQ_TS.unpack_from(pkt, 2)
        if source_ssrc != self.source_ssrc:
            self._rebase(source_ssrc, seq, ts, now)
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        b1 = pkt[1]
        mapped = self.pt_map.get(b1 & 0x7F)
        if mapped is not None:
            b1 = (b1 & 0x80) | mapped
        self.ring.store(out_seq, pkt, out_ts)
        if self.last_out_seq is None or ((out_seq - self.last_out_seq) & 0xFFFF) < 0x8000:
            self.last_out_seq = out_seq
            self.last_out_ts = out_ts
            self.last_sent_at = now
        self.packets_sent += 1
        self.bytes_sent += len(pkt)
        if self.send_rewritten is not None:
            self.send_rewritten(pkt, b1, out_seq, out_ts, self.ssrc)
        else:
            self.send(self._rewrite(pkt, b1, out_seq, out_ts))

    def _rewrite(self, pkt: bytes | bytearray, b1: int, out_seq: int, out_ts: int) -> bytearray:
        """A copy of ``pkt`` as this subscriber receives it (``b1``: marker and mapped payload type)."""
        buf = bytearray(pkt)
        _B1_SEQ_TS_SSRC.pack_into(buf, 1, b1, out_seq, out_ts, self.ssrc)
        return buf

    def _patch_payload(self, pkt: bytearray, stamp: int) -> None:
        """Re-apply payload rewrites recorded in the ring stamp above its 32 timestamp bits (none here)."""

    def _rebase(self, source_ssrc: int, seq: int, ts: int, now: float) -> None:
        if self.last_out_seq is None:
            self.seq_offset = 0
            self.ts_offset = 0
        else:
            elapsed = max(1, int((now - self.last_sent_at) * self.clock_rate))
            self.seq_offset = (self.last_out_seq + 1 - seq) & 0xFFFF
            self.ts_offset = (self.last_out_ts + elapsed - ts) & 0xFFFFFFFF
        self.source_ssrc = source_ssrc

    def detach(self) -> None:
        """It no longer consumes its producer (a simulcast consumer leaves its layers)."""

    def continue_numbering(self, other: Consumer) -> None:
        """Carry on ``other``'s output numbering (a parked subscriber m-line reused for a new track): the
        m-line's SSRC is fixed, so SRTP's packet index and the browser's jitter buffer need it continuous."""
        self.last_out_seq, self.last_out_ts = other.last_out_seq, other.last_out_ts
        self.last_sent_at = other.last_sent_at
        self.rtx_seq = other.rtx_seq
        self.source_ssrc = None

    def pause(self) -> None:
        """Stop forwarding; the next packet after :meth:`resume` re-bases so the stream stays continuous."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.source_ssrc = None

    def retransmit(self, seqs: list[int], now: float | None = None) -> int:
        """Answer a NACK from the ring: RTX (RFC 4588 §4) when negotiated, else the packet again; with ``now``,
        not a packet already retransmitted within the round trip (the copy may still be on its way)."""
        sent = 0
        interval = max(self.rtt or 0.0, RTX_MIN_INTERVAL)
        for seq in seqs:
            source = self.ring.get(seq)
            if source is None:
                continue
            if now is not None:
                slot = seq & (_RESENT_SLOTS - 1)
                if self.resent_seq[slot] == seq and now - self.resent_at[slot] < interval:
                    self.retransmits_suppressed += 1
                    continue
                self.resent_seq[slot] = seq
                self.resent_at[slot] = now
            b1 = source[1]
            mapped = self.pt_map.get(b1 & 0x7F)
            if mapped is not None:
                b1 = (b1 & 0x80) | mapped
            stamp = self.ring.stamp(seq)
            pkt = self._rewrite(source, b1, seq, stamp & 0xFFFFFFFF)
            if stamp > 0xFFFFFFFF:
                self._patch_payload(pkt, stamp)
            if self.rtx_ssrc is not None:
                rtx_pt = self.rtx_pt.get(pkt[1] & 0x7F)
                if rtx_pt is None:
                    continue
                header = header_length(pkt)
                if header < 0:
                    continue
                if pkt[0] & 0x20:  # padding is not part of the original payload (RFC 4588 §4)
                    end = len(pkt) - pkt[-1]
                    out = bytearray(pkt[:header]) + pkt[2:4] + pkt[header:end]
                    out[0] &= 0xDF
                else:
                    out = bytearray(pkt[:header]) + pkt[2:4] + pkt[header:]
                out[1] = (pkt[1] & 0x80) | rtx_pt
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                struct.pack_into("!H", out, 2, self.rtx_seq)
                struct.pack_into("!I", out, 8, self.rtx_ssrc)
                self.send(out)
            else:
                self.send(pkt)
            sent += 1
        self.retransmits += sent
        return sent

    def pad(self, budget: int) -> int:
        """Probe padding of about ``budget`` bytes: RTX copies (RFC 4588) of packets sent a few frames ago, which
        the subscriber already has and drops; they carry their original abs-send-time, so its receive-side
        estimate counts their bytes but not their delay. Only with RTX negotiated (a duplicate on the media
        SSRC would show in its stats). Returns the bytes sent."""
        if self.rtx_ssrc is None or self.last_out_seq is None or budget <= 0:
            return 0
        sent = packets = 0
        for _ in range(PROBE_BACK_MAX):
            if sent >= budget:
                break
            self.probe_back = self.probe_back + 1 if self.probe_back < PROBE_BACK_MAX else PROBE_BACK_MIN
            seq = (self.last_out_seq - self.probe_back) & 0xFFFF
            source = self.ring.get(seq)
            if source is not None and Consumer.retransmit(self, [seq]):  # not a NACK's answer: no side effects
                sent += len(source) + 2
                packets += 1
        self.retransmits -= packets
        self.padding_packets += packets
        self.padding_bytes += sent
        return sent

    def on_report(self, lsr: int, dlsr: int, fraction_lost: int, now: float) -> None:
        """RTT = arrival - when we sent the SR it echoes - the receiver's delay since (1/65536 s units)."""
        self.fraction_lost = fraction_lost / 256
        sent = self.sr_sent.get(lsr)
        if sent is not None:
            self.rtt = max(0.0, now - sent - dlsr / 65536)

    def remember_sr(self, ntp: int, now: float) -> None:
        if len(self.sr_sent) >= 16:
            self.sr_sent.pop(next(iter(self.sr_sent)))
        self.sr_sent[(ntp >> 16) & 0xFFFFFFFF] = now

    def rewrite_timestamp(self, source_ts: int) -> int:
        """Map a source RTP timestamp (e.g. from a sender report) onto this consumer's timeline."""
        return (source_ts + self.ts_offset) & 0xFFFFFFFF
