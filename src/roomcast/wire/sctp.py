"""SCTP packets and chunks (RFC 9260), with FORWARD-TSN (RFC 3758) and RE-CONFIG (RFC 6525).

What WebRTC data channels (RFC 8831) use: SCTP over DTLS, one association per connection. Parsers raise
only :class:`~roomcast.wire.ParseError`; the CRC32c checksum (RFC 9260 §6.8, Appendix B) is verified.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import google_crc32c

from roomcast.wire import ParseError

DATA, INIT, INIT_ACK, SACK, HEARTBEAT, HEARTBEAT_ACK, ABORT = 0, 1, 2, 3, 4, 5, 6
SHUTDOWN, SHUTDOWN_ACK, ERROR, COOKIE_ECHO, COOKIE_ACK, SHUTDOWN_COMPLETE = 7, 8, 9, 10, 11, 14
RECONFIG, FORWARD_TSN = 130, 192
MAX_CHUNKS = 256

# INIT parameters
PARAM_STATE_COOKIE = 7
PARAM_SUPPORTED_EXTENSIONS = 0x8008
PARAM_FORWARD_TSN_SUPPORTED = 0xC000
# RE-CONFIG parameters (RFC 6525 §4)
PARAM_OUTGOING_RESET = 13
PARAM_RECONFIG_RESPONSE = 16


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


@dataclass(frozen=True, slots=True)
class Chunk:
    type: int
    flags: int
    value: bytes

    def serialize(self) -> bytes:
        body = struct.pack("!BBH", self.type, self.flags, 4 + len(self.value)) + self.value
        return body + b"\x00" * (-len(body) % 4)


@dataclass(frozen=True, slots=True)
class Packet:
    source_port: int
    destination_port: int
    verification_tag: int
    chunks: tuple[Chunk, ...]

    def serialize(self) -> bytes:
        header = struct.pack("!HHII", self.source_port, self.destination_port, self.verification_tag, 0)
        data = bytearray(header + b"".join(c.serialize() for c in self.chunks))
        struct.pack_into("<I", data, 8, crc32c(bytes(data)))
        return bytes(data)

    @classmethod
    def parse(cls, data: bytes) -> Packet:
        if len(data) < 12:
            raise ParseError("SCTP packet shorter than its common header")
        src, dst, vtag, checksum = struct.unpack_from("!HHII", data)
        zeroed = data[:8] + b"\x00\x00\x00\x00" + data[12:]
        if struct.unpack("<I", struct.pack("!I", checksum))[0] != crc32c(zeroed):
            raise ParseError("SCTP checksum mismatch")
        chunks: list[Chunk] = []
        pos = 12
        while pos + 4 <= len(data):
            if len(chunks) >= MAX_CHUNKS:
                raise ParseError("too many SCTP chunks")
            kind, flags, length = struct.unpack_from("!BBH", data, pos)
            if length < 4 or pos + length > len(data):
                raise ParseError("SCTP chunk length runs past the packet")
            chunks.append(Chunk(kind, flags, data[pos + 4 : pos + length]))
            pos += length + (-length % 4)
        return cls(src, dst, vtag, tuple(chunks))


@dataclass(frozen=True, slots=True)
class DataChunk:
    """RFC 9260 §3.3.1; flags: U (unordered) 0x04, B (beginning) 0x02, E (ending) 0x01."""

    tsn: int
    stream_id: int
    ssn: int
    ppid: int
    user_data: bytes
    unordered: bool = False
    beginning: bool = True
    ending: bool = True

    def chunk(self) -> Chunk:
        flags = (0x04 if self.unordered else 0) | (0x02 if self.beginning else 0) | (0x01 if self.ending else 0)
        return Chunk(DATA, flags, struct.pack("!IHHI", self.tsn, self.stream_id, self.ssn, self.ppid) + self.user_data)

    @classmethod
    def from_chunk(cls, chunk: Chunk) -> DataChunk:
        if len(chunk.value) < 12:
            raise ParseError("DATA chunk too short")
        tsn, stream, ssn, ppid = struct.unpack_from("!IHHI", chunk.value)
        f = chunk.flags
        return cls(tsn, stream, ssn, ppid, chunk.value[12:], bool(f & 4), bool(f & 2), bool(f & 1))


@dataclass(frozen=True, slots=True)
class Init:
    """INIT / INIT-ACK (RFC 9260 §3.3.2-3); ``params`` keeps the optional parameters raw."""

    initiate_tag: int
    a_rwnd: int
    outbound_streams: int
    inbound_streams: int
    initial_tsn: int
    params: tuple[tuple[int, bytes], ...] = ()

    def chunk(self, ack: bool = False) -> Chunk:
        body = struct.pack(
            "!IIHHI", self.initiate_tag, self.a_rwnd, self.outbound_streams, self.inbound_streams, self.initial_tsn
        )
        body += b"".join(_param(t, v) for t, v in self.params)
        return Chunk(INIT_ACK if ack else INIT, 0, body)

    @classmethod
    def from_chunk(cls, chunk: Chunk) -> Init:
        if len(chunk.value) < 16:
            raise ParseError("INIT chunk too short")
        tag, rwnd, out_streams, in_streams, tsn = struct.unpack_from("!IIHHI", chunk.value)
        if tag == 0:
            raise ParseError("INIT with a zero initiate tag")
        return cls(tag, rwnd, out_streams, in_streams, tsn, tuple(parse_params(chunk.value[16:])))

    def param(self, kind: int) -> bytes | None:
        return next((v for t, v in self.params if t == kind), None)


@dataclass(frozen=True, slots=True)
class Sack:
    cumulative_tsn: int
    a_rwnd: int
    gaps: tuple[tuple[int, int], ...] = ()  # offsets from the cumulative TSN (RFC 9260 §3.3.4)
    duplicates: tuple[int, ...] = ()

    def chunk(self) -> Chunk:
        body = struct.pack("!IIHH", self.cumulative_tsn, self.a_rwnd, len(self.gaps), len(self.duplicates))
        body += b"".join(struct.pack("!HH", a, b) for a, b in self.gaps)
        body += b"".join(struct.pack("!I", d) for d in self.duplicates)
        return Chunk(SACK, 0, body)

    @classmethod
    def from_chunk(cls, chunk: Chunk) -> Sack:
        if len(chunk.value) < 12:
            raise ParseError("SACK chunk too short")
        cum, rwnd, ngaps, ndups = struct.unpack_from("!IIHH", chunk.value)
        if 12 + 4 * (ngaps + ndups) > len(chunk.value):
            raise ParseError("SACK gap/duplicate list runs past the chunk")
        gaps = tuple(struct.unpack_from("!HH", chunk.value, 12 + 4 * i) for i in range(ngaps))
        dups = struct.unpack_from(f"!{ndups}I", chunk.value, 12 + 4 * ngaps)
        return cls(cum, rwnd, gaps, tuple(dups))


def _param(kind: int, value: bytes) -> bytes:
    body = struct.pack("!HH", kind, 4 + len(value)) + value
    return body + b"\x00" * (-len(body) % 4)


def parse_params(data: bytes) -> list[tuple[int, bytes]]:
    params = []
    pos = 0
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        if length < 4 or pos + length > len(data):
            raise ParseError("SCTP parameter length runs past the chunk")
        params.append((kind, data[pos + 4 : pos + length]))
        pos += length + (-length % 4)
        if len(params) > 64:
            raise ParseError("too many SCTP parameters")
    return params


def params_bytes(params: list[tuple[int, bytes]]) -> bytes:
    return b"".join(_param(k, v) for k, v in params)


def forward_tsn(new_cumulative: int, streams: list[tuple[int, int]]) -> Chunk:
    """RFC 3758 §3.2: skip to ``new_cumulative``; ``streams`` = (stream id, last skipped SSN) for ordered ones."""
    return Chunk(
        FORWARD_TSN, 0, struct.pack("!I", new_cumulative) + b"".join(struct.pack("!HH", s, n) for s, n in streams)
    )


def parse_forward_tsn(chunk: Chunk) -> tuple[int, list[tuple[int, int]]]:
    if len(chunk.value) < 4 or len(chunk.value) % 4:
        raise ParseError("bad FORWARD-TSN chunk")
    streams = [struct.unpack_from("!HH", chunk.value, p) for p in range(4, len(chunk.value), 4)]
    return struct.unpack_from("!I", chunk.value)[0], streams


def outgoing_reset(request_seq: int, response_seq: int, last_tsn: int, streams: list[int]) -> bytes:
    """RFC 6525 §4.1 Outgoing SSN Reset Request parameter."""
    return _param(
        PARAM_OUTGOING_RESET,
        struct.pack("!III", request_seq, response_seq, last_tsn) + b"".join(struct.pack("!H", s) for s in streams),
    )


def reconfig_response(response_seq: int, result: int) -> bytes:
    """RFC 6525 §4.4 Re-configuration Response parameter (result 1 = success performed)."""
    return _param(PARAM_RECONFIG_RESPONSE, struct.pack("!II", response_seq, result))


def tsn_gt(a: int, b: int) -> bool:
    """Serial number arithmetic on 32-bit TSNs (RFC 9260 §1.6 / RFC 1982)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000
