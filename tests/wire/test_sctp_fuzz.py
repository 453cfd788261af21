"""B6: SCTP and DCEP parsers and the association, fed garbage, only drop and count (never raise)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.proto.sctp import SctpAssociation
from roomcast.wire import ParseError
from roomcast.wire.dcep import ChannelOpen
from roomcast.wire.sctp import DATA, Chunk, DataChunk, Init, Packet, Sack, parse_forward_tsn, parse_params

VALID = Packet(5000, 5000, 0, (Init(7, 1000, 10, 10, 99).chunk(),)).serialize()


def with_checksum(body: bytes) -> bytes:
    """Random chunk bytes behind a correct checksum, so fuzzing reaches the chunk parsers."""
    packet = Packet(5000, 5000, 0, ())
    raw = bytearray(packet.serialize() + body)
    raw[8:12] = b"\x00\x00\x00\x00"
    from roomcast.wire.sctp import crc32c

    raw[8:12] = crc32c(bytes(raw)).to_bytes(4, "little")
    return bytes(raw)


@settings(max_examples=300)
@given(st.binary(max_size=400).map(with_checksum) | st.binary(max_size=400))
def test_packet_and_chunk_parsers_only_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        packet = Packet.parse(data)
        for chunk in packet.chunks:
            for parser in (DataChunk.from_chunk, Init.from_chunk, Sack.from_chunk, parse_forward_tsn):
                with contextlib.suppress(ParseError):
                    parser(chunk)  # type: ignore[operator]
            with contextlib.suppress(ParseError):
                parse_params(chunk.value)
    with contextlib.suppress(ParseError):
        ChannelOpen.parse(data)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=300).map(with_checksum), max_size=8))
def test_association_survives_garbage(packets: list[bytes]) -> None:
    assoc = SctpAssociation("server")
    assoc.handle_packet(VALID, 0.0)  # a real INIT first, so later garbage reaches established-state code
    for i, data in enumerate(packets):
        assoc.handle_packet(data, float(i))
        assoc.handle_timeout(float(i) + 0.5)
    while assoc.poll_transmit() is not None:
        pass
    assert assoc.state in ("closed", "established", "aborted")


def test_huge_fragmented_message_is_refused_and_the_association_aborted() -> None:
    assoc = SctpAssociation("server", max_message_size=10_000)
    assoc.handle_packet(VALID, 0.0)
    cookie = Init.from_chunk(Packet.parse(assoc.poll_transmit() or b"").chunks[0]).param(7)
    from roomcast.wire.sctp import COOKIE_ECHO

    assoc.handle_packet(Packet(5000, 5000, assoc.local_vtag, (Chunk(COOKIE_ECHO, 0, cookie or b""),)).serialize(), 0.0)
    for i in range(12):  # 12 x 1,000 bytes > 10,000
        chunk = DataChunk(99 + i, 0, 0, 53, b"x" * 1000, False, i == 0, i == 11).chunk()
        assoc.handle_packet(Packet(5000, 5000, assoc.local_vtag, (chunk,)).serialize(), 0.0)
    assert assoc.state == "aborted" and assoc.counters["message_too_large"] == 1
    assert DATA == 0
