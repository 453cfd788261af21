"""H.264 Annex-B byte streams and RTP packetization mode 1 (RFC 6184), to forward video without decoding.

An Annex-B stream (what ``ffmpeg -f h264`` writes) is NAL units behind 3- or 4-byte start codes
(H.264 Annex B.1). NAL units are grouped into access units, one picture each (§7.4.1.2.3); an access
unit holding an IDR slice (type 5, with its SPS/PPS in front) is a keyframe a decoder can start from.

Mode 1 (RFC 6184 §6.3) allows single NAL unit packets, STAP-A aggregates (§5.7.1, used for the small
SPS/PPS/SEI in front of a picture) and FU-A fragments (§5.8, for NAL units larger than the MTU); the
RTP marker goes on the last packet of an access unit (§5.1).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from roomcast.wire import ParseError

CLOCK_RATE = 90000
START_CODE = b"\x00\x00\x00\x01"
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
STAP_A = 24
FU_A = 28
_VCL = frozenset(range(1, 6))
_STARTS_ACCESS_UNIT = frozenset({NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 14, 15, 16, 17, 18})


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units between start codes; zero bytes before a start code are trailing_zero_8bits (B.1.2)."""
    first = data.find(b"\x00\x00\x01")
    if first < 0 or data[:first].strip(b"\x00"):
        if not data.strip(b"\x00"):
            return []
        raise ParseError("Annex-B data does not begin with a start code")
    nals: list[bytes] = []
    pos = first + 3
    while pos <= len(data):
        nxt = data.find(b"\x00\x00\x01", pos)
        end = len(data) if nxt < 0 else nxt
        nal = data[pos:end].rstrip(b"\x00")
        if nal:
            if nal[0] & 0x80:
                raise ParseError("NAL unit with the forbidden_zero_bit set")
            nals.append(nal)
        if nxt < 0:
            break
        pos = nxt + 3
    return nals


def _first_slice_of_picture(nal: bytes) -> bool:
    """first_mb_in_slice == 0: its ue(v) code is the single bit 1 right after the NAL header (§7.3.3)."""
    return len(nal) > 1 and bool(nal[1] & 0x80)


@dataclass(frozen=True, slots=True)
class AccessUnit:
    nals: tuple[bytes, ...]

    @property
    def keyframe(self) -> bool:
        return any(nal_type(n) == NAL_IDR for n in self.nals)

    def annexb(self) -> bytes:
        return b"".join(START_CODE + n for n in self.nals)


def access_units(nals: Iterable[bytes]) -> list[AccessUnit]:
    """Group NAL units into pictures: a new one starts at an AUD/SEI/SPS/PPS or at a first slice after
    a slice (H.264 §7.4.1.2.3, simplified to what encoders emit)."""
    units: list[AccessUnit] = []
    current: list[bytes] = []
    seen_slice = False
    for nal in nals:
        kind = nal_type(nal)
        vcl = kind in _VCL
        if seen_slice and (kind in _STARTS_ACCESS_UNIT or (vcl and _first_slice_of_picture(nal))):
            units.append(AccessUnit(tuple(current)))
            current, seen_slice = [], False
        current.append(nal)
        seen_slice = seen_slice or vcl
    if current:
        units.append(AccessUnit(tuple(current)))
    return units


def read_annexb(data: bytes) -> list[AccessUnit]:
    return access_units(split_annexb(data))


def packetize(nals: Iterable[bytes], mtu: int = 1100) -> list[tuple[bytes, bool]]:
    """(payload, marker) per RTP packet of one access unit, packetization mode 1 (RFC 6184 §6.3)."""
    if mtu < 16:
        raise ValueError("MTU too small for H.264 packetization")
    payloads: list[bytes] = []
    pending: list[bytes] = []  # consecutive small NAL units waiting to share a STAP-A

    def flush() -> None:
        if len(pending) == 1:
            payloads.append(pending[0])
        elif pending:
            f_bit = max(n[0] & 0x80 for n in pending)
            nri = max(n[0] & 0x60 for n in pending)
            payloads.append(bytes([f_bit | nri | STAP_A]) + b"".join(struct.pack("!H", len(n)) + n for n in pending))
        pending.clear()

    for nal in nals:
        if not nal:
            continue
        if len(nal) > mtu:
            flush()
            payloads.extend(_fragment(nal, mtu))
            continue
        stap_size = 1 + sum(2 + len(n) for n in pending) + 2 + len(nal)
        if pending and stap_size > mtu:
            flush()
        pending.append(nal)
    flush()
    return [(p, i == len(payloads) - 1) for i, p in enumerate(payloads)]


def _fragment(nal: bytes, mtu: int) -> list[bytes]:
    """FU-A (RFC 6184 §5.8): the NAL header's F/NRI in the indicator, its type in the FU header."""
    indicator = (nal[0] & 0xE0) | FU_A
    body = nal[1:]
    step = mtu - 2
    out = []
    for offset in range(0, len(body), step):
        start = 0x80 if offset == 0 else 0
        end = 0x40 if offset + step >= len(body) else 0
        out.append(bytes([indicator, start | end | nal_type(nal)]) + body[offset : offset + step])
    return out


def depacketize_nals(payloads: Iterable[bytes]) -> list[bytes]:
    """NAL units of one access unit from its RTP payloads in order (single NAL, STAP-A, FU-A)."""
    nals: list[bytes] = []
    fragment: bytearray | None = None
    for payload in payloads:
        if not payload:
            raise ParseError("empty H.264 payload")
        kind = payload[0] & 0x1F
        if kind != FU_A and fragment is not None:
            raise ParseError("FU-A fragment not ended before the next NAL unit")
        if 1 <= kind <= 23:
            nals.append(payload)
        elif kind == STAP_A:
            pos = 1
            while pos < len(payload):
                if pos + 2 > len(payload):
                    raise ParseError("truncated STAP-A size")
                size = struct.unpack_from("!H", payload, pos)[0]
                pos += 2
                if size == 0 or pos + size > len(payload):
                    raise ParseError("STAP-A unit runs past the payload")
                nals.append(payload[pos : pos + size])
                pos += size
        elif kind == FU_A:
            if len(payload) < 2:
                raise ParseError("FU-A without its header")
            header = payload[1]
            if header & 0x80:
                if fragment is not None:
                    raise ParseError("FU-A start inside another fragmented NAL unit")
                fragment = bytearray([(payload[0] & 0xE0) | (header & 0x1F)])
            elif fragment is None or fragment[0] & 0x1F != header & 0x1F:
                raise ParseError("FU-A continuation without its start")
            fragment += payload[2:]
            if header & 0x40:
                nals.append(bytes(fragment))
                fragment = None
        else:
            raise ParseError(f"NAL unit type {kind} is not allowed in packetization mode 1")
    if fragment is not None:
        raise ParseError("access unit ends inside an FU-A fragmented NAL unit")
    return nals


def depacketize(payloads: Iterable[bytes]) -> bytes:
    """One access unit in Annex-B form (4-byte start codes) from its RTP payloads."""
    return b"".join(START_CODE + n for n in depacketize_nals(payloads))


def payload_nal_types(payload: bytes) -> tuple[int, ...]:
    """NAL unit types an RTP payload carries (an FU-A start counts; later fragments do not)."""
    if not payload:
        return ()
    kind = payload[0] & 0x1F
    if kind == FU_A:
        return (payload[1] & 0x1F,) if len(payload) > 1 and payload[1] & 0x80 else ()
    if kind != STAP_A:
        return (kind,)
    types = []
    pos = 1
    while pos + 2 < len(payload):
        size = struct.unpack_from("!H", payload, pos)[0]
        types.append(payload[pos + 2] & 0x1F)
        pos += 2 + size
    return tuple(types)


def starts_access_unit(payload: bytes) -> bool:
    """Whether an RTP payload can be an access unit's first: a parameter set/SEI/AUD in front, or the
    first slice of a picture (whole or the FU-A start of it)."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind == FU_A:
        return len(payload) > 2 and bool(payload[1] & 0x80) and bool(payload[2] & 0x80)
    first = payload[3:] if kind == STAP_A else payload
    if not first:
        return False
    first_kind = first[0] & 0x1F
    return first_kind in _STARTS_ACCESS_UNIT or (first_kind in _VCL and _first_slice_of_picture(first))


def keyframe_start(pkt: bytes | bytearray, pos: int) -> bool:
    """Whether the RTP payload at ``pkt[pos]`` starts a key frame: it carries an SPS (encoders send SPS
    and PPS in front of every IDR picture), or it begins the first slice of an IDR picture (single NAL,
    STAP-A, or FU-A start with first_mb_in_slice 0, §7.3.3). Offsets into the packet: no slicing."""
    end = len(pkt)
    if pos >= end:
        return False
    kind = pkt[pos] & 0x1F
    if kind == NAL_SPS:
        return True
    if kind == NAL_IDR:
        return pos + 1 < end and bool(pkt[pos + 1] & 0x80)
    if kind == FU_A:
        return pos + 2 < end and (pkt[pos + 1] & 0x9F) == (0x80 | NAL_IDR) and bool(pkt[pos + 2] & 0x80)
    if kind == STAP_A:
        i = pos + 1
        while i + 2 < end:
            size = (pkt[i] << 8) | pkt[i + 1]
            inner = pkt[i + 2] & 0x1F
            if inner == NAL_SPS or (inner == NAL_IDR and i + 3 < end and pkt[i + 3] & 0x80):
                return True
            i += 2 + size
    return False
