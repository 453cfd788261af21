"""RTCP compound packets (RFC 3550 §6) and the feedback messages an SFU acts on.

Sender/receiver reports, SDES, BYE, generic NACK (RFC 4585 §6.2.1), PLI (§6.3.1), FIR (RFC 5104
§4.3.1), REMB (draft-alvestrand-rmcat-remb) are decoded; anything else (transport-cc, XR, APP) is kept
raw as :class:`UnknownRtcp` so it can be forwarded or ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from roomcast.wire import ParseError

SR, RR, SDES, BYE, APP, RTPFB, PSFB = 200, 201, 202, 203, 204, 205, 206
MAX_PACKETS = 64
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

    ``statuses``: per packet from ``base_seq``, 0 not received, 1 small delta, 2 large or negative delta;
    ``deltas``: receive deltas of the received packets in 250 µs units. Kept raw for exact forwarding.
    """

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # multiples of 64 ms
    fb_count: int
    statuses: tuple[int, ...]
    deltas: tuple[int, ...]
    raw: bytes

    def serialize(self) -> bytes:
        return self.raw


MAX_TWCC_STATUSES = 8192  # RELIABILITY B3: a packet cannot make us expand a 65,535-packet storm


def _parse_twcc(data: bytes, pos: int, fci: int, end: int, sender: int, media: int) -> TransportCC:
    if fci + 8 > end:
        raise ParseError("truncated transport-cc feedback")
    base, count, ref_fb = struct.unpack_from("!HHI", data, fci)
    if count > MAX_TWCC_STATUSES:
        raise ParseError("transport-cc feedback reports too many packets")
    reference = ref_fb >> 8
    if reference & 0x800000:
        reference -= 0x1000000
    statuses: list[int] = []
    p = fci + 8
    while len(statuses) < count:
        if p + 2 > end:
            raise ParseError("transport-cc packet chunks run past the packet")
        chunk = struct.unpack_from("!H", data, p)[0]
        p += 2
        if not chunk & 0x8000:  # run length chunk
            statuses.extend([(chunk >> 13) & 0x3] * min(chunk & 0x1FFF, count - len(statuses)))
        elif not chunk & 0x4000:  # status vector, 14 one-bit symbols
            statuses.extend((chunk >> (13 - i)) & 0x1 for i in range(min(14, count - len(statuses))))
        else:  # status vector, 7 two-bit symbols
            statuses.extend((chunk >> (12 - 2 * i)) & 0x3 for i in range(min(7, count - len(statuses))))
    deltas: list[int] = []
    for status in statuses:
        if status == 1:
            if p + 1 > end:
                raise ParseError("transport-cc receive deltas run past the packet")
            deltas.append(data[p])
            p += 1
        elif status == 2:
            if p + 2 > end:
                raise ParseError("transport-cc receive deltas run past the packet")
            deltas.append(struct.unpack_from("!h", data, p)[0])
            p += 2
    return TransportCC(sender, media, base, reference, ref_fb & 0xFF, tuple(statuses), tuple(deltas), data[pos:end])


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    packet_type: int
    fmt: int
    data: bytes

    def serialize(self) -> bytes:
        return self.data


RtcpPacket = SenderReport | ReceiverReport | GenericNack | Pli | Fir | Remb | TransportCC | UnknownRtcp


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


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
            for i in range(items):
                pid, blp = struct.unpack_from("!HH", data, fci + 4 * i)
                lost.append(pid)
                lost.extend((pid + bit + 1) & 0xFFFF for bit in range(16) if blp & (1 << bit))
            return GenericNack(sender, media, tuple(lost))
        if packet_type == RTPFB and count == 15:
            return _parse_twcc(data, pos, fci, body_end, sender, media)
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
