"""RTP packets (RFC 3550 §5.1), header extensions (RFC 8285) and RTX (RFC 4588 §4).

:class:`RtpPacket` is for tests, tools and control paths. The forwarding hot path never builds one: it
uses :func:`header_length`, :func:`read_extension` and ``struct`` offsets on the raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from roomcast.wire import ParseError

SEQ_OFFSET = 2
TS_OFFSET = 4
SSRC_OFFSET = 8
ONE_BYTE_PROFILE = 0xBEDE
_HEADER = struct.Struct("!BBHII")


def header_length(pkt: bytes | bytearray) -> int:
    """Fixed header + CSRCs + extension block; -1 when the packet is shorter than its header says."""
    if len(pkt) < 12:
        return -1
    length = 12 + 4 * (pkt[0] & 0x0F)
    if pkt[0] & 0x10:
        if len(pkt) < length + 4:
            return -1
        length += 4 + 4 * ((pkt[length + 2] << 8) | pkt[length + 3])
    return length if length <= len(pkt) else -1


def padding_fits(pkt: bytes | bytearray, header: int) -> bool:
    """RFC 3550 §5.1: with the P bit set, the last octet counts the padding (itself included), which
    must fit between the header and the end. An SFU forwards packets unparsed, so this is the check that
    keeps a lying padding count from reaching subscribers (and the RTX path that strips padding)."""
    return not pkt[0] & 0x20 or 0 < pkt[-1] <= len(pkt) - header


def read_extension(pkt: bytes | bytearray, ext_id: int) -> bytes | None:
    """Value of one-byte (0xBEDE) or two-byte (0x100x) header extension ``ext_id`` (RFC 8285 §4.2/4.3)."""
    if len(pkt) < 12 or not pkt[0] & 0x10:
        return None
    pos = 12 + 4 * (pkt[0] & 0x0F)
    if pos + 4 > len(pkt):
        return None
    profile, words = struct.unpack_from("!HH", pkt, pos)
    pos += 4
    end = pos + 4 * words
    if end > len(pkt):
        return None
    for ident, start, length in _elements(pkt, pos, end, profile):
        if ident == ext_id:
            return bytes(pkt[start : start + length])
    return None


def _elements(pkt: bytes | bytearray, pos: int, end: int, profile: int) -> list[tuple[int, int, int]]:
    two_byte = (profile & 0xFFF0) == 0x1000
    if profile != ONE_BYTE_PROFILE and not two_byte:
        return []
    out = []
    while pos < end:
        if pkt[pos] == 0:  # padding between elements
            pos += 1
            continue
        if two_byte:
            if pos + 2 > end:
                break
            ident, length = pkt[pos], pkt[pos + 1]
            pos += 2
        else:
            ident, length = pkt[pos] >> 4, (pkt[pos] & 0x0F) + 1
            pos += 1
            if ident == 15:  # reserved: stop processing (RFC 8285 §4.2)
                break
        if pos + length > end:
            break
        out.append((ident, pos, length))
        pos += length
    return out


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    extensions: tuple[tuple[int, bytes], ...] = ()
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise ParseError("RTP packet shorter than 12 bytes")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise ParseError("RTP version is not 2")
        pos = 12 + 4 * (b0 & 0x0F)
        if pos > len(data):
            raise ParseError("CSRC list runs past the end")
        csrcs = struct.unpack_from(f"!{b0 & 0x0F}I", data, 12)
        profile: int | None = None
        extensions: tuple[tuple[int, bytes], ...] = ()
        if b0 & 0x10:
            if pos + 4 > len(data):
                raise ParseError("extension header runs past the end")
            profile, words = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * words
            if end > len(data):
                raise ParseError("header extension runs past the end")
            extensions = tuple((i, data[s : s + n]) for i, s, n in _elements(data, pos + 4, end, profile))
            pos = end
        end = len(data)
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > len(data):
                raise ParseError("padding longer than the payload")
            end -= padding
        return cls(b1 & 0x7F, seq, ts, ssrc, data[pos:end], bool(b1 & 0x80), csrcs, profile, extensions, padding)

    def serialize(self) -> bytes:
        ext = b""
        if self.extension_profile is not None:
            body = b""
            for ident, value in self.extensions:
                if self.extension_profile == ONE_BYTE_PROFILE:
                    body += bytes([(ident << 4) | (len(value) - 1)]) + value
                else:
                    body += bytes([ident, len(value)]) + value
            body += b"\x00" * (-len(body) % 4)
            ext = struct.pack("!HH", self.extension_profile, len(body) // 4) + body
        b0 = 0x80 | (0x20 if self.padding else 0) | (0x10 if ext else 0) | len(self.csrcs)
        header = _HEADER.pack(
            b0, (0x80 if self.marker else 0) | self.payload_type, self.sequence_number, self.timestamp, self.ssrc
        )
        pad = b"\x00" * (self.padding - 1) + bytes([self.padding]) if self.padding else b""
        return header + b"".join(struct.pack("!I", c) for c in self.csrcs) + ext + self.payload + pad

    def extension(self, ext_id: int) -> bytes | None:
        return next((value for ident, value in self.extensions if ident == ext_id), None)


def unwrap_rtx(pkt: bytes, media_ssrc: int, media_pt: int) -> bytes:
    """RFC 4588 §4: turn an RTX packet back into the original (OSN first in the payload)."""
    header = header_length(pkt)
    if header < 0 or header + 2 > len(pkt):
        raise ParseError("RTX packet too short for its original sequence number")
    end = len(pkt) - (pkt[-1] if pkt[0] & 0x20 else 0)
    if end < header + 2:
        raise ParseError("RTX padding longer than the payload")
    out = bytearray(pkt[:header]) + pkt[header + 2 : end]
    out[0] &= 0xDF  # the padding went with the RTX packet
    out[1] = (pkt[1] & 0x80) | media_pt
    out[2:4] = pkt[header : header + 2]
    struct.pack_into("!I", out, SSRC_OFFSET, media_ssrc)
    return bytes(out)


def blank_extensions(pkt: bytes, ids: frozenset[int]) -> bytes:
    """``pkt`` with the header extension elements ``ids`` turned into padding (RFC 8285 §4.2-4.3: zero bytes
    between elements are padding a receiver skips); ``pkt`` itself when it carries none of them.

    A forwarding server blanks the publisher's MID and RID (RFC 8843 §15, RFC 8852): they name the
    publisher's m-line and layer, meaningless on a subscriber's connection, where a receiver demultiplexing
    by MID drops (and keeps dropping) a stream whose MID names none of its own receiving m-lines."""
    if not ids or len(pkt) < 16 or not pkt[0] & 0x10:
        return pkt
    pos = 12 + 4 * (pkt[0] & 0x0F)
    if pos + 4 > len(pkt):
        return pkt
    profile, words = struct.unpack_from("!HH", pkt, pos)
    end = pos + 4 + 4 * words
    if end > len(pkt):
        return pkt
    hits = [(start, length) for ident, start, length in _elements(pkt, pos + 4, end, profile) if ident in ids]
    if not hits:
        return pkt
    head = 1 if profile == ONE_BYTE_PROFILE else 2
    out = bytearray(pkt)
    for start, length in hits:
        out[start - head : start + length] = bytes(head + length)
    return bytes(out)
