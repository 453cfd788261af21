"""VP8 simulcast with temporal layers over the simulated lossy network, and a subscriber that decodes the
way libwebrtc's receiver does: publisher → [lossy link] → router → [lossy link] → subscriber.

The publisher sends two VP8 layers at 30 fps in Chrome's three-temporal-layer pattern (TID 0, 2, 1, 2; layer
sync on the TL1/TL2 frames of every other period, as Chrome marks them) and answers NACKs with RTX.
The subscriber NACKs like Chrome (at once, then again every 100 ms: a receive-only peer knows no RTT) and
counts a frame as decoded with the rules of libwebrtc's receive pipeline that matter under loss:

- ``RtpVp8RefFinder``: a frame depends on the previous TL0 frame (TID 0), on its TL0 frame (a layer-sync
  frame), or on its TL0 frame and the latest frame of its layer or below (any other frame); a frame whose
  packets all went missing blocks what depends on it. Without TID/TL0PICIDX every frame depends on the one
  before.
- ``FrameBuffer`` / ``FrameDecodeTiming``: frames decode in order, but a frame that completes more than
  :data:`LATE` after it was due is skipped (fast-forward) if a later frame that does not depend on it is
  decodable by then; what depends on a skipped frame is lost too.

A frame whose only (or last) packet is lost can be repaired only after the next frame shows the gap, so
with temporal layers every such frame is late, and skippable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from roomcast.proto.codecs import MID_URI, REPAIRED_RID_URI, RID_URI
from roomcast.proto.common import Addr, Transmit
from roomcast.proto.feedback import NackGenerator
from roomcast.sfu.router import Router
from roomcast.wire import vp8
from roomcast.wire.rtcp import GenericNack, Pli, parse_compound
from roomcast.wire.rtp import ONE_BYTE_PROFILE, RtpPacket, header_length, unwrap_rtx
from tests.sfu.simulcast_support import EXT, SUB_RTX, SUB_SSRC, publish_media, subscribe_media
from tests.sfu.test_router_simnet import FakeTransport
from tests.support.simnet import SimNetwork

PUB: Addr = ("10.0.0.1", 1)
SERVER_IN: Addr = ("10.0.0.2", 1)
SERVER_OUT: Addr = ("10.0.0.2", 2)
SUB: Addr = ("10.0.0.3", 1)
FPS = 30
TID_PATTERN = (0, 2, 1, 2)
LATE = 0.010  # libwebrtc: about 5 ms of jitter-buffer slack on a clean path, and 5 ms before a fast-forward
CHROME_NACK_RETRY = 0.1  # NackRequester's resend delay without an RTT (kDefaultRttMs)


@dataclass
class PublishedLayer:
    rid: str
    ssrc: int
    packets_per_frame: int
    seq: int = 1000
    picture_id: int = 2000
    tl0: int = 10
    rtx_seq: int = 0
    keyframe_due: bool = True


@dataclass
class LossyPublisher:
    """Two VP8 layers with temporal layers; answers NACKs with RTX and PLIs with a keyframe."""

    address: Addr
    net: SimNetwork
    frames: int
    layers: list[PublishedLayer] = field(
        default_factory=lambda: [PublishedLayer("q", 0x1000, 1), PublishedLayer("h", 0x2000, 2)]
    )
    sent: dict[tuple[int, int], bytes] = field(default_factory=dict)
    temporal_layers: bool = True  # False: one temporal layer, no TID/TL0PICIDX (Chrome's non-simulcast L1T1)
    frame: int = 0
    next_at: float = 0.0
    retransmitted: int = 0

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        for packet in parse_compound(data[1:]):
            for layer in self.layers:
                if isinstance(packet, Pli) and packet.media_ssrc == layer.ssrc:
                    layer.keyframe_due = True
                if isinstance(packet, GenericNack) and packet.media_ssrc == layer.ssrc:
                    for seq in packet.lost:
                        self._resend(layer, seq)

    def _resend(self, layer: PublishedLayer, seq: int) -> None:
        original = self.sent.get((layer.ssrc, seq))
        if original is None:
            return
        layer.rtx_seq += 1
        self.retransmitted += 1
        rtx = RtpPacket(  # RFC 4588 §4; the repaired-RID extension names the layer (RFC 8852 §3.2)
            97,
            layer.rtx_seq,
            struct.unpack_from("!I", original, 4)[0],
            layer.ssrc + 1,
            original[2:4] + original[header_length(original) :],
            bool(original[1] & 0x80),
            extension_profile=ONE_BYTE_PROFILE,
            extensions=((EXT[MID_URI], b"0"), (EXT[REPAIRED_RID_URI], layer.rid.encode())),
        ).serialize()
        self.net.send(self.address, SERVER_IN, b"P" + rtx)

    def handle_timeout(self, now: float) -> None:
        if self.frame >= self.frames or now < self.next_at:
            return
        tid = TID_PATTERN[self.frame % 4] if self.temporal_layers else 0
        sync = tid > 0 and self.frame % 8 in (1, 2)  # Chrome marks layer sync on every other period
        for layer in self.layers:
            key = layer.keyframe_due
            layer.keyframe_due = False
            frame_tid = 0 if key else tid
            if frame_tid == 0:
                layer.tl0 = (layer.tl0 + 1) & 0xFF
            layer.picture_id = (layer.picture_id + 1) & 0x7FFF
            count = layer.packets_per_frame * (3 if key else 1)
            for k in range(count):
                desc = vp8.descriptor(
                    begin=k == 0,
                    picture_id=layer.picture_id,
                    tl0picidx=layer.tl0 if self.temporal_layers else None,
                    tid=frame_tid if self.temporal_layers else None,
                    layer_sync=sync,
                )
                header = bytes([0x00 if key else 0x01]) if k == 0 else b""
                layer.seq = (layer.seq + 1) & 0xFFFF
                exts = ((EXT[MID_URI], b"0"), (EXT[RID_URI], layer.rid.encode())) if self.frame < 3 else ()
                pkt = RtpPacket(
                    96,
                    layer.seq,
                    self.frame * 3000,
                    layer.ssrc,
                    desc + header + bytes(400),
                    k == count - 1,
                    extension_profile=ONE_BYTE_PROFILE if exts else None,
                    extensions=exts,
                ).serialize()
                self.sent[(layer.ssrc, layer.seq)] = pkt
                self.net.send(self.address, SERVER_IN, b"P" + pkt)
        self.frame += 1
        self.next_at = self.frame / FPS

    def poll_transmit(self) -> Transmit | None:
        return None

    def poll_timeout(self) -> float | None:
        return self.next_at if self.frame < self.frames else None


@dataclass
class Frame:
    tid: int = -1
    sync: bool = False
    tl0: int = -1
    key: bool = False
    ts: int = -1
    first_seq: int = -1  # the packet with the S bit
    last_seq: int = -1  # the packet with the marker bit
    seqs: set[int] = field(default_factory=set)


@dataclass
class DecodingSubscriber:
    """Receives the forwarded layer, NACKs like Chrome, and decodes as libwebrtc would (module docstring)."""

    address: Addr
    net: SimNetwork
    nack: NackGenerator = field(default_factory=lambda: NackGenerator(rtt=CHROME_NACK_RETRY, max_tries=10, max_age=3.0))
    arrival: dict[int, float] = field(default_factory=dict)  # sequence number -> first arrival
    frames: dict[int, Frame] = field(default_factory=dict)  # picture ID -> what arrived of it
    next_nack: float | None = None
    plis: int = 0

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        if data[:1] != b"P":
            return
        pkt = data[1:]
        if pkt[1] & 0x7F == 97:
            pkt = unwrap_rtx(pkt, SUB_SSRC, 96)
        seq = (pkt[2] << 8) | pkt[3]
        missing = self.nack.missing
        self.nack.on_packet(seq, now)
        if self.nack.missing > missing:
            self._send_nacks(now)  # a new gap: asked for at once
        pos = header_length(pkt)
        if seq in self.arrival or pos >= len(pkt) or pkt[0] & 0x20:
            return  # a duplicate, or padding
        self.arrival[seq] = now
        d = vp8.read_descriptor(pkt, pos)
        frame = self.frames.setdefault(d[vp8.PICTURE_ID], Frame())
        frame.seqs.add(seq)
        frame.tid, frame.tl0, frame.ts = d[vp8.TID], d[vp8.TL0PICIDX], struct.unpack_from("!I", pkt, 4)[0]
        if d[vp8.BEGIN]:
            frame.first_seq, frame.sync, frame.key = seq, d[vp8.LAYER_SYNC], d[vp8.KEYFRAME]
        if pkt[1] & 0x80:
            frame.last_seq = seq

    def _send_nacks(self, now: float) -> None:
        lost = self.nack.due(now)
        if lost:
            nack = GenericNack(9, SUB_SSRC, tuple(lost)).serialize()
            self.net.send(self.address, SERVER_OUT, b"C" + nack)
        self.next_nack = now + 0.02 if self.nack.missing else None  # NackRequester's 20 ms process

    def handle_timeout(self, now: float) -> None:
        self._send_nacks(now)

    def poll_transmit(self) -> Transmit | None:
        return None

    def poll_timeout(self) -> float | None:
        return self.next_nack

    # ------------------------------------------------------------------ decoding, after the run

    def complete_at(self, pic: int) -> float:
        """When all packets of frame ``pic`` had arrived (inf: never)."""
        frame = self.frames.get(pic)
        if frame is None or frame.first_seq < 0 or frame.last_seq < 0:
            return float("inf")
        seqs = range(frame.first_seq, frame.last_seq + 1)  # no wrap within these runs
        return max((self.arrival.get(s, float("inf")) for s in seqs), default=float("inf"))

    def references(self, pic: int, first: int) -> list[int]:
        """What ``pic`` depends on, as ``RtpVp8RefFinder`` infers it from TID, Y and TL0PICIDX; -1 stands for
        a frame that never completed (the ref finder waits for it: nothing after it on that chain decodes)."""
        frame = self.frames[pic]
        if frame.key:
            return []
        if frame.tid < 0 or frame.tl0 < 0:
            return [pic - 1]  # no temporal layers: each frame needs the one before

        def known(p: int) -> bool:
            return p in self.frames and self.complete_at(p) < float("inf")

        base_tl0 = (frame.tl0 - 1) & 0xFF if frame.tid == 0 else frame.tl0
        earlier = range(pic - 1, first - 1, -1)
        base = next((p for p in earlier if known(p) and (self.frames[p].tid, self.frames[p].tl0) == (0, base_tl0)), -1)
        if frame.tid == 0 or frame.sync:
            return [base]
        refs = [base]
        for layer in range(1, frame.tid + 1):  # the latest frame on each layer up to its own (layer_info)
            ref = next((p for p in earlier if known(p) and self.frames[p].tid == layer), -1)
            refs.append(ref)
        oldest = min(refs)
        if oldest >= 0 and any(not known(p) for p in range(oldest + 1, pic)):
            return [-1]  # a frame between its references and it never arrived: stashed for good
        return refs

    def decoded(self) -> tuple[int, int]:
        """(frames decoded, frames forwarded): picture IDs from the first keyframe to the last seen."""
        pics = sorted(p for p in self.frames if self.complete_at(p) < float("inf"))
        first = next(p for p in pics if self.frames[p].key)
        last = max(self.frames)
        offset = min(self.complete_at(p) - self.frames[p].ts / 90000 for p in pics)  # the on-time arrival
        done: dict[int, float] = {}  # decoded frame -> when it could be decoded
        for pic in range(first, last + 1):
            if pic not in self.frames:
                continue
            refs = self.references(pic, first)
            if any(r not in done for r in refs):
                continue  # a reference was never decoded: neither is this frame
            ready = max([self.complete_at(pic), *(done[r] for r in refs)])
            if ready == float("inf"):
                continue
            due = self.frames[pic].ts / 90000 + offset
            if ready > due + LATE and self._later_decodable(pic, last, first, done, ready):
                continue  # fast-forwarded: a later frame that does not need it was decodable first
            done[pic] = ready
        return len(done), last - first + 1

    def _later_decodable(self, pic: int, last: int, first: int, done: dict[int, float], at: float) -> bool:
        """Was a frame after ``pic`` complete by ``at`` with every reference already decoded (so not ``pic``)?"""
        for later in range(pic + 1, last + 1):
            complete = later in self.frames and self.complete_at(later) <= at
            if complete and all(r in done for r in self.references(later, first)):
                return True
        return False


def build(
    loss: float, seed: int, seconds: float, *, temporal_layers: bool = True
) -> tuple[SimNetwork, Router, LossyPublisher, DecodingSubscriber, list[object]]:
    """Publisher and subscriber 1 ms from the router on links losing ``loss`` of the packets each way
    (RTP, RTCP, NACKs and RTX alike, as the F5 fault does on ``lo``); the subscriber receives layer 0."""
    net = SimNetwork(seed=seed)
    net.link(PUB, SERVER_IN, loss=loss, delay=0.001)
    net.link(SERVER_OUT, SUB, loss=loss, delay=0.001)
    router = Router("room")
    up = FakeTransport(SERVER_IN, PUB, net)
    down = FakeTransport(SERVER_OUT, SUB, net)
    router.attach_publisher(router.participant("pub", "alice"), up, publish_media(layers=("q", "h")), {})  # type: ignore[arg-type]
    sid = router.tracks()[0].sid
    sub = router.participant("sub", "bob")
    router.attach_subscriber(sub, down, subscribe_media(), {"0": sid})  # type: ignore[arg-type]
    up.router = down.router = router
    router.set_target_layer("sub", sid, 0)
    publisher = LossyPublisher(PUB, net, frames=round(seconds * FPS), temporal_layers=temporal_layers)
    subscriber = DecodingSubscriber(SUB, net)
    assert SUB_RTX == SUB_SSRC + 1111  # the subscriber's RTX stream (subscribe_media), unwrapped above by its PT
    return net, router, publisher, subscriber, [up, down, publisher, subscriber]
