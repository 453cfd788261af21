"""RTCP compound packets (RFC 3550 §6) and the feedback messages an SFU acts on.

Sender/receiver reports, SDES, BYE, generic NACK (RFC 4585 §6.2.1), PLI (§6.3.1), FIR (RFC 5104
§4.3.1), REMB (draft-alvestrand-rmcat-remb) and transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-
extensions-01) are decoded; anything else (XR, APP) is kept raw as :class:`UnknownRtcp` so it can be
forwarded or ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from roomcast.wire import ParseError

SR, RR, SDES, BYE, APP, RTPFB, PSFB = 200, 201, 202, 203, 204, 205, 206
MAX_PACKETS = 64
_BLP_BITS = tuple(tuple(bit + 1 for bit in range(8) if value & (1 << bit)) for value in range(256))
MAX_NACK_ITEMS = 256  # 256 PID/BLP pairs = up to 4096 sequence numbers (RELIABILITY B3: bit storms)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int

    def serialize(self) -> bytes:
        lost = self.packets_lost & 0xFFFFFF
        return struct.pack(
            "!IIIIII", self.ssrc, (self.fraction_lost << 24) | lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = struct.pack(
            "!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        return _header(len(self.reports), SR, body + b"".join(r.serialize() for r in self.reports))


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(r.serialize() for r in self.reports)
        return _header(len(self.reports), RR, body)


@dataclass(frozen=True, slots=True)
class GenericNack:
    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]

    def serialize(self) -> bytes:
        items = b"".join(struct.pack("!HH", pid, blp) for pid, blp in nack_pairs(self.lost))
        return _header(1, RTPFB, struct.pack("!II", self.sender_ssrc, self.media_ssrc) + items)


@dataclass(frozen=True, slots=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int

    def serialize(self) -> bytes:
        return _header(1, PSFB, struct.pack("!II", self.sender_ssrc, self.media_ssrc))


@dataclass(frozen=True, slots=True)
class Fir:
    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]  # (media ssrc, command sequence number)

    def serialize(self) -> bytes:
        body = struct.pack("!II", self.sender_ssrc, 0) + b"".join(
            struct.pack("!IB3x", ssrc, seq & 0xFF) for ssrc, seq in self.entries
        )
        return _header(4, PSFB, body)


@dataclass(frozen=True, slots=True)
class Remb:
    sender_ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]

    def serialize(self) -> bytes:
        exponent, mantissa = 0, self.bitrate
        while mantissa > 0x3FFFF:
            mantissa >>= 1
            exponent += 1
        body = struct.pack(
            "!II4sBBH",
            self.sender_ssrc,
            0,
            b"REMB",
            len(self.ssrcs),
            (exponent << 2) | (mantissa >> 16),
            mantissa & 0xFFFF,
        )
        return _header(15, PSFB, body + b"".join(struct.pack("!I", s) for s in self.ssrcs))


@dataclass(frozen=True, slots=True)
class TransportCC:
    """Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).

    ``statuses``: one octet per packet from ``base_seq``, 0 not received, 1 small delta, 2 large or
    negative delta (bytes, not a tuple: the send side filters and counts them with C-level calls);
    ``deltas``: receive deltas of the received packets in 250 µs units, the first one relative to
    ``reference_time`` (signed 24 bits, 64 ms units; it wraps, the reader unwraps). Kept raw for exact
    forwarding; :meth:`create` encodes one (chunk choice in :func:`encode_twcc_chunks`).
    """

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # multiples of 64 ms
    fb_count: int
    statuses: bytes
    deltas: tuple[int, ...]
    raw: bytes

    def serialize(self) -> bytes:
        return self.raw

    @classmethod
    def create(
        cls,
        sender_ssrc: int,
        media_ssrc: int,
        base_seq: int,
        reference_time: int,
        fb_count: int,
        statuses: bytes | tuple[int, ...] | list[int],
        deltas: tuple[int, ...] | list[int],
    ) -> TransportCC:
        """Encode feedback; ``deltas`` must match ``statuses`` (a small delta fits 0..255, a large one int16)."""
        if not 0 < len(statuses) <= MAX_TWCC_STATUSES:
            raise ValueError("transport-cc feedback reports 1 to MAX_TWCC_STATUSES packets")
        try:
            statuses = bytes(statuses)
        except ValueError:
            raise ValueError("status symbols are 0..2") from None
        deltas = tuple(deltas)
        fmt = statuses.translate(_DELTA_FORMAT, b"\x00")
        if len(fmt) != len(deltas) or max(statuses) > 2:
            raise ValueError("one receive delta per received packet, status symbols 0..2")
        try:
            packed = struct.pack(b"!" + fmt, *deltas)
        except struct.error as exc:
            raise ValueError(f"receive delta out of range for its status: {exc}") from None
        ref = reference_time & 0xFFFFFF
        fci = struct.pack("!HHI", base_seq & 0xFFFF, len(statuses), (ref << 8) | (fb_count & 0xFF))
        body = struct.pack("!II", sender_ssrc, media_ssrc) + fci + encode_twcc_chunks(statuses) + packed
        raw = _header(15, RTPFB, body)
        signed_ref = ref - 0x1000000 if ref & 0x800000 else ref
        return cls(sender_ssrc, media_ssrc, base_seq & 0xFFFF, signed_ref, fb_count & 0xFF, statuses, deltas, raw)


MAX_TWCC_STATUSES = 8192  # RELIABILITY B3: a packet cannot make us expand a 65,535-packet storm
_DELTA_FORMAT = bytes.maketrans(b"\x01\x02", b"Bh")  # status symbol -> struct code of its receive delta
_RUN = (b"\x00", b"\x01", b"\x02", b"\x03")
_TWCC_HEAD = struct.Struct("!HHI")
_VECTORS: dict[int, bytes] = {}  # status vector chunk -> its symbols; at most 2 x 16,384 entries


def _vector(chunk: int) -> bytes:
    symbols = _VECTORS.get(chunk)
    if symbols is None:
        if chunk & 0x4000:  # 7 two-bit symbols
            symbols = bytes((chunk >> (12 - 2 * i)) & 0x3 for i in range(7))
        else:  # 14 one-bit symbols
            symbols = bytes((chunk >> (13 - i)) & 0x1 for i in range(14))
        _VECTORS[chunk] = symbols
    return symbols


def encode_twcc_chunks(statuses: bytes | tuple[int, ...]) -> bytes:
    """Packet chunks for ``statuses`` (§3.1.3/3.1.4): a run-length chunk where a run of one symbol
    covers at least a full vector, else a one-bit vector when the next 14 symbols are all 0/1, else
    a two-bit vector of 7. The last vector may cover symbols past the end (the count ends them)."""
    out: list[int] = []
    n = len(statuses)
    i = 0
    while i < n:
        symbol = statuses[i]
        run = 1
        while i + run < n and statuses[i + run] == symbol and run < 0x1FFF:
            run += 1
        window = statuses[i : i + 14]
        if run >= 14 or run == n - i or (run >= 7 and 2 in window):
            out.append((symbol << 13) | run)
            i += run
        elif 2 not in window:
            out.append(0x8000 | sum(s << (13 - k) for k, s in enumerate(window)))
            i += 14
        else:
            out.append(0xC000 | sum(s << (12 - 2 * k) for k, s in enumerate(statuses[i : i + 7])))
            i += 7
    return struct.pack(f"!{len(out)}H", *out)


def _parse_twcc(data: bytes, pos: int, fci: int, end: int, packet_end: int, sender: int, media: int) -> TransportCC:
    """Per-chunk work is table lookups and per-delta work one ``struct`` call: feedback is parsed for
    every few forwarded packets, so its cost counts against the forwarding budget. ``end`` is where
    the deltas must end (before any RFC 3550 padding), ``packet_end`` where the raw packet ends."""
    if fci + 8 > end:
        raise ParseError("truncated transport-cc feedback")
    base, count, ref_fb = _TWCC_HEAD.unpack_from(data, fci)
    if count > MAX_TWCC_STATUSES:
        raise ParseError("transport-cc feedback reports too many packets")
    if count == 0:
        raise ParseError("transport-cc feedback reports no packet")
    reference = ref_fb >> 8
    if reference & 0x800000:
        reference -= 0x1000000
    statuses = bytearray()
    p = fci + 8
    two_bit = False  # only two-bit symbols can be 2 (large delta) or 3 (reserved)
    while len(statuses) < count:
        if p + 2 > end:
            raise ParseError("transport-cc packet chunks run past the packet")
        chunk = (data[p] << 8) | data[p + 1]
        p += 2
        if chunk & 0x8000:
            statuses += _vector(chunk)
            two_bit = two_bit or bool(chunk & 0x4000)
        else:  # run length chunk
            statuses += _RUN[chunk >> 13] * (chunk & 0x1FFF)
            two_bit = two_bit or chunk >= 0x4000
    if len(statuses) > count:
        del statuses[count:]
    if two_bit and 3 in statuses:  # reserved in -01 (transport-wide-cc-02: "received, no timestamp")
        raise ParseError("transport-cc status symbol 3 is reserved")
    if two_bit and 2 in statuses:
        fmt = b"!" + statuses.translate(_DELTA_FORMAT, b"\x00")
        if p + struct.calcsize(fmt) > end:
            raise ParseError("transport-cc receive deltas run past the packet")
        deltas = struct.unpack_from(fmt, data, p)
    else:
        received = count - statuses.count(0)
        if p + received > end:
            raise ParseError("transport-cc receive deltas run past the packet")
        deltas = tuple(data[p : p + received])
    return TransportCC(sender, media, base, reference, ref_fb & 0xFF, bytes(statuses), deltas, data[pos:packet_end])


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    packet_type: int
    fmt: int
    data: bytes

    def serialize(self) -> bytes:
        return self.data


RtcpPacket = SenderReport | ReceiverReport | GenericNack | Pli | Fir | Remb | TransportCC | UnknownRtcp


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    """RFC 3550 §6.4.1: a body not a multiple of 4 bytes is padded, the P bit set and the last byte saying
    how many padding bytes there are (libwebrtc refuses transport-cc feedback padded otherwise)."""
    padding = -len(body) % 4
    if padding:
        body += b"\x00" * (padding - 1) + bytes([padding])
    return struct.pack("!BBH", (0xA0 if padding else 0x80) | count, packet_type, len(body) // 4) + body


def nack_pairs(lost: tuple[int, ...] | list[int]) -> list[tuple[int, int]]:
    """Pack sequence numbers into RFC 4585 PID + BLP pairs (BLP bit i = PID + i + 1 lost), wrap-aware."""
    pairs: list[tuple[int, int]] = []
    for seq in sorted(set(s & 0xFFFF for s in lost), key=lambda s: (s - lost[0]) & 0xFFFF if lost else s):
        if pairs:
            pid, blp = pairs[-1]
            delta = (seq - pid) & 0xFFFF
            if 1 <= delta <= 16:
                pairs[-1] = (pid, blp | (1 << (delta - 1)))
                continue
        pairs.append((seq, 0))
    return pairs


def _reports(data: bytes, pos: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if pos + 24 * count > end:
        raise ParseError("RTCP report blocks run past the packet")
    blocks = []
    for i in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, pos + 24 * i)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _parse_one(data: bytes, pos: int, end: int) -> RtcpPacket:
    first, packet_type = data[pos], data[pos + 1]
    count = first & 0x1F
    body_end = end
    if first & 0x20:  # padding: the last octet counts padding octets, itself included
        pad = data[end - 1]
        if pad == 0 or pad > end - pos - 4:
            raise ParseError("bad RTCP padding")
        body_end = end - pad
    body = pos + 4
    if packet_type == SR:
        if body + 24 > body_end:
            raise ParseError("truncated sender report")
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", data, body)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _reports(data, body + 24, count, body_end))
    if packet_type == RR:
        if body + 4 > body_end:
            raise ParseError("truncated receiver report")
        return ReceiverReport(struct.unpack_from("!I", data, body)[0], _reports(data, body + 4, count, body_end))
    if packet_type in (RTPFB, PSFB):
        if body + 8 > body_end:
            raise ParseError("truncated feedback message")
        sender, media = struct.unpack_from("!II", data, body)
        fci = body + 8
        if packet_type == RTPFB and count == 1:
            items = (body_end - fci) // 4
            if items > MAX_NACK_ITEMS:
                raise ParseError("NACK with too many items")
            lost: list[int] = []
            for pid, blp in struct.iter_unpack("!HH", data[fci : fci + 4 * items]):
                lost.append(pid)
                if blp:  # a storm sets every bit: a table per byte, not a test per bit
                    lost.extend([(pid + o) & 0xFFFF for o in _BLP_BITS[blp & 0xFF]])
                    lost.extend([(pid + 8 + o) & 0xFFFF for o in _BLP_BITS[blp >> 8]])
            return GenericNack(sender, media, tuple(lost))
        if packet_type == RTPFB and count == 15:
            return _parse_twcc(data, pos, fci, body_end, end, sender, media)
        if packet_type == PSFB and count == 1:
            return Pli(sender, media)
        if packet_type == PSFB and count == 4:
            entries = tuple((struct.unpack_from("!I", data, p)[0], data[p + 4]) for p in range(fci, body_end - 7, 8))
            return Fir(sender, entries)
        if packet_type == PSFB and count == 15 and data[fci : fci + 4] == b"REMB" and fci + 8 <= body_end:
            num, exp_mant, mant = struct.unpack_from("!BBH", data, fci + 4)
            bitrate = (((exp_mant & 0x03) << 16) | mant) << (exp_mant >> 2)
            if fci + 8 + 4 * num > body_end:
                raise ParseError("REMB SSRC list runs past the packet")
            ssrcs = struct.unpack_from(f"!{num}I", data, fci + 8)
            return Remb(sender, bitrate, tuple(ssrcs))
    return UnknownRtcp(packet_type, count, data[pos:end])


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split and decode a compound packet; any lie in a length field raises :class:`ParseError`."""
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(packets) >= MAX_PACKETS:
            raise ParseError("too many packets in one RTCP compound")
        if pos + 4 > len(data):
            raise ParseError("truncated RTCP header")
        if data[pos] >> 6 != 2:
            raise ParseError("RTCP version is not 2")
        end = pos + 4 + 4 * struct.unpack_from("!H", data, pos + 2)[0]
        if end > len(data):
            raise ParseError("RTCP length field runs past the datagram")
        packets.append(_parse_one(data, pos, end))
        pos = end
    if not packets:
        raise ParseError("empty RTCP packet")
    return packets


def serialize_compound(packets: list[RtcpPacket]) -> bytes:
    return b"".join(p.serialize() for p in packets)
