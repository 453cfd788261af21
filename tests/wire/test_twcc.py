"""Transport-cc feedback on the wire (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1) and the
transport-wide sequence number header extension (§2): encode, decode, round trip, hostile input."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.wire import ParseError
from roomcast.wire.rtcp import TransportCC, encode_twcc_chunks, parse_compound
from roomcast.wire.rtp import RtpPacket
from roomcast.wire.twcc import read_transport_seq, write_transport_seq


def feedback(statuses: list[int], deltas: list[int], *, base: int = 7, ref: int = 100, count: int = 3) -> bytes:
    return TransportCC.create(0x11, 0x22, base, ref, count, statuses, deltas).serialize()


def chunks(raw: bytes, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"!{n}H", raw, 20)


@st.composite
def reports(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    statuses = draw(
        st.lists(st.sampled_from([0, 1, 1, 1, 2]), min_size=1, max_size=400)
        | st.lists(st.sampled_from([0, 1]), min_size=1, max_size=40).map(lambda s: s * 30)
    )
    deltas = [draw(st.integers(0, 255)) if s == 1 else draw(st.integers(-0x8000, 0x7FFF)) for s in statuses if s]
    return statuses, deltas


@settings(max_examples=300)
@given(reports(), st.integers(0, 0xFFFF), st.integers(-(2**23), 2**23 - 1), st.integers(0, 255))
def test_create_then_parse_is_identity(report: tuple[list[int], list[int]], base: int, ref: int, fb: int) -> None:
    statuses, deltas = report
    made = TransportCC.create(1, 2, base, ref, fb, statuses, deltas)
    (parsed,) = parse_compound(made.serialize())
    assert parsed == made
    assert parsed.statuses == bytes(statuses) and parsed.deltas == tuple(deltas)
    assert (parsed.base_seq, parsed.reference_time, parsed.fb_count) == (base, ref, fb)
    assert len(made.serialize()) % 4 == 0


def test_chunk_choice_follows_the_draft_layouts() -> None:
    # a long run of "small delta" is one run-length chunk: 0 | symbol 01 | length (13 bits)
    assert encode_twcc_chunks((1,) * 221) == struct.pack("!H", (1 << 13) | 221)
    # 14 mixed 0/1 symbols fit one one-bit status vector: 1 0 | 14 bits, first symbol highest
    one_bit = (1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1)
    word = 0x8000 | sum(s << (13 - i) for i, s in enumerate(one_bit))
    assert encode_twcc_chunks(one_bit) == struct.pack("!H", word)
    # a large delta needs two-bit symbols: 1 1 | 7 x 2 bits
    two_bit = (1, 2, 0, 1, 1, 0, 2)
    word = 0xC000 | sum(s << (12 - 2 * i) for i, s in enumerate(two_bit))
    assert encode_twcc_chunks(two_bit) == struct.pack("!H", word)
    # longer than 8191: two run-length chunks
    assert encode_twcc_chunks((0,) * 8200) == struct.pack("!HH", 0x1FFF, 9)


def test_libwebrtc_style_feedback_with_padding_bit_parses() -> None:
    """libwebrtc pads transport-cc with the P bit set and the pad count in the last octet."""
    body = (
        struct.pack("!IIHHI", 0x11, 0x22, 500, 3, (42 << 8) | 9) + struct.pack("!H", (1 << 13) | 3) + bytes([4, 8, 12])
    )
    body += b"\x00\x00\x03"  # three octets of padding, the last one counts them
    packet = struct.pack("!BBH", 0x80 | 0x20 | 15, 205, len(body) // 4) + body
    (fb,) = parse_compound(packet)
    assert isinstance(fb, TransportCC)
    assert (fb.base_seq, fb.reference_time, fb.fb_count, fb.statuses, fb.deltas) == (
        500,
        42,
        9,
        b"\x01" * 3,
        (4, 8, 12),
    )
    assert fb.serialize() == packet  # the padding is part of the packet: kept for exact forwarding


def test_negative_reference_time_is_signed_24_bits() -> None:
    (fb,) = parse_compound(feedback([1], [0], ref=-5))
    assert isinstance(fb, TransportCC) and fb.reference_time == -5
    raw = bytearray(feedback([1], [0]))
    raw[16:19] = b"\xff\xff\xff"
    (fb,) = parse_compound(bytes(raw))
    assert isinstance(fb, TransportCC) and fb.reference_time == -1


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda raw: raw[:20], "chunks run past"),
        (lambda raw: raw[:20] + struct.pack("!H", (2 << 13) | 2) + raw[22:24], "deltas run past"),
        (lambda raw: raw[:14] + b"\x00\x00" + raw[16:], "no packet"),
        (lambda raw: raw[:20] + struct.pack("!H", (3 << 13) | 2) + raw[22:], "reserved"),
    ],
)
def test_malformed_feedback_is_a_parse_error(mangle: object, message: str) -> None:
    raw = feedback([1, 1], [5, 6])
    bad = mangle(raw)  # type: ignore[operator]
    if len(bad) % 4:
        bad += b"\x00" * (-len(bad) % 4)
    bad = bad[:2] + struct.pack("!H", len(bad) // 4 - 1) + bad[4:]
    with pytest.raises(ParseError, match=message):
        parse_compound(bad)


def test_create_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="delta"):
        TransportCC.create(1, 2, 0, 0, 0, [1], [256])  # a small delta is one octet
    with pytest.raises(ValueError, match="one receive delta"):
        TransportCC.create(1, 2, 0, 0, 0, [1, 0, 1], [1])
    with pytest.raises(ValueError):
        TransportCC.create(1, 2, 0, 0, 0, [], [])
    with pytest.raises(ValueError, match=r"0\.\.2"):
        TransportCC.create(1, 2, 0, 0, 0, [1, 300], [1])
    with pytest.raises(ValueError):
        TransportCC.create(1, 2, 0, 0, 0, [1, 3], [1])


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    def mutate(data: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
        out = bytearray(data)
        for pos, value in flips:
            out[pos % len(out)] = value
        return bytes(out[: max(0, len(out) - cut)])

    return st.builds(
        mutate,
        st.just(seed),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
        st.integers(0, 8),
    )


SEED = feedback([1, 0, 2, 1] * 10 + [1] * 30, [3, -7, 9] * 10 + [1] * 30)


@settings(max_examples=500)
@given(mutations(SEED) | st.binary(min_size=20, max_size=80).map(lambda b: b"\x8f\xcd" + b[2:]))
def test_mutated_feedback_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        for packet in parse_compound(data):
            if isinstance(packet, TransportCC):
                received = sum(1 for s in packet.statuses if s)
                assert len(packet.deltas) == received and set(packet.statuses) <= {0, 1, 2}
                assert parse_compound(packet.serialize()) == [packet]


def rtp(extensions: tuple[tuple[int, bytes], ...], profile: int = 0xBEDE) -> bytearray:
    pkt = RtpPacket(96, 1, 2, 3, b"payload", extension_profile=profile, extensions=extensions)
    return bytearray(pkt.serialize())


@pytest.mark.parametrize("profile", [0xBEDE, 0x1000])
def test_transport_sequence_number_is_read_and_rewritten_in_place(profile: int) -> None:
    pkt = rtp(((1, b"\x07"), (5, b"\x12\x34"), (9, b"abc")), profile)
    before = bytes(pkt)
    assert read_transport_seq(pkt, 5) == 0x1234
    assert write_transport_seq(pkt, 5, 0x1_ABCD)  # 16 bits on the wire
    assert read_transport_seq(pkt, 5) == 0xABCD
    assert len(pkt) == len(before)
    parsed = RtpPacket.parse(bytes(pkt))
    assert parsed.extension(1) == b"\x07" and parsed.extension(9) == b"abc" and parsed.payload == b"payload"


def test_packets_without_the_extension_are_left_alone() -> None:
    plain = bytearray(RtpPacket(96, 1, 2, 3, b"x").serialize())
    assert read_transport_seq(plain, 5) == -1 and not write_transport_seq(plain, 5, 9)
    other = rtp(((5, b"\x01"),))  # one octet: not a transport-wide sequence number
    assert read_transport_seq(other, 5) == -1 and not write_transport_seq(other, 5, 9)
    assert read_transport_seq(b"\x90" + b"\x00" * 11, 5) == -1  # extension bit, no extension block


@settings(max_examples=300)
@given(st.binary(max_size=60), st.integers(1, 14))
def test_extension_helpers_never_raise(data: bytes, ext_id: int) -> None:
    seq = read_transport_seq(data, ext_id)
    assert -1 <= seq <= 0xFFFF
    buf = bytearray(data)
    assert write_transport_seq(buf, ext_id, 1) == (seq >= 0)
    assert len(buf) == len(data)


# ---------------------------------------------------------------- Chromium's own feedback

CHROMIUM_TWCC = json.loads((Path(__file__).parent / "fixtures" / "chromium_twcc.json").read_text())
"""Captured by tests/wire/capture_twcc.py: Chromium 156 reporting the echo of its own packets."""


@pytest.mark.parametrize(("at", "hexdata"), CHROMIUM_TWCC["feedback"])
def test_chromium_feedback_parses_and_reencodes(at: float, hexdata: str) -> None:
    raw = bytes.fromhex(hexdata)
    (fb,) = parse_compound(raw)  # rtcp-rsize: transport-cc alone, usually with the P bit's padding
    assert isinstance(fb, TransportCC) and fb.serialize() == raw
    assert len(fb.deltas) == sum(1 for s in fb.statuses if s)
    again = TransportCC.create(
        fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.reference_time, fb.fb_count, fb.statuses, fb.deltas
    )
    (reparsed,) = parse_compound(again.serialize())
    assert isinstance(reparsed, TransportCC)
    assert (reparsed.base_seq, reparsed.reference_time, reparsed.fb_count) == (
        fb.base_seq,
        fb.reference_time,
        fb.fb_count,
    )
    assert (reparsed.statuses, reparsed.deltas) == (fb.statuses, fb.deltas)
    assert len(again.serialize()) <= len(raw)  # our chunk choice is as compact as libwebrtc's


def test_chromium_feedback_uses_every_chunk_type_and_counts_up() -> None:
    kinds = set()
    counts = []
    for _, hexdata in CHROMIUM_TWCC["feedback"]:
        raw = bytes.fromhex(hexdata)
        (fb,) = parse_compound(raw)
        assert isinstance(fb, TransportCC)
        counts.append(fb.fb_count)
        chunks_len = len(encode_twcc_chunks(fb.statuses))
        for i in range(0, chunks_len, 2):
            word = int.from_bytes(raw[20 + i : 22 + i], "big")
            kinds.add("run" if not word & 0x8000 else "two-bit" if word & 0x4000 else "one-bit")
    assert kinds == {"run", "one-bit", "two-bit"}
    assert counts == [(counts[0] + k) & 0xFF for k in range(len(counts))]  # no feedback lost on loopback
