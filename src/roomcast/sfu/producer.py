"""A producer: one incoming track, made of one RTP stream or, with simulcast, of several layers.

A :class:`Layer` is one incoming RTP stream (RFC 8853 calls it an encoding): its SSRC and RTX SSRC, its
receive statistics and NACK state, its keyframe throttle and its bitrate. A single-layer producer
forwards each packet to every consumer (the hot path, as before simulcast). A simulcast producer reads
the codec's layer facts once per packet (keyframe, VP8 TID / picture ID / TL0PICIDX) into the layer
and hands the packet to the simulcast consumers that want that layer; each keeps or drops it.

Also how its payload types map onto each subscriber's negotiated ones (same codec by name and fmtp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from roomcast.proto.codecs import H264_DEFAULT_PROFILE_LEVEL_ID, h264_packetization_mode
from roomcast.proto.feedback import KeyframeThrottle, NackGenerator
from roomcast.proto.jsep import NegotiatedMedia
from roomcast.sfu.consumer import Consumer
from roomcast.wire import h264, vp8
from roomcast.wire.rtcp import ReportBlock
from roomcast.wire.rtp import header_length
from roomcast.wire.sdp import Codec

VP8, H264, VP9 = 1, 2, 3
_CODEC_IDS = {"vp8": VP8, "h264": H264, "vp9": VP9}
MAX_TEMPORAL = 3  # VP8 TID is 2 bits


class LayerConsumer(Protocol):
    """What a simulcast layer hands its packets to (:class:`~roomcast.sfu.simulcast.SimulcastConsumer`)."""

    def on_layer_packet(self, pkt: bytes, layer: Layer, now: float) -> None: ...


class Layer:
    """One incoming RTP stream of a producer; ``index`` is its spatial rank (0 = lowest resolution)."""

    __slots__ = (
        "base_seq",
        "begin",
        "bitrate",
        "bytes_in",
        "consumers",
        "cycles",
        "expected_prior",
        "index",
        "keyframe",
        "keyframe_requests",
        "last_packet_at",
        "layer_consumers",
        "layer_sync",
        "max_seq",
        "max_tid",
        "nack",
        "packets",
        "picture_id",
        "picture_id_pos",
        "producer",
        "received_prior",
        "rid",
        "rids",
        "routing_clean",
        "rtx_ssrc",
        "simulcast",
        "sr_at",
        "sr_ntp",
        "sr_rtp",
        "ssrc",
        "temporal_bitrates",
        "throttle",
        "tid",
        "tl0picidx",
        "tl0picidx_pos",
        "window_bytes",
        "window_start",
        "window_tid_bytes",
    )

    def __init__(self, producer: Producer, index: int, rids: tuple[str, ...] = ()) -> None:
        self.producer = producer
        self.index = index
        self.rids = rids  # RFC 8851 rid (and its alternatives) naming this layer
        self.rid = rids[0] if rids else ""
        self.routing_clean = 0  # packets in a row without MID/RID extensions (router.py blanks them)
        self.simulcast = False
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.consumers: list[Consumer] = producer.consumers  # single layer: the producer's list itself
        # simulcast: the consumers that want this layer now; a tuple replaced on change, so a consumer that
        # switches while the layer iterates does not disturb the iteration
        self.layer_consumers: tuple[LayerConsumer, ...] = ()
        self.throttle = KeyframeThrottle(0.5)
        self.nack = NackGenerator()
        self.packets = self.bytes_in = 0
        self.max_seq = self.base_seq = -1
        self.cycles = self.expected_prior = self.received_prior = 0
        self.sr_ntp = self.sr_rtp = 0
        self.sr_at = 0.0
        self.window_start = float("-inf")  # the first packet opens the first window
        self.window_bytes = 0
        self.bitrate = 0.0  # bits/s over the last full second
        self.window_tid_bytes = [0] * MAX_TEMPORAL
        self.temporal_bitrates: list[float] = []  # cumulative per TID (0, 0+1, ...), simulcast only
        self.max_tid = -1
        self.keyframe_requests = 0
        self.last_packet_at = float("-inf")
        # facts of the packet being forwarded (simulcast): read by consumers during on_layer_packet
        self.begin = self.keyframe = self.layer_sync = False
        self.tid = self.picture_id = self.picture_id_pos = self.tl0picidx = self.tl0picidx_pos = -1

    def forward(self, pkt: bytes, now: float) -> None:
        self.packets += 1
        n = len(pkt)
        self.bytes_in += n
        self.window_bytes += n
        if now - self.window_start >= 1.0:
            self._roll_window(now)
        seq = (pkt[2] << 8) | pkt[3]
        self.nack.on_packet(seq, now)
        if self.base_seq < 0:
            self.base_seq = self.max_seq = seq
        elif ((seq - self.max_seq) & 0xFFFF) < 0x8000:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
        self.last_packet_at = now
        if self.producer.muted:
            return
        if self.simulcast:
            self._read_codec(pkt, n)
            for layer_consumer in self.layer_consumers:
                layer_consumer.on_layer_packet(pkt, self, now)
            return
        ssrc = self.ssrc or 0
        for consumer in self.consumers:
            consumer.forward(pkt, ssrc, now)

    def _read_codec(self, pkt: bytes, n: int) -> None:
        codec = self.producer.codec_ids.get(pkt[1] & 0x7F, 0)
        pos = header_length(pkt)
        if codec == VP8 and pos > 0:
            d = vp8.read_descriptor(pkt, pos)
            self.begin, self.keyframe, self.tid, self.layer_sync = d[0], d[1], d[2], d[3]
            self.picture_id, self.picture_id_pos, self.tl0picidx, self.tl0picidx_pos = d[4], d[5], d[6], d[7]
            tid = d[2]
            if tid >= 0:
                self.window_tid_bytes[tid] += n
                if tid > self.max_tid:
                    self.max_tid = tid
            return
        self.tid = self.picture_id = self.picture_id_pos = self.tl0picidx = self.tl0picidx_pos = -1
        self.layer_sync = False
        if codec == H264 and pos > 0:
            self.keyframe = self.begin = h264.keyframe_start(pkt, pos)
        elif codec == VP9 and 0 < pos < n:
            b0 = pkt[pos]  # RFC 9628 §4.2: I|P|L|F|B|E|V|Z; a key frame starts with P clear, B set
            self.begin = bool(b0 & 0x08)
            self.keyframe = self.begin and not b0 & 0x40 and (not b0 & 0x20 or _vp9_spatial_id(pkt, pos) == 0)
        else:
            self.begin = self.keyframe = False

    def _roll_window(self, now: float) -> None:
        elapsed = now - self.window_start
        started = elapsed < float("inf")
        self.bitrate = 8 * self.window_bytes / elapsed if started else 0.0
        if self.simulcast:
            total = 0.0
            rates: list[float] = []
            for tid in range(self.max_tid + 1):
                total += 8 * self.window_tid_bytes[tid] / elapsed if started else 0.0
                rates.append(total)
                self.window_tid_bytes[tid] = 0
            self.temporal_bitrates = rates
        self.window_start, self.window_bytes = now, 0

    def active(self, now: float, timeout: float = 1.0) -> bool:
        """Packets arrived within ``timeout`` (a publisher stops a layer when its uplink is short)."""
        return now - self.last_packet_at < timeout

    def report_block(self, now: float) -> ReportBlock:
        """RFC 3550 §6.4.1 / A.3: what we received of this stream since the last report."""
        extended = self.cycles + self.max_seq
        expected = extended - self.base_seq + 1
        lost = max(0, expected - self.packets)
        expected_interval = expected - self.expected_prior
        received_interval = self.packets - self.received_prior
        self.expected_prior, self.received_prior = expected, self.packets
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        dlsr = int((now - self.sr_at) * 65536) if self.sr_ntp else 0
        lsr = (self.sr_ntp >> 16) & 0xFFFFFFFF
        return ReportBlock(self.ssrc or 0, min(fraction, 255), min(lost, 0x7FFFFF), extended & 0xFFFFFFFF, 0, lsr, dlsr)

    @property
    def packets_lost(self) -> int:
        return max(0, (self.cycles + self.max_seq - self.base_seq + 1) - self.packets) if self.base_seq >= 0 else 0


def _vp9_spatial_id(pkt: bytes, pos: int) -> int:
    """SID of a VP9 descriptor with L set (RFC 9628 §4.2): after the optional picture ID."""
    i = pos + 1
    if pkt[pos] & 0x80:
        i += 2 if i < len(pkt) and pkt[i] & 0x80 else 1
    return (pkt[i] >> 1) & 0x07 if i < len(pkt) else -1


@dataclass(eq=False)
class Producer:
    """One incoming track: its layers (one unless simulcast) and who consumes it."""

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
    layer_rids: tuple[tuple[str, ...], ...] = ()  # simulcast streams, lowest first (empty: one layer)
    muted: bool = False
    audio_level_ext: int = 0  # RFC 6464 client-to-mixer audio level extension id (0: not negotiated)
    loud_at: float = float("-inf")  # last packet whose level said speech (router.py; rtc/speakers.py reads it)
    loudness: int = 127  # its level then, in -dBov (0 loudest, 127 silence)
    consumers: list[Consumer] = field(default_factory=list)
    layers: list[Layer] = field(init=False)
    codec_ids: dict[int, int] = field(init=False)
    closed: bool = False

    def __post_init__(self) -> None:
        self.codec_ids = {c.payload_type: _CODEC_IDS.get(c.mime, 0) for c in self.codecs}
        self.layers = [Layer(self, i, rids) for i, rids in enumerate(self.layer_rids or ((),))]
        for layer in self.layers:
            layer.simulcast = self.simulcast

    @property
    def simulcast(self) -> bool:
        return len(self.layer_rids) > 1

    @property
    def ssrc(self) -> int | None:
        """The first layer's SSRC (the only one without simulcast)."""
        return self.layers[0].ssrc

    def layer_by_rid(self, rid: str) -> Layer | None:
        return next((layer for layer in self.layers if rid in layer.rids), None)

    def layer_bitrates(self) -> list[list[float]]:
        """Measured bits/s per spatial layer, cumulative per temporal layer (``[s][t]`` is layer ``s`` at
        TIDs ``0..t``), for an allocator choosing layers; a layer without TIDs has one entry."""
        return [list(layer.temporal_bitrates) if layer.max_tid >= 0 else [layer.bitrate] for layer in self.layers]

    def codec(self, pt: int) -> Codec | None:
        return next((c for c in self.codecs if c.payload_type == pt), None)

    # aggregated over layers, for stats
    @property
    def packets(self) -> int:
        return sum(layer.packets for layer in self.layers)

    @property
    def bytes_in(self) -> int:
        return sum(layer.bytes_in for layer in self.layers)

    @property
    def bitrate(self) -> float:
        return sum(layer.bitrate for layer in self.layers)

    @property
    def keyframe_requests(self) -> int:
        return sum(layer.keyframe_requests for layer in self.layers)


def _codec_key(codec: Codec, *, any_mode: bool = False) -> tuple[str, ...]:
    """Name and clock rate; for H.264 its packetization mode (unless ``any_mode``) and ``profile_idc``
    (absent profile-level-id is Baseline, RFC 6184 §8.1). Levels are not compared: receivers offer
    level-asymmetry-allowed and decode the lower levels of their profile anyway."""
    if codec.mime == "h264":
        profile = codec.fmtp_params().get("profile-level-id", H264_DEFAULT_PROFILE_LEVEL_ID)[:2].lower()
        return ("h264", profile) if any_mode else ("h264", h264_packetization_mode(codec), profile)
    return (codec.mime, str(codec.clock_rate))


def payload_type_map(producer: Producer, media: NegotiatedMedia) -> dict[int, int]:
    """Producer payload type → the subscriber's payload type for the same codec (by name and fmtp).

    A mode-0 H.264 publisher maps onto the subscriber's mode-1 entry of the same profile (its single
    NAL unit packets are valid mode-1 packets), then onto any H.264 entry."""
    mapping: dict[int, int] = {}
    for codec in producer.codecs:
        match = next((c for c in media.codecs if _codec_key(c) == _codec_key(codec)), None)
        loose = _codec_key(codec, any_mode=True)
        match = match or next((c for c in media.codecs if _codec_key(c, any_mode=True) == loose), None)
        match = match or next((c for c in media.codecs if c.mime == codec.mime), None)
        if match is not None:
            mapping[codec.payload_type] = match.payload_type
    return mapping
