"""VP8 over RTP (RFC 7741) and the IVF container, for publishing pre-encoded video without decoding.

Packetizing is framing only: each frame is split into payloads of at most ``mtu`` bytes behind a
1-byte payload descriptor (S bit on the first packet of a frame, partition 0); the RTP marker goes on a
frame's last packet. Keyframes are recognised from the frame tag (RFC 6386 §9.1: bit 0 clear).
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
