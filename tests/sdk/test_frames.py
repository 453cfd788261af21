"""FrameAssembler: frames from RTP packets under reordering, loss, duplicates and sequence wraparound."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.sdk.frames import Frame, FrameAssembler
from roomcast.wire import h264, vp8
from roomcast.wire.rtp import RtpPacket

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(range(250))  # frame tag bit 0 clear: key frame
DELTA = bytes([0x31, 0x01, 0x00]) + bytes(range(100, 250)) * 3  # bit 0 set: inter frame


def rtp(seq: int, ts: int, payload: bytes, marker: bool = False, pt: int = 96) -> bytes:
    return RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 1234, payload, marker).serialize()


def vp8_stream(frames: list[bytes], first_seq: int = 100, mtu: int = 120) -> list[tuple[int, bytes]]:
    """(frame index, packet) for each packet of each frame, 3000 ticks (30 fps) apart."""
    out = []
    seq = first_seq
    for i, frame in enumerate(frames):
        for payload, marker in vp8.packetize(frame, mtu):
            out.append((i, rtp(seq, 90000 + i * 3000, payload, marker)))
            seq += 1
    return out


def bytes_of(frames: list[bytes]) -> list[bytes]:
    """Each frame made distinct (its frame tag byte kept), so a mixed-up frame cannot pass as another."""
    return [f[:1] + bytes(b ^ (n + 1) for b in f[1:]) for n, f in enumerate(frames)]


FRAMES = [KEY, DELTA, DELTA, KEY, DELTA]


def push_all(assembler: FrameAssembler, packets: list[bytes], step: float = 0.001) -> list[Frame]:
    out: list[Frame] = []
    for n, packet in enumerate(packets):
        out += assembler.push(packet, n * step)
    return out


def test_in_order_vp8_frames_with_keyframe_flags() -> None:
    stream = vp8_stream(FRAMES)
    assembler = FrameAssembler("TR_v", "vp8")
    frames = push_all(assembler, [p for _, p in stream])
    assert [f.data for f in frames] == FRAMES
    assert [f.keyframe for f in frames] == [True, False, False, True, False]
    assert [f.timestamp for f in frames] == [90000 + i * 3000 for i in range(5)]
    assert all(f.complete and f.codec == "vp8" and f.track_sid == "TR_v" for f in frames)
    assert assembler.stats.frames == 5 and assembler.stats.dropped_frames == 0


def test_reordering_within_the_window_and_duplicates() -> None:
    packets = [p for _, p in vp8_stream(FRAMES)]
    rng = random.Random(7)
    shuffled = packets[:]
    for i in range(1, len(shuffled) - 4, 3):  # swap neighbours a few places apart (the first packet starts it)
        j = i + rng.randint(1, 4)
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    assert shuffled != packets
    assembler = FrameAssembler("TR_v", "vp8")
    frames = push_all(assembler, [*shuffled, packets[4], packets[0]])
    assert [f.data for f in frames] == FRAMES
    assert assembler.stats.duplicates == 2 and assembler.stats.lost_packets == 0


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_a_lost_packet_drops_its_frame_only(which: str) -> None:
    stream = vp8_stream(FRAMES)
    frame_two = [n for n, (i, _) in enumerate(stream) if i == 2]
    lost = {"first": frame_two[0], "middle": frame_two[1], "last": frame_two[-1]}[which]
    assembler = FrameAssembler("TR_v", "vp8", max_delay=0.05)
    frames = push_all(assembler, [p for n, (_, p) in enumerate(stream) if n != lost], step=0.02)
    frames += assembler.flush()
    assert [f.timestamp for f in frames] == [90000, 93000, 99000, 102000]
    assert all(f.complete for f in frames) and [f.data for f in frames] == [KEY, DELTA, KEY, DELTA]
    assert (assembler.stats.lost_packets, assembler.stats.dropped_frames, assembler.stats.frames) == (1, 1, 4)


def test_a_gap_waits_for_the_window_or_max_delay() -> None:
    packets = [p for _, p in vp8_stream([DELTA] * 40)]
    assembler = FrameAssembler("TR_v", "vp8", window=16, max_delay=10.0)
    out = assembler.push(packets[0], 0.0)
    for packet in packets[2:10]:
        out += assembler.push(packet, 0.0)
    assert out == []  # packet 1 may still come
    for packet in packets[10:30]:
        out += assembler.push(packet, 0.0)
    assert out and assembler.stats.lost_packets == 1  # the window ran out
    timed = FrameAssembler("TR_v", "vp8", window=1000, max_delay=0.1)
    timed.push(packets[0], 0.0)
    timed.push(packets[2], 0.01)
    assert timed.stats.lost_packets == 0
    timed.push(packets[3], 0.2)
    assert timed.stats.lost_packets == 1  # packet 2 waited too long for packet 1


def test_sequence_wraparound_with_reordering() -> None:
    stream = [p for _, p in vp8_stream(FRAMES * 2, first_seq=65530, mtu=60)]
    stream[5], stream[7] = stream[7], stream[5]  # across 65535 -> 0
    assembler = FrameAssembler("TR_v", "vp8")
    frames = push_all(assembler, stream)
    assert [f.data for f in frames] == FRAMES * 2 and assembler.stats.lost_packets == 0


def test_incomplete_frames_only_on_request_and_never_as_complete() -> None:
    stream = [p for n, (_, p) in enumerate(vp8_stream(FRAMES)) if n != 4]
    assembler = FrameAssembler("TR_v", "vp8", emit_incomplete=True, max_delay=0.0)
    frames = push_all(assembler, stream) + assembler.flush()
    assert [f.complete for f in frames] == [True, False, True, True, True]
    assert frames[1].data != FRAMES[1] and assembler.stats.frames == 4


def test_h264_access_units_and_idr_keyframes() -> None:
    sps, pps = bytes([0x67, 0x42, 0xE0, 0x1F]), bytes([0x68, 0xCE])
    idr = bytes([0x65, 0x88]) + bytes(range(1, 250)) * 3
    slice_ = bytes([0x41, 0x9A]) + bytes(range(1, 200))
    units = [(sps, pps, idr), (slice_,), (slice_,), (sps, pps, idr)]
    packets = []
    seq = 65000
    for i, nals in enumerate(units):
        for payload, marker in h264.packetize(nals, mtu=300):
            packets.append(rtp(seq, i * 3000, payload, marker, pt=102))
            seq += 1
    assembler = FrameAssembler("TR_h", "h264")
    frames = push_all(assembler, packets)
    assert [f.data for f in frames] == [h264.AccessUnit(n).annexb() for n in units]
    assert [f.keyframe for f in frames] == [True, False, False, True]
    lossy = FrameAssembler("TR_h", "h264", max_delay=0.0)
    frames = push_all(lossy, packets[1:]) + lossy.flush()  # the STAP-A with SPS/PPS is gone
    assert [f.timestamp for f in frames] == [3000, 6000, 9000] and lossy.stats.dropped_frames == 1


def test_opus_every_packet_is_a_keyframe_and_loss_is_counted() -> None:
    packets = [rtp(10 + n, n * 960, bytes([0xF8, n]), pt=111) for n in range(10)]
    order = [0, 2, 1, 3, 4, 6, 7, 8, 9]  # 5 lost, 1 and 2 swapped
    assembler = FrameAssembler("TR_a", "opus", window=3, max_delay=10.0)
    frames = push_all(assembler, [packets[n] for n in order])
    assert [f.timestamp // 960 for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert all(f.keyframe and f.complete for f in frames)
    assert assembler.stats.lost_packets == 1 and assembler.stats.dropped_frames == 0


def test_malformed_packets_and_sequence_restarts() -> None:
    assembler = FrameAssembler("TR_a", "opus")
    assert assembler.push(b"\x00" * 5) == [] and assembler.stats.malformed == 1
    assert len(assembler.push(rtp(100, 0, b"\xf8\x01", pt=111))) == 1
    assert len(assembler.push(rtp(40000, 960, b"\xf8\x02", pt=111))) == 1  # a new numbering, not 39899 losses
    assert assembler.stats.lost_packets == 0
    with pytest.raises(ValueError):
        FrameAssembler("TR_x", "av1")


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 5), min_size=3, max_size=12),
    st.sets(st.integers(0, 80), max_size=4),
    st.randoms(use_true_random=False),
)
def test_whatever_the_network_does_complete_frames_are_exact(
    first_seq: int, kinds: list[int], lost: set[int], rng: random.Random
) -> None:
    originals = bytes_of([KEY if k == 0 else DELTA for k in kinds])
    stream = vp8_stream(originals, first_seq, mtu=90)
    arrived = [(i, p) for n, (i, p) in enumerate(stream) if n not in lost]
    jitter = [0.0] + [n + rng.uniform(0, 6) for n in range(1, len(arrived))]  # each packet late by < 6 places
    arrived = [arrived[n] for n in sorted(range(len(arrived)), key=jitter.__getitem__)]
    assembler = FrameAssembler("TR_v", "vp8", window=16, max_delay=1.0)
    frames = push_all(assembler, [p for _, p in arrived], step=0.01) + assembler.flush()
    damaged = {stream[n][0] for n in lost if n < len(stream)}
    got = {(f.timestamp - 90000) // 3000: f for f in frames}
    assert all(f.complete for f in frames)
    assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)
    assert set(got) == set(range(len(originals))) - damaged  # every intact frame, no damaged one
    for i, frame in got.items():
        assert frame.data == originals[i] and frame.keyframe == (kinds[i] == 0)
    assert assembler.stats.frames + assembler.stats.dropped_frames >= len(originals) - len(lost)
