"""Opus TOC durations (RFC 6716 §3.1) decide how far the RTP timestamp moves (RFC 7587 §4.1)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.ogg import read_ogg_opus
from roomcast.wire.opus import depacketize, frame_count, packet_samples, packetize


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([0 << 3 | 0]), 480),  # SILK NB 10 ms, one frame
        (bytes([1 << 3 | 0]), 960),  # SILK NB 20 ms
        (bytes([3 << 3 | 1]), 5760),  # SILK NB 60 ms, two frames: the 120 ms maximum
        (bytes([13 << 3 | 2, 0]), 1920),  # Hybrid SWB 20 ms, two frames of different sizes
        (bytes([16 << 3 | 0]), 120),  # CELT NB 2.5 ms
        (bytes([31 << 3 | 0, 1, 2]), 960),  # CELT FB 20 ms (what browsers send)
        (bytes([31 << 3 | 3, 3]), 2880),  # code 3: three 20 ms frames
        (bytes([16 << 3 | 3, 48]), 5760),  # code 3: 48 frames of 2.5 ms
    ],
)
def test_toc_durations(packet: bytes, samples: int) -> None:
    assert packet_samples(packet) == samples


@pytest.mark.parametrize(
    "packet",
    [b"", bytes([31 << 3 | 3]), bytes([31 << 3 | 3, 0]), bytes([3 << 3 | 3, 3]), bytes([16 << 3 | 3, 49])],
    ids=["empty", "code3-no-count", "code3-zero-frames", "180ms", "122.5ms"],
)
def test_invalid_packets_are_parse_errors(packet: bytes) -> None:
    with pytest.raises(ParseError):
        packet_samples(packet)
    with pytest.raises(ParseError):
        packetize(packet)


def test_ffmpeg_opus_packets_are_20ms_and_pass_through_rtp_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tone.ogg"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "libopus", path],
        check=True,
    )
    _, packets = read_ogg_opus(path.read_bytes())
    assert {packet_samples(p.data) for p in packets} == {960}
    assert all(depacketize(packetize(p.data)) == p.data for p in packets)
    assert all(frame_count(p.data) == 1 for p in packets)


@given(st.binary(max_size=8))
def test_fuzz_toc_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        samples = packet_samples(data)
        assert 120 <= samples <= 5760 and samples % 120 == 0
