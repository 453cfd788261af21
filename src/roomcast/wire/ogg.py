"""Ogg pages (RFC 3533) and the Opus packets of an Ogg Opus file (RFC 7845), to publish without decoding.

A page is a 27-byte header, a segment table of lacing values and a body. Packets are laced across
segments: a value of 255 means "the packet goes on", anything shorter ends it, so a packet may span
pages (the next page then has the "continued" flag). A page's granule position is the sample count
(48 kHz for Opus, RFC 7845 §4) at the end of the last packet that *ends* on it. The first two packets
of an Opus stream are the OpusHead and OpusTags headers (§5), not audio.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from roomcast.wire import ParseError

CAPTURE = b"OggS"
CONTINUED = 0x01
BOS = 0x02  # beginning of stream
EOS = 0x04  # end of stream
NO_GRANULE = -1  # no packet ends on this page (RFC 3533 §6: all bits set)
_HEADER = struct.Struct("<4sBBqIIIB")


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC = _crc_table()


def crc32(data: bytes) -> int:
    """The Ogg checksum: CRC-32, polynomial 0x04c11db7, not reflected, initial value 0 (RFC 3533 §6)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ byte]
    return crc


@dataclass(frozen=True, slots=True)
class OggPage:
    header_type: int
    granule_position: int
    serial: int
    sequence: int
    lacing: tuple[int, ...]
    body: bytes

    @property
    def continued(self) -> bool:
        return bool(self.header_type & CONTINUED)

    def serialize(self) -> bytes:
        if len(self.lacing) > 255 or sum(self.lacing) != len(self.body):
            raise ValueError("segment table does not describe the body")
        head = _HEADER.pack(
            CAPTURE, 0, self.header_type, self.granule_position, self.serial, self.sequence, 0, len(self.lacing)
        )
        page = bytearray(head + bytes(self.lacing) + self.body)
        struct.pack_into("<I", page, 22, crc32(bytes(page)))
        return bytes(page)


def read_pages(data: bytes) -> Iterator[OggPage]:
    """Every page, checksums verified; a truncated or corrupt page is a ParseError, not a resync."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            raise ParseError("truncated Ogg page header")
        capture, version, header_type, granule, serial, sequence, checksum, segments = _HEADER.unpack_from(data, pos)
        if capture != CAPTURE:
            raise ParseError("Ogg capture pattern not found")
        if version != 0:
            raise ParseError(f"Ogg stream structure version {version}")
        table_end = pos + _HEADER.size + segments
        lacing = tuple(data[pos + _HEADER.size : table_end])
        end = table_end + sum(lacing)
        if len(lacing) != segments or end > len(data):
            raise ParseError("Ogg page runs past the end of the data")
        page = bytearray(data[pos:end])
        page[22:26] = b"\x00\x00\x00\x00"
        if crc32(bytes(page)) != checksum:
            raise ParseError("Ogg page checksum mismatch")
        yield OggPage(header_type, granule, serial, sequence, lacing, data[table_end:end])
        pos = end


@dataclass(frozen=True, slots=True)
class OggPacket:
    data: bytes
    granule_position: int  # of the page it ends on when it is that page's last packet, else NO_GRANULE


def read_packets(pages: Iterable[OggPage], serial: int | None = None) -> Iterator[OggPacket]:
    """Packets of one logical stream (the first page's unless ``serial``), reassembled across pages."""
    partial: bytearray | None = None
    expected_sequence: int | None = None
    for page in pages:
        if serial is None:
            serial = page.serial
        if page.serial != serial:
            continue  # another multiplexed stream (RFC 3533 §4)
        if expected_sequence is not None and page.sequence != expected_sequence:
            raise ParseError(f"Ogg page {page.sequence} where {expected_sequence} was expected (lost page)")
        expected_sequence = (page.sequence + 1) & 0xFFFFFFFF
        if page.continued != (partial is not None):
            raise ParseError("Ogg continuation flag disagrees with the previous page's last packet")
        body = partial if partial is not None else bytearray()
        partial = None
        pos = 0
        ends = [i for i, value in enumerate(page.lacing) if value < 255]
        for i, value in enumerate(page.lacing):
            body += page.body[pos : pos + value]
            pos += value
            if value < 255:
                last = i == ends[-1]
                yield OggPacket(bytes(body), page.granule_position if last else NO_GRANULE)
                body = bytearray()
        if page.lacing and page.lacing[-1] == 255:
            partial = body
    if partial is not None:
        raise ParseError("Ogg stream ends inside a packet")


def write_pages(packets: Iterable[tuple[bytes, int]], serial: int, max_segments: int = 255) -> bytes:
    """An Ogg stream of (packet, granule position) pairs; long packets span pages. For tests and tools."""
    out = bytearray()
    sequence = 0
    lacing: list[int] = []
    body = bytearray()
    continued = False
    granule = NO_GRANULE
    items = list(packets)

    def flush(eos: bool) -> None:
        nonlocal sequence, lacing, body, continued, granule
        flags = (CONTINUED if continued else 0) | (BOS if sequence == 0 else 0) | (EOS if eos else 0)
        out.extend(OggPage(flags, granule, serial, sequence, tuple(lacing), bytes(body)).serialize())
        sequence += 1
        continued = bool(lacing) and lacing[-1] == 255
        lacing, body, granule = [], bytearray(), NO_GRANULE

    for n, (packet, packet_granule) in enumerate(items):
        values = [255] * (len(packet) // 255) + [len(packet) % 255]
        pos = 0
        for value in values:
            if len(lacing) == max_segments:
                flush(False)
            lacing.append(value)
            body += packet[pos : pos + value]
            pos += value
        granule = packet_granule
        if n == 0:
            flush(False)  # RFC 7845 §3: the ID header alone on the first page
    flush(True)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class OpusHead:
    """RFC 7845 §5.1 identification header."""

    version: int
    channels: int
    pre_skip: int
    input_sample_rate: int
    output_gain: int
    mapping_family: int


def parse_opus_head(packet: bytes) -> OpusHead:
    if len(packet) < 19 or packet[:8] != b"OpusHead":
        raise ParseError("first Ogg packet is not an OpusHead")
    version, channels, pre_skip, rate, gain, family = struct.unpack_from("<BBHIhB", packet, 8)
    if version >> 4 != 0 or channels == 0:
        raise ParseError(f"unsupported OpusHead (version {version}, {channels} channels)")
    return OpusHead(version, channels, pre_skip, rate, gain, family)


def read_ogg_opus(data: bytes) -> tuple[OpusHead, list[OggPacket]]:
    """The header and the audio packets of the first Opus stream in an Ogg file (RFC 7845 §3)."""
    pages = list(read_pages(data))
    first = next((p for p in pages if p.header_type & BOS and p.body.startswith(b"OpusHead")), None)
    if first is None:
        raise ParseError("no Ogg Opus stream")
    packets = read_packets(pages, first.serial)
    head_packet = next(packets, None)
    head = parse_opus_head(head_packet.data if head_packet is not None else b"")
    tags = next(packets, None)
    if tags is None or not tags.data.startswith(b"OpusTags"):
        raise ParseError("OpusTags header missing")
    return head, list(packets)
