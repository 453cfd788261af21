"""Reassemble the frames of one received track from its decrypted RTP packets (sans-IO: bytes in, frames out).

A subscriber that records, relays or analyses media wants whole frames, not packets: every packet of a
video frame shares its RTP timestamp and the marker bit ends it (RFC 7741 §4.1, RFC 6184 §5.1); an
audio packet is a frame (RFC 7587 §4.2). The network reorders and loses packets, so packets wait in a
small reorder window keyed by the extended (wrap-free) sequence number. A frame is complete only when
its packets are contiguous, its first packet starts a frame for its codec (VP8 S bit on partition 0,
H.264 parameter sets or the first slice of a picture) and its last packet carries the marker; anything
else is dropped and counted, never emitted as complete.

    assembler = FrameAssembler("TR_x", "vp8")
    for frame in assembler.push(rtp_bytes, now):
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from roomcast.wire import ParseError, h264, opus, vp8
from roomcast.wire.rtp import RtpPacket

CODECS = ("vp8", "h264", "opus")
RESTART_JUMP = 0x1000  # a sequence jump this large is a new numbering, not loss or reordering


@dataclass(frozen=True, slots=True)
class Frame:
    track_sid: str
    codec: str  # "vp8" | "h264" | "opus"
    timestamp: int  # RTP timestamp (90 kHz video, 48 kHz Opus)
    keyframe: bool  # decodable on its own (VP8 key frame, H.264 IDR, any audio frame)
    data: bytes  # VP8 frame, H.264 access unit in Annex-B form, or one Opus packet
    complete: bool  # False only with ``emit_incomplete=True``, for frames that lost packets


@dataclass(slots=True)
class FrameStats:
    frames: int = 0  # complete frames emitted
    dropped_frames: int = 0  # frames given up because packets were lost or could not be depacketized
    lost_packets: int = 0  # sequence numbers skipped after waiting for them
    duplicates: int = 0  # packets already seen, or arriving after they were declared lost
    malformed: int = 0  # packets that are not RTP


def _vp8_starts_frame(payload: bytes) -> bool:
    """S bit set and partition index 0 (RFC 7741 §4.2): the first packet of a frame."""
    return bool(payload) and payload[0] & 0x1F == 0x10


def _vp8_keyframe(payload: bytes) -> bool:
    """RFC 6386 §9.1: in the frame tag, bit 0 of the first byte clear means a key frame."""
    if not _vp8_starts_frame(payload):
        return False
    try:
        body = vp8.depacketize([payload])
    except ParseError:
        return False
    return bool(body) and not body[0] & 0x01


def _h264_keyframe(payload: bytes) -> bool:
    return h264.NAL_IDR in h264.payload_nal_types(payload)


_PARAMETER_SETS = frozenset({h264.NAL_SPS, h264.NAL_PPS})
_STARTS: dict[str, Callable[[bytes], bool]] = {"vp8": _vp8_starts_frame, "h264": h264.starts_access_unit}
_KEYFRAME: dict[str, Callable[[bytes], bool]] = {"vp8": _vp8_keyframe, "h264": _h264_keyframe}
_DEPACKETIZE: dict[str, Callable[[list[bytes]], bytes]] = {"vp8": vp8.depacketize, "h264": h264.depacketize}


class FrameAssembler:
    """Frames of one track from its RTP packets in any order.

    The first packet pushed sets where the stream starts (anything older is late). A missing sequence
    number is waited for until ``window`` newer packets have arrived or the oldest waiting packet is
    ``max_delay`` seconds old (measured by the ``now`` given to :meth:`push`), then declared lost;
    frames it touched are dropped.
    """

    def __init__(
        self,
        track_sid: str,
        codec: str,
        *,
        window: int = 64,
        max_delay: float = 0.2,
        emit_incomplete: bool = False,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"unsupported codec {codec!r} (one of {', '.join(CODECS)})")
        self.track_sid = track_sid
        self.codec = codec
        self.window = window
        self.max_delay = max_delay
        self.emit_incomplete = emit_incomplete
        self.stats = FrameStats()
        self._held: dict[int, tuple[RtpPacket, float]] = {}  # extended seq -> packet, arrival time
        self._next: int | None = None  # extended seq released next
        self._highest = 0
        # The frame being built from released packets.
        self._payloads: list[bytes] = []
        self._timestamp: int | None = None
        self._intact = False  # began like a frame and nothing lost since
        self._keyframe = False
        self._parameter_sets: set[int] = set()  # H.264 SPS/PPS types seen: an IDR needs both to decode

    def push(self, packet: bytes, now: float = 0.0) -> list[Frame]:
        """Take one decrypted RTP packet; return the frames it completes, oldest first."""
        try:
            rtp = RtpPacket.parse(packet)
        except ParseError:
            self.stats.malformed += 1
            return []
        if self._next is None:
            self._next = self._highest = rtp.sequence_number
        ext = self._extend(rtp.sequence_number)
        if abs(ext - self._highest) > RESTART_JUMP:  # not reordering: the sender restarted its numbering
            self._reset(ext)
        elif ext < self._next or ext in self._held:
            self.stats.duplicates += 1
            return []
        self._held[ext] = (rtp, now)
        self._highest = max(self._highest, ext)
        return self._release(now)

    def flush(self) -> list[Frame]:
        """Give up on every missing packet now (end of stream): release what is held, drop what is partial."""
        out = self._release(float("inf"))
        if self._payloads:
            self._finish(out, ended=False)
        return out

    def _extend(self, seq: int) -> int:
        """RFC 3550 §A.1: the extended sequence number closest to the highest one seen."""
        delta = (seq - self._highest) & 0xFFFF
        return self._highest + (delta - 0x10000 if delta >= 0x8000 else delta)

    def _reset(self, ext: int) -> None:
        if self._payloads:
            self._drop()
        self.stats.lost_packets += len(self._held)
        self._held.clear()
        self._next = self._highest = ext

    def _release(self, now: float) -> list[Frame]:
        out: list[Frame] = []
        assert self._next is not None
        while self._held:
            if self._next in self._held:
                rtp, _ = self._held.pop(self._next)
                self._next += 1
                self._take(rtp, out)
                continue
            oldest = min(self._held)
            waited = now - self._held[oldest][1]
            if self._highest - self._next < self.window and waited < self.max_delay:
                break
            self.stats.lost_packets += oldest - self._next
            self._next = oldest
            self._gap()
        return out

    def _gap(self) -> None:
        """Packets were lost after the last released one: the frame in progress can no longer be whole."""
        self._intact = False

    def _take(self, rtp: RtpPacket, out: list[Frame]) -> None:
        if self.codec == "opus":
            self._audio(rtp, out)
            return
        if self._payloads and rtp.timestamp != self._timestamp:
            self._finish(out, ended=False)  # the previous frame lost its last packet
        if not self._payloads:
            self._timestamp = rtp.timestamp
            self._intact = _STARTS[self.codec](rtp.payload)
            self._keyframe = False
        self._keyframe = self._keyframe or _KEYFRAME[self.codec](rtp.payload)
        if self.codec == "h264":
            self._parameter_sets.update(t for t in h264.payload_nal_types(rtp.payload) if t in _PARAMETER_SETS)
        self._payloads.append(rtp.payload)
        if rtp.marker:
            self._finish(out, ended=True)

    def _audio(self, rtp: RtpPacket, out: list[Frame]) -> None:
        try:
            data = opus.depacketize(rtp.payload)
        except ParseError:
            self.stats.dropped_frames += 1
            return
        self.stats.frames += 1
        out.append(Frame(self.track_sid, "opus", rtp.timestamp, True, data, True))

    def _finish(self, out: list[Frame], *, ended: bool) -> None:
        complete = self._intact and ended
        if self.codec == "h264" and self._keyframe and len(self._parameter_sets) < 2:
            complete = False  # an IDR whose SPS/PPS were lost is not a keyframe anyone can start from
        data = b""
        try:
            data = _DEPACKETIZE[self.codec](self._payloads)
        except ParseError:
            complete = False
        if complete:
            self.stats.frames += 1
        else:
            self.stats.dropped_frames += 1
        if complete or (self.emit_incomplete and data):
            out.append(Frame(self.track_sid, self.codec, self._timestamp or 0, self._keyframe, data, complete))
        self._payloads = []

    def _drop(self) -> None:
        self.stats.dropped_frames += 1
        self._payloads = []
