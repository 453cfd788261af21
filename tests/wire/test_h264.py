"""H.264 Annex-B parsing and RFC 6184 packetization mode 1: a real x264 stream, hand-made edge cases, fuzzing."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.h264 import (
    FU_A,
    STAP_A,
    access_units,
    depacketize,
    depacketize_nals,
    nal_type,
    packetize,
    payload_nal_types,
    read_annexb,
    split_annexb,
    starts_access_unit,
)

SPS = bytes([0x67, 0x42, 0xC0, 0x1F, 0xD9])
PPS = bytes([0x68, 0xCB, 0x83, 0xCB, 0x20])
IDR = bytes([0x65, 0x88]) + bytes(range(1, 200))  # first_mb_in_slice = 0 (first bit after the header set)
SLICE = bytes([0x41, 0x9A]) + bytes(range(1, 50))
SECOND_SLICE = bytes([0x41, 0x40, 0x11])  # first_mb_in_slice != 0: the same picture


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("h264") / "clip.h264"
    args = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "1", "-pix_fmt", "yuv420p"]
    codec = ["-c:v", "libx264", "-profile:v", "baseline", "-bsf:v", "h264_mp4toannexb", "-f", "h264"]
    subprocess.run(["ffmpeg", "-loglevel", "error", *args, *codec, str(path)], check=True)
    return path.read_bytes()


def test_x264_stream_splits_into_thirty_pictures_with_one_idr(clip: bytes) -> None:
    units = read_annexb(clip)
    assert len(units) == 30
    assert [nal_type(n) for n in units[0].nals][:2] == [7, 8] and units[0].keyframe
    assert nal_type(units[0].nals[-1]) == 5
    assert not any(u.keyframe for u in units[1:])
    assert all({nal_type(n) for n in u.nals} == {1} for u in units[1:])
    assert split_annexb(b"".join(u.annexb() for u in units)) == split_annexb(clip)


@pytest.mark.parametrize("mtu", [100, 300, 1100, 1500])
def test_x264_packetization_round_trip(clip: bytes, mtu: int) -> None:
    for unit in read_annexb(clip):
        packets = packetize(unit.nals, mtu)
        assert all(len(p) <= mtu for p, _ in packets)
        assert [m for _, m in packets] == [False] * (len(packets) - 1) + [True]
        assert starts_access_unit(packets[0][0])
        if not unit.keyframe:  # one slice: only its first fragment can begin a picture
            assert not any(starts_access_unit(p) for p, _ in packets[1:])
        assert depacketize([p for p, _ in packets]) == unit.annexb()
    first = packetize(read_annexb(clip)[0].nals, 1100)[0][0]
    assert first[0] & 0x1F == STAP_A and payload_nal_types(first)[:2] == (7, 8)


def test_start_codes_trailing_zeros_and_grouping() -> None:
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x00\x01" + IDR
    stream += b"\x00\x00\x01" + SLICE + b"\x00\x00\x01" + SECOND_SLICE + b"\x00\x00"
    assert split_annexb(stream) == [SPS, PPS, IDR, SLICE, SECOND_SLICE]
    units = access_units(split_annexb(stream))
    assert [u.nals for u in units] == [(SPS, PPS, IDR), (SLICE, SECOND_SLICE)]
    assert [u.keyframe for u in units] == [True, False]
    assert split_annexb(b"") == [] and split_annexb(b"\x00\x00") == []
    with pytest.raises(ParseError):
        split_annexb(b"\x12\x00\x00\x01" + SPS)
    with pytest.raises(ParseError):
        split_annexb(b"\x00\x00\x01\x80")


def test_packet_kinds() -> None:
    packets = packetize([SPS, PPS, IDR], mtu=100)
    kinds = [p[0] & 0x1F for p, _ in packets]
    assert kinds[0] == STAP_A and set(kinds[1:]) == {FU_A}
    assert packets[1][0][1] & 0x80 and packets[-1][0][1] & 0x40  # FU-A S and E bits
    assert payload_nal_types(packets[1][0]) == (5,) and payload_nal_types(packets[2][0]) == ()
    assert packetize([SLICE], mtu=1100) == [(SLICE, True)]  # a single NAL unit packet
    assert not starts_access_unit(SECOND_SLICE) and starts_access_unit(SLICE)


@pytest.mark.parametrize(
    "payloads",
    [
        [bytes([FU_A, 0x05, 1])],  # continuation without start
        [bytes([FU_A, 0x85, 1])],  # started, never ended
        [bytes([FU_A, 0x85, 1]), SLICE],  # interrupted by another NAL unit
        [bytes([FU_A, 0x85, 1]), bytes([FU_A, 0x41, 2])],  # types disagree
        [bytes([STAP_A, 0, 9, 1])],  # STAP-A unit longer than the payload
        [bytes([STAP_A, 0])],  # truncated size
        [bytes([25, 0, 0])],  # STAP-B: not packetization mode 1
        [bytes([0])],
        [b""],
    ],
)
def test_bad_payloads_are_parse_errors(payloads: list[bytes]) -> None:
    with pytest.raises(ParseError):
        depacketize_nals(payloads)


def emulation_prevented(rbsp: bytes) -> bytes:
    """H.264 §7.4.1: an 0x03 after two zero bytes whenever the next byte is 0..3."""
    out = bytearray()
    for byte in rbsp:
        if len(out) >= 2 and out[-1] == 0 and out[-2] == 0 and byte <= 3:
            out.append(3)
        out.append(byte)
    return bytes(out)


# NAL units as an encoder emits them: forbidden bit clear, types 1..23, no start-code emulation.
nal_units = st.tuples(st.integers(0, 3), st.integers(1, 23), st.binary(min_size=0, max_size=3000)).map(
    lambda t: bytes([(t[0] << 5) | t[1]]) + emulation_prevented(t[2] + b"\x80")
)


@settings(max_examples=200)
@given(st.lists(nal_units, min_size=1, max_size=8), st.integers(16, 1500))
def test_packetize_round_trip(nals: list[bytes], mtu: int) -> None:
    packets = packetize(nals, mtu)
    assert all(len(p) <= mtu for p, _ in packets) and packets[-1][1]
    assert depacketize_nals([p for p, _ in packets]) == nals
    assert split_annexb(depacketize([p for p, _ in packets])) == nals


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=5), st.binary(max_size=200))
def test_fuzz_only_parse_errors(payloads: list[bytes], stream: bytes) -> None:
    with contextlib.suppress(ParseError):
        depacketize_nals(payloads)
    with contextlib.suppress(ParseError):
        read_annexb(stream)
    for payload in payloads:  # total functions: never raise
        payload_nal_types(payload)
        starts_access_unit(payload)


def test_file_fixture_is_real(clip: bytes, tmp_path: Path) -> None:
    # The clip decodes with ffmpeg after our Annex-B rewrite, so the grouping kept every NAL unit usable.
    out = tmp_path / "rewritten.h264"
    out.write_bytes(b"".join(u.annexb() for u in read_annexb(clip)))
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_frames,width",
            "-of",
            "csv=p=0",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "320,30"
