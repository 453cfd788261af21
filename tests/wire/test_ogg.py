"""Ogg pages (RFC 3533) and Ogg Opus (RFC 7845): real files from ffmpeg, round trips, corruption, fuzzing."""

from __future__ import annotations

import contextlib
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.ogg import (
    CONTINUED,
    NO_GRANULE,
    OggPage,
    crc32,
    parse_opus_head,
    read_ogg_opus,
    read_packets,
    read_pages,
    write_pages,
)
from roomcast.wire.opus import packet_samples
from tests.wire.test_fuzz import mutations


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ogg") / "tone.ogg"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "libopus", path],
        check=True,
    )
    return path.read_bytes()


def test_crc_matches_the_ogg_reference_value() -> None:
    # The Ogg CRC is the unreflected CRC-32/MPEG-2 polynomial with zero init and no final xor.
    assert crc32(b"123456789") == 0x89A1897F


def test_ffmpeg_ogg_opus_header_packets_and_granules(tone: bytes) -> None:
    head, packets = read_ogg_opus(tone)
    assert (head.channels, head.input_sample_rate, head.mapping_family) == (1, 48000, 0)
    assert 0 < head.pre_skip < 48000
    assert len(packets) >= 50  # one second of 20 ms packets
    total = 0
    last_granule = NO_GRANULE
    for packet in packets:
        total += packet_samples(packet.data)
        if packet.granule_position != NO_GRANULE:
            last_granule = packet.granule_position
            if packet is not packets[-1]:  # RFC 7845 §4: exact, except the end-trimmed last page
                assert packet.granule_position == total
    assert packets[-1].granule_position == last_granule == head.pre_skip + 48000 <= total


def test_round_trip_with_packets_spanning_pages(tone: bytes) -> None:
    pages = list(read_pages(tone))
    packets = list(read_packets(pages))
    big = bytes([31 << 3]) + bytes(range(256)) * 3  # a 20 ms CELT packet of 769 bytes: four segments
    rewritten = write_pages([*((p.data, 0) for p in packets), (big, 9)], serial=7, max_segments=3)
    reread = list(read_pages(rewritten))
    assert any(p.continued for p in reread)  # three segments a page: the long packet spans pages
    assert [p.data for p in read_packets(reread)] == [p.data for p in packets] + [big]
    head, audio = read_ogg_opus(rewritten)
    assert head == read_ogg_opus(tone)[0] and len(audio) == len(packets) - 1
    assert audio[-1].data == big and audio[-1].granule_position == 9


def test_packets_of_other_streams_are_skipped(tone: bytes) -> None:
    other = write_pages([(b"\x80theora-like", 0), (b"x" * 600, 0)], serial=99)
    pages = list(read_pages(other + tone))
    assert len(read_ogg_opus(other + tone)[1]) == len(read_ogg_opus(tone)[1])
    assert [p.data for p in read_packets(pages, serial=99)] == [b"\x80theora-like", b"x" * 600]


def test_corruption_lost_pages_and_bad_continuations_are_parse_errors(tone: bytes) -> None:
    flipped = bytearray(tone)
    flipped[100] ^= 0x01
    with pytest.raises(ParseError, match="checksum"):
        list(read_pages(bytes(flipped)))
    with pytest.raises(ParseError):
        read_ogg_opus(tone[:-10])
    pages = list(read_pages(write_pages([(b"a" * 700, 0), (b"b", 5)], serial=1, max_segments=2)))
    with pytest.raises(ParseError, match="lost page"):
        list(read_packets([pages[0], *pages[2:]]))
    orphan = OggPage(CONTINUED, 0, 1, 0, (3,), b"abc")
    with pytest.raises(ParseError, match="continuation"):
        list(read_packets([orphan]))
    with pytest.raises(ParseError, match="inside a packet"):
        list(read_packets(pages[:1]))
    with pytest.raises(ParseError):
        parse_opus_head(b"OpusHead\x01")


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.binary(max_size=1200), st.integers(0, 2**40)), min_size=1, max_size=8),
    st.integers(1, 255),
)
def test_write_read_round_trip(packets: list[tuple[bytes, int]], max_segments: int) -> None:
    got = list(read_packets(read_pages(write_pages(packets, serial=3, max_segments=max_segments))))
    assert [p.data for p in got] == [data for data, _ in packets]
    assert got[-1].granule_position == packets[-1][1]


@settings(max_examples=300)
@given(st.data())
def test_fuzz_only_parse_errors(data: st.DataObject) -> None:
    seed = write_pages([(b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00", 0), (b"OpusTags", 0)], serial=5)
    blob = data.draw(st.one_of(st.binary(max_size=400), mutations(seed)))
    with contextlib.suppress(ParseError):
        read_ogg_opus(blob)
    with contextlib.suppress(ParseError):
        parse_opus_head(blob)
    pages = data.draw(
        st.lists(
            st.builds(
                OggPage,
                st.integers(0, 7),
                st.integers(-1, 10),
                st.integers(0, 2),
                st.integers(0, 3),
                st.lists(st.sampled_from([0, 1, 254, 255]), max_size=6).map(tuple),
                st.binary(max_size=600),
            ),
            max_size=5,
        )
    )
    with contextlib.suppress(ParseError):
        list(read_packets(pages))
