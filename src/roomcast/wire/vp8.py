"""VP8 over RTP (RFC 7741) and the IVF container, for publishing pre-encoded video without decoding.

Packetizing is framing only: each frame is split into payloads of at most ``mtu`` bytes behind a
1-byte payload descriptor (S bit on the first packet of a frame, partition 0); the RTP marker goes on a
frame's last packet. Keyframes are recognised from the frame tag (RFC 6386 §9.1: bit 0 clear).

An SFU forwarding simulcast reads and rewrites the descriptor's picture ID, TL0PICIDX and TID
(RFC 7741 §4.2) in place: :func:`read_descriptor` works on the raw RTP packet at an offset (no slice,
no object but its result tuple), :func:`write_picture_id` / :func:`write_tl0picidx` patch a copy.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from roomcast.wire import ParseError

IVF_SIGNATURE = b"DKIF"


@dataclass(frozen=True, slots=True)
class IvfFrame:
    timestamp: int  # in the file's time base
    data: bytes

    @property
    def keyframe(self) -> bool:
        return bool(self.data) and not self.data[0] & 0x01


@dataclass(frozen=True, slots=True)
class IvfHeader:
    fourcc: bytes
    width: int
    height: int
    rate: int
    scale: int


# read_descriptor() result, by index (a plain tuple: it is built once per packet on the simulcast path).
BEGIN, KEYFRAME, TID, LAYER_SYNC, PICTURE_ID, PICTURE_ID_POS, TL0PICIDX, TL0PICIDX_POS = range(8)
NO_DESCRIPTOR = (False, False, -1, False, -1, -1, -1, -1)


def read_descriptor(pkt: bytes | bytearray, pos: int) -> tuple[bool, bool, int, bool, int, int, int, int]:
    """RFC 7741 §4.2 payload descriptor of the VP8 payload starting at ``pkt[pos]``.

    Returns ``(begin, keyframe, tid, layer_sync, picture_id, picture_id_pos, tl0picidx, tl0picidx_pos)``:
    ``begin`` is the first packet of a frame (S set, PID 0); ``keyframe`` that packet of a key frame
    (the VP8 payload header's P bit clear, RFC 7741 §4.3); absent fields are -1 (``tid`` too), positions
    are offsets in ``pkt``. A truncated descriptor gives :data:`NO_DESCRIPTOR`; nothing raises.
    """
    end = len(pkt)
    if pos >= end:
        return NO_DESCRIPTOR
    b0 = pkt[pos]
    i = pos + 1
    picture_id = picture_id_pos = tl0 = tl0_pos = tid = -1
    sync = False
    if b0 & 0x80:  # X
        if i >= end:
            return NO_DESCRIPTOR
        x = pkt[i]
        i += 1
        if x & 0x80:  # I: picture ID, 7 or 15 bits (M)
            if i >= end:
                return NO_DESCRIPTOR
            picture_id_pos = i
            if pkt[i] & 0x80:
                if i + 1 >= end:
                    return NO_DESCRIPTOR
                picture_id = ((pkt[i] & 0x7F) << 8) | pkt[i + 1]
                i += 2
            else:
                picture_id = pkt[i]
                i += 1
        if x & 0x40:  # L: TL0PICIDX
            if i >= end:
                return NO_DESCRIPTOR
            tl0_pos = i
            tl0 = pkt[i]
            i += 1
        if x & 0x30:  # T and/or K: TID|Y|KEYIDX
            if i >= end:
                return NO_DESCRIPTOR
            if x & 0x20:
                tid = pkt[i] >> 6
                sync = bool(pkt[i] & 0x20)
            i += 1
    begin = bool(b0 & 0x10) and not b0 & 0x07
    keyframe = begin and i < end and not pkt[i] & 0x01
    return begin, keyframe, tid, sync, picture_id, picture_id_pos, tl0, tl0_pos


def write_picture_id(buf: bytearray, pos: int, picture_id: int) -> None:
    """Overwrite the picture ID at ``pos`` keeping its width (M bit): 15 bits, or 7."""
    if buf[pos] & 0x80:
        buf[pos] = 0x80 | ((picture_id >> 8) & 0x7F)
        buf[pos + 1] = picture_id & 0xFF
    else:
        buf[pos] = picture_id & 0x7F


def write_tl0picidx(buf: bytearray, pos: int, tl0picidx: int) -> None:
    buf[pos] = tl0picidx & 0xFF


def descriptor(
    *,
    begin: bool = True,
    picture_id: int | None = None,
    tl0picidx: int | None = None,
    tid: int | None = None,
    layer_sync: bool = False,
    keyidx: int | None = None,
) -> bytes:
    """Build a payload descriptor (for tests and tools): 15-bit picture IDs, partition 0."""
    x = (0x80 if picture_id is not None else 0) | (0x40 if tl0picidx is not None else 0)
    x |= (0x20 if tid is not None else 0) | (0x10 if keyidx is not None else 0)
    out = bytearray([(0x80 if x else 0) | (0x10 if begin else 0)])
    if x:
        out.append(x)
    if picture_id is not None:
        out += bytes([0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF])
    if tl0picidx is not None:
        out.append(tl0picidx & 0xFF)
    if tid is not None or keyidx is not None:
        out.append(((tid or 0) << 6) | (0x20 if layer_sync else 0) | ((keyidx or 0) & 0x1F))
    return bytes(out)


def read_ivf(data: bytes) -> tuple[IvfHeader, list[IvfFrame]]:
    if len(data) < 32 or data[:4] != IVF_SIGNATURE:
        raise ParseError("not an IVF file")
    header_size = struct.unpack_from("<H", data, 6)[0]
    fourcc, width, height, rate, scale = struct.unpack_from("<4sHHII", data, 8)
    frames = []
    pos = header_size
    while pos + 12 <= len(data):
        size, timestamp = struct.unpack_from("<IQ", data, pos)
        if pos + 12 + size > len(data):
            raise ParseError("IVF frame runs past the end of the file")
        frames.append(IvfFrame(timestamp, data[pos + 12 : pos + 12 + size]))
        pos += 12 + size
    return IvfHeader(fourcc, width, height, rate or 30, scale or 1), frames


def packetize(frame: bytes, mtu: int = 1100) -> Iterator[tuple[bytes, bool]]:
    """RFC 7741 §4.2: (payload, marker) per RTP packet of one frame."""
    if not frame:
        return
    step = mtu - 1
    for offset in range(0, len(frame), step):
        start = offset == 0
        last = offset + step >= len(frame)
        yield bytes([0x10 if start else 0x00]) + frame[offset : offset + step], last


def depacketize(payloads: list[bytes]) -> bytes:
    """Reassemble one frame from its RTP payloads (descriptor extensions skipped, RFC 7741 §4.2)."""
    out = bytearray()
    for payload in payloads:
        if not payload:
            raise ParseError("empty VP8 payload")
        pos = 1
        if payload[0] & 0x80:  # X: extension byte follows
            if len(payload) < 2:
                raise ParseError("truncated VP8 payload descriptor")
            ext = payload[1]
            pos = 2
            if ext & 0x80:  # I: picture id, 7 or 15 bits
                pos += 2 if len(payload) > pos and payload[pos] & 0x80 else 1
            if ext & 0x40:  # L: TL0PICIDX
                pos += 1
            if ext & 0x30:  # T or K: TID/KEYIDX byte
                pos += 1
        if pos > len(payload):
            raise ParseError("VP8 payload descriptor runs past the payload")
        out += payload[pos:]
    return bytes(out)
