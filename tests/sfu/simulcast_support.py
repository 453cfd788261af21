"""Synthetic simulcast for sans-IO router tests: a publisher sending three VP8 (or H.264) layers on a
fake clock, and a subscriber-side view of what the router forwarded.

The VP8 stream follows libwebrtc's three-temporal-layer pattern (TID 0, 2, 1, 2 at 30 fps, layer sync
on the first TL1/TL2 frame after each TL0), each layer with its own SSRC, sequence numbers, timestamp
base, picture IDs and TL0PICIDX, as Chrome sends them. A PLI on a layer's SSRC makes that layer's next
frame a keyframe (``keyframe_delay`` late, to model a slow encoder). Payload bytes after the VP8
descriptor carry (layer, frame number, packet index) so the subscriber side can tell what it got.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from roomcast.proto.codecs import MID_URI, REPAIRED_RID_URI, RID_URI
from roomcast.proto.jsep import NegotiatedAnswer, NegotiatedMedia
from roomcast.sfu.router import Router
from roomcast.wire import h264, vp8
from roomcast.wire.rtcp import Pli, SenderReport, parse_compound
from roomcast.wire.rtp import ONE_BYTE_PROFILE, RtpPacket, header_length
from roomcast.wire.sdp import Codec, SessionDescription

VP8_CODEC = Codec(96, "VP8", 90000, None, None, ("nack", "nack pli"))
H264_CODEC = Codec(102, "H264", 90000, None, "packetization-mode=1;profile-level-id=42e01f", ("nack", "nack pli"))
EXT = {MID_URI: 9, RID_URI: 10, REPAIRED_RID_URI: 11}
RIDS = ("q", "h", "f")
TID_PATTERN = (0, 2, 1, 2)
SUB_SSRC, SUB_RTX = 5555, 6666


def publish_media(codec: Codec = VP8_CODEC, layers: tuple[str, ...] = RIDS) -> NegotiatedAnswer:
    media = NegotiatedMedia(
        mid="0",
        kind="video",
        direction="recvonly",
        codecs=(codec,),
        rtx={codec.payload_type: codec.payload_type + 1},
        extensions=dict(EXT),
        remote_ssrcs=(),
        remote_rtx={},
        rids=layers,
        send_ssrc=None,
        send_rtx_ssrc=None,
        track_id=None,
        remote_track_id="cam",
        layers=tuple((rid,) for rid in layers),
    )
    return NegotiatedAnswer(SessionDescription(), (media,), "u", "p", (), "server", None, None)


def subscribe_media(codec: Codec = VP8_CODEC, mid: str = "0", ssrc: int = SUB_SSRC) -> NegotiatedAnswer:
    media = NegotiatedMedia(
        mid=mid,
        kind="video",
        direction="sendonly",
        codecs=(codec,),
        rtx={codec.payload_type: codec.payload_type + 1},
        extensions={},
        remote_ssrcs=(),
        remote_rtx={},
        rids=(),
        send_ssrc=ssrc,
        send_rtx_ssrc=ssrc + 1111,
        track_id="t",
    )
    return NegotiatedAnswer(SessionDescription(), (media,), "u", "p", (), "server", None, None)


@dataclass
class RecordingTransport:
    """The router's view of a WebRtcTransport: clear RTP/RTCP out are recorded, time is set by the test."""

    now: float = 0.0
    closed: bool = False
    connected: bool = True
    on_rtp: object = None
    on_rtcp: object = None
    rtp: list[bytes] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)

    def send_rtp(self, pkt: bytes | bytearray) -> None:
        self.rtp.append(bytes(pkt))

    def send_rtp_rewritten(self, pkt: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int) -> None:
        self.rtp.append(bytes(pkt[:1]) + struct.pack("!BHII", b1, seq, ts, ssrc) + bytes(pkt[12:]))

    def send_rtcp(self, pkt: bytes | bytearray) -> None:
        self.rtcp.append(bytes(pkt))

    def close(self) -> None:
        self.closed = True

    def plis(self) -> list[int]:
        """Media SSRCs of every PLI sent on this transport, in order."""
        return [p.media_ssrc for data in self.rtcp for p in parse_compound(data) if isinstance(p, Pli)]


@dataclass
class LayerState:
    rid: str
    ssrc: int
    seq: int
    ts_base: int
    picture_id: int
    tl0: int
    packets_per_frame: int
    size: int
    keyframe_at: float | None = None  # when a requested keyframe will be sent
    sending: bool = True
    count: int = 0  # packets sent


@dataclass
class SimulcastPublisher:
    """Three layers at 30 fps into ``router`` through ``transport`` (see the module docstring)."""

    transport: RecordingTransport
    codec: str = "vp8"
    keyframe_delay: float = 0.0
    fps: int = 30
    frame: int = 0
    layers: list[LayerState] = field(default_factory=list)
    sent: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (ssrc, seq) -> packet
    announce_packets: int = 3  # MID/RID extensions on the first packets of each layer, as Chrome does
    drop: set[tuple[int, int]] = field(default_factory=set)  # (layer, seq) not delivered (lost upstream)
    plis_seen: int = 0
    rtx_seq: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            self.layers = [
                LayerState("q", 0x1000, 100, 1_000_000, 30000, 200, 1, 300),
                LayerState("h", 0x2000, 40000, 7_000_000, 12000, 10, 2, 700),
                LayerState("f", 0x3000, 65500, 3_000_000_000, 32760, 254, 4, 1000),
            ]
            for layer in self.layers:
                layer.keyframe_at = 0.0  # each layer begins with a keyframe

    @property
    def now(self) -> float:
        return self.frame / self.fps

    def handle_rtcp(self) -> None:
        """Read the PLIs the router sent since last time: keyframes are due on those layers."""
        for ssrc in self.transport.plis()[self.plis_seen :]:
            self.plis_seen += 1
            for layer in self.layers:
                if layer.ssrc == ssrc and layer.keyframe_at is None:
                    layer.keyframe_at = self.now + self.keyframe_delay

    def send_frame(self) -> None:
        now = self.now
        self.handle_rtcp()
        tid = TID_PATTERN[self.frame % 4]
        for index, layer in enumerate(self.layers):
            if not layer.sending:
                continue
            key = layer.keyframe_at is not None and now >= layer.keyframe_at
            if key:
                layer.keyframe_at = None
            frame_tid = 0 if key else tid
            if frame_tid == 0:
                layer.tl0 = (layer.tl0 + 1) & 0xFF
            layer.picture_id = (layer.picture_id + 1) & 0x7FFF
            count = layer.packets_per_frame * (3 if key else 1)
            ts = (layer.ts_base + self.frame * 3000) & 0xFFFFFFFF
            for k in range(count):
                payload = self._payload(layer, index, key, frame_tid, k, count)
                self._send(index, layer, payload, ts, marker=k == count - 1)
        self.frame += 1

    def _payload(self, layer: LayerState, index: int, key: bool, tid: int, k: int, count: int) -> bytes:
        tag = struct.pack("!BIH", index, self.frame, k)
        filler = bytes(max(0, layer.size - 16))
        if self.codec == "h264":
            if k == 0 and key:
                sps, pps = b"\x67\x42\xe0\x1f", b"\x68\xce\x3c\x80"
                return bytes([24]) + struct.pack("!H", 4) + sps + struct.pack("!H", 4) + pps + tag + filler
            nal_type = h264.NAL_IDR if key else h264.NAL_SLICE
            return bytes([0x60 | nal_type, 0x00 if k else 0x80]) + tag + filler  # first_mb_in_slice != 0 after
        sync = tid > 0 and self.frame % 4 in (1, 2)
        desc = vp8.descriptor(begin=k == 0, picture_id=layer.picture_id, tl0picidx=layer.tl0, tid=tid, layer_sync=sync)
        header = bytes([0x00 if key else 0x01]) if k == 0 else b""
        return desc + header + tag + filler

    def _send(self, index: int, layer: LayerState, payload: bytes, ts: int, marker: bool) -> None:
        layer.seq = (layer.seq + 1) & 0xFFFF
        layer.count += 1
        announce = layer.count <= self.announce_packets
        exts = ((EXT[MID_URI], b"0"), (EXT[RID_URI], layer.rid.encode())) if announce else ()
        pt = H264_CODEC.payload_type if self.codec == "h264" else VP8_CODEC.payload_type
        pkt = RtpPacket(
            pt,
            layer.seq,
            ts,
            layer.ssrc,
            payload,
            marker,
            extension_profile=ONE_BYTE_PROFILE if exts else None,
            extensions=exts,
        ).serialize()
        self.sent[(layer.ssrc, layer.seq)] = pkt
        if (index, layer.seq) in self.drop:
            return
        self.transport.now = self.now
        self.transport.on_rtp(pkt)  # type: ignore[operator]

    def resend(self, index: int, seq: int) -> None:
        """Deliver a packet that was lost upstream (as an RTX repair would, unwrapped by the router)."""
        layer = self.layers[index]
        pkt = self.sent[(layer.ssrc, seq)]
        self.rtx_seq += 1
        rtx = RtpPacket(  # RFC 4588 §4: the original sequence number in front of the payload
            (pkt[1] & 0x7F) + 1,
            self.rtx_seq,
            struct.unpack_from("!I", pkt, 4)[0],
            layer.ssrc + 1,
            pkt[2:4] + pkt[header_length(pkt) :],
            extension_profile=ONE_BYTE_PROFILE,
            extensions=((EXT[MID_URI], b"0"), (EXT[REPAIRED_RID_URI], layer.rid.encode())),
        ).serialize()
        self.transport.now = self.now
        self.transport.on_rtp(rtx)  # type: ignore[operator]

    def sender_report(self, index: int) -> None:
        """A sender report for one layer: NTP = the fake clock, RTP = that instant on the layer's timeline."""
        layer = self.layers[index]
        ntp = int((1000.0 + self.now) * 2**32)
        rtp = (layer.ts_base + round(self.now * 90000)) & 0xFFFFFFFF
        self.transport.now = self.now
        self.transport.on_rtcp(SenderReport(layer.ssrc, ntp, rtp, 1, 1).serialize())  # type: ignore[operator]


@dataclass(frozen=True)
class Received:
    seq: int
    ts: int
    ssrc: int
    layer: int  # from the payload tag; -1 for padding
    frame: int
    keyframe_begin: bool
    begin: bool
    tid: int
    picture_id: int
    tl0: int
    marker: bool


def received(packets: list[bytes], codec: str = "vp8") -> list[Received]:
    out = []
    for data in packets:
        pkt = RtpPacket.parse(data)
        if not pkt.payload:
            out.append(Received(pkt.sequence_number, pkt.timestamp, pkt.ssrc, -1, -1, False, False, -1, -1, -1, False))
            continue
        if codec == "h264":
            raw = pkt.payload
            pos = 13 if raw[0] & 0x1F == 24 else 2
            keyframe_begin = h264.keyframe_start(raw, 0)
            begin, tid, pic, tl0 = keyframe_begin or bool(raw[1] & 0x80), -1, -1, -1
        else:
            d = vp8.read_descriptor(pkt.payload, 0)
            begin, keyframe_begin, tid, pic, tl0 = d[0], d[1], d[2], d[4], d[6]
            pos = d[7] + 2 if d[7] >= 0 else 1
            pos += 1 if begin else 0
        index, frame, _k = struct.unpack_from("!BIH", pkt.payload, pos)
        out.append(
            Received(
                pkt.sequence_number,
                pkt.timestamp,
                pkt.ssrc,
                index,
                frame,
                keyframe_begin,
                begin,
                tid,
                pic,
                tl0,
                pkt.marker,
            )
        )
    return out


def setup(
    codec: str = "vp8", subscribers: int = 1, keyframe_delay: float = 0.0
) -> tuple[Router, SimulcastPublisher, list[RecordingTransport], str]:
    router = Router("room")
    pub_transport = RecordingTransport()
    pub = router.participant("pub", "alice")
    c = H264_CODEC if codec == "h264" else VP8_CODEC
    router.attach_publisher(pub, pub_transport, publish_media(c), {})  # type: ignore[arg-type]
    sid = router.tracks()[0].sid
    publisher = SimulcastPublisher(pub_transport, codec=codec, keyframe_delay=keyframe_delay)
    downs = []
    for i in range(subscribers):
        down = RecordingTransport()
        media = router.participant(f"sub{i}", f"viewer{i}")
        router.attach_subscriber(media, down, subscribe_media(c), {"0": sid})  # type: ignore[arg-type]
        downs.append(down)
    return router, publisher, downs, sid


def run(router: Router, publisher: SimulcastPublisher, seconds: float) -> None:
    """Send frames for ``seconds`` of fake time, ticking the router after each (as the runtime does)."""
    end = publisher.frame + round(seconds * publisher.fps)
    while publisher.frame < end:
        publisher.send_frame()
        router.tick(publisher.now)
