"""A producer: one incoming track, its receive statistics and who consumes it.

Also how its payload types map onto each subscriber's negotiated ones (same codec by name and fmtp).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomcast.proto.feedback import KeyframeThrottle, NackGenerator
from roomcast.proto.jsep import NegotiatedMedia
from roomcast.sfu.consumer import Consumer
from roomcast.wire.rtcp import ReportBlock
from roomcast.wire.sdp import Codec


@dataclass(eq=False)
class Producer:
    """One incoming track."""

    sid: str
    owner: str
    identity: str
    kind: str
    mid: str
    codecs: tuple[Codec, ...]
    rtx: dict[int, int]
    clock_rate: int
    source: str = ""
    name: str = ""
    track_id: str = ""  # the publisher's own id for it (a=msid), so it can refer to it (mute)
    ssrc: int | None = None
    rtx_ssrc: int | None = None
    muted: bool = False
    consumers: list[Consumer] = field(default_factory=list)
    throttle: KeyframeThrottle = field(default_factory=lambda: KeyframeThrottle(0.5))
    nack: NackGenerator = field(default_factory=NackGenerator)
    packets: int = 0
    bytes_in: int = 0
    max_seq: int = -1
    cycles: int = 0
    base_seq: int = -1
    expected_prior: int = 0
    received_prior: int = 0
    last_sr_ntp: int = 0
    last_sr_at: float = 0.0
    window_start: float = 0.0
    window_bytes: int = 0
    bitrate: float = 0.0  # bits/s over the last full second
    keyframe_requests: int = 0
    closed: bool = False

    def forward(self, pkt: bytes, now: float) -> None:
        self.packets += 1
        self.bytes_in += len(pkt)
        self.window_bytes += len(pkt)
        if now - self.window_start >= 1.0:
            elapsed = now - self.window_start
            self.bitrate = 8 * self.window_bytes / elapsed if self.window_start else 0.0
            self.window_start, self.window_bytes = now, 0
        ssrc = self.ssrc or 0
        seq = (pkt[2] << 8) | pkt[3]
        self.nack.on_packet(seq, now)
        if self.base_seq < 0:
            self.base_seq = self.max_seq = seq
        elif ((seq - self.max_seq) & 0xFFFF) < 0x8000:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
        if self.muted:
            return
        for consumer in self.consumers:
            consumer.forward(pkt, ssrc, now)

    def report_block(self, now: float) -> ReportBlock:
        """RFC 3550 §6.4.1 / A.3: what we received of this track since the last report."""
        extended = self.cycles + self.max_seq
        expected = extended - self.base_seq + 1
        lost = max(0, expected - self.packets)
        expected_interval = expected - self.expected_prior
        received_interval = self.packets - self.received_prior
        self.expected_prior, self.received_prior = expected, self.packets
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        dlsr = int((now - self.last_sr_at) * 65536) if self.last_sr_ntp else 0
        lsr = (self.last_sr_ntp >> 16) & 0xFFFFFFFF
        return ReportBlock(self.ssrc or 0, min(fraction, 255), min(lost, 0x7FFFFF), extended & 0xFFFFFFFF, 0, lsr, dlsr)

    def codec(self, pt: int) -> Codec | None:
        return next((c for c in self.codecs if c.payload_type == pt), None)


def _codec_key(codec: Codec) -> tuple[str, ...]:
    params = codec.fmtp_params()
    if codec.mime == "h264":
        return ("h264", params.get("packetization-mode", "0"), params.get("profile-level-id", "")[:2])
    return (codec.mime, str(codec.clock_rate))


def payload_type_map(producer: Producer, media: NegotiatedMedia) -> dict[int, int]:
    """Producer payload type → the subscriber's payload type for the same codec (by name and fmtp)."""
    mapping: dict[int, int] = {}
    for codec in producer.codecs:
        match = next((c for c in media.codecs if _codec_key(c) == _codec_key(codec)), None)
        match = match or next((c for c in media.codecs if c.mime == codec.mime), None)
        if match is not None:
            mapping[codec.payload_type] = match.payload_type
    return mapping
