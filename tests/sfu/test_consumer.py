import itertools
import struct

from hypothesis import given
from hypothesis import strategies as st

from roomcast.proto.feedback import KeyframeThrottle, NackGenerator, RtxRing
from roomcast.sfu.consumer import Consumer
from roomcast.wire.rtp import header_length as rtp_header_length


def rtp(seq: int, ts: int, ssrc: int, pt: int = 96, marker: bool = False, payload: bytes = b"\x01\x02\x03") -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload


def fields(pkt: bytes | bytearray) -> tuple[int, int, int, int, bool]:
    _b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", pkt)
    return seq, ts, ssrc, b1 & 0x7F, bool(b1 & 0x80)


def make(**kw: object) -> tuple[Consumer, list[bytes]]:
    sent: list[bytes] = []
    args: dict = {"ssrc": 0xAAAA, "kind": "video", "clock_rate": 90000, "send": lambda p: sent.append(bytes(p))}
    args.update(kw)
    return Consumer(**args), sent


def test_rewrites_ssrc_pt_and_keeps_payload_and_marker() -> None:
    c, sent = make(pt_map={96: 100})
    c.forward(rtp(10, 1000, 0x1234, marker=True, payload=b"hello"), 0x1234, 0.0)
    assert fields(sent[0]) == (10, 1000, 0xAAAA, 100, True)
    assert sent[0][12:] == b"hello"


def test_switching_source_keeps_sequence_and_time_continuous() -> None:
    c, sent = make()
    for i in range(5):
        c.forward(rtp(100 + i, 9000 * i, 1), 1, i / 30)
    c.forward(rtp(60000, 123456789, 2), 2, 5 / 30 + 1.0)  # another producer, one second later
    c.forward(rtp(60001, 123456789 + 3000, 2), 2, 5 / 30 + 1.0 + 1 / 30)
    seqs = [fields(p)[0] for p in sent]
    assert seqs == [100, 101, 102, 103, 104, 105, 106]
    ts = [fields(p)[1] for p in sent]
    assert ts[5] - ts[4] == 90000 + 3000  # elapsed wall time mapped onto the clock
    assert ts[6] - ts[5] == 3000


def test_pause_resume_has_no_sequence_gap() -> None:
    c, sent = make()
    c.forward(rtp(1, 0, 1), 1, 0.0)
    c.pause()
    for s in range(2, 50):
        c.forward(rtp(s, s * 3000, 1), 1, s / 30)
    c.resume()
    c.forward(rtp(50, 150000, 1), 1, 50 / 30)
    assert [fields(p)[0] for p in sent] == [1, 2]


def test_nack_answered_with_rtx_per_rfc4588() -> None:
    c, sent = make(rtx_ssrc=0xBBBB, rtx_pt={96: 97})
    for s in range(10):
        c.forward(rtp(s, s * 10, 1, payload=bytes([s]) * 4), 1, 0.0)
    sent.clear()
    assert c.retransmit([3, 7, 999]) == 2
    seq, ts, ssrc, pt, _ = fields(sent[0])
    assert (ssrc, pt, ts) == (0xBBBB, 97, 30)
    assert sent[0][12:14] == struct.pack("!H", 3)  # original sequence number first
    assert sent[0][14:] == bytes([3]) * 4
    assert fields(sent[1])[0] == (seq + 1) & 0xFFFF


def test_nack_after_a_source_switch_resends_exactly_what_was_sent() -> None:
    """The ring keeps the shared source packet plus the timestamp we gave it: a retransmission of a
    packet sent before a re-base must carry that packet's old numbering, not the new offsets."""
    c, sent = make(pt_map={96: 100})
    source = rtp(40000, 5000, 1, payload=b"first")
    c.forward(source, 1, 0.0)
    c.forward(rtp(7, 1, 2, payload=b"other"), 2, 1.0)  # another producer: offsets change
    assert c.ring.get(fields(sent[0])[0]) is source  # no per-subscriber copy in the ring
    c.retransmit([fields(sent[0])[0]])
    assert sent[-1] == sent[0]


def test_nack_without_rtx_resends_the_packet() -> None:
    c, sent = make()
    c.forward(rtp(5, 0, 1), 1, 0.0)
    c.retransmit([5])
    assert sent[0] == sent[1]


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.lists(st.integers(1, 5), min_size=1, max_size=40))
def test_output_sequence_is_consecutive_for_consecutive_input(seq0: int, ts0: int, steps: list[int]) -> None:
    c, sent = make()
    seq, ts = seq0, ts0
    for step in steps:
        c.forward(rtp(seq, ts, 7), 7, 0.0)
        seq = (seq + 1) & 0xFFFF
        ts = (ts + step * 3000) & 0xFFFFFFFF
    out = [fields(p)[0] for p in sent]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in itertools.pairwise(out))


def test_header_length_with_extension_and_csrcs() -> None:
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xff\x00\x00"
    pkt = struct.pack("!BBHII", 0x92, 96, 1, 2, 3) + b"\x00" * 8 + ext + b"payload"
    assert rtp_header_length(pkt) == 12 + 8 + 8
    assert rtp_header_length(pkt[:22]) == -1


def test_rtx_ring_forgets_overwritten_slots() -> None:
    ring = RtxRing(4)
    ring.store(1, b"a")
    ring.store(5, b"b")
    assert ring.get(1) is None and ring.get(5) == b"b"


def test_keyframe_throttle_under_a_flood() -> None:
    throttle = KeyframeThrottle(0.5)
    allowed = [throttle.allow(i * 0.01) for i in range(300)]  # 100 PLI/s for 3 s
    assert sum(allowed) == 6
    assert throttle.suppressed == 294


def test_nack_generator_reports_gaps_and_recoveries() -> None:
    gen = NackGenerator(rtt=0.1, max_tries=2)
    for s in (65533, 65534, 2, 3):  # wraps, 65535, 0 and 1 missing
        gen.on_packet(s, 0.0)
    assert sorted(gen.due(0.0)) == [0, 1, 65535]
    assert gen.due(0.05) == []  # not again within one RTT
    gen.on_packet(0, 0.06)
    assert sorted(gen.due(0.11)) == [1, 65535]
    assert gen.due(0.3) == []  # gave up after max_tries
    assert gen.recovered == 1


def test_probe_padding_repeats_packets_a_few_frames_old_as_rtx() -> None:
    from roomcast.sfu.consumer import PROBE_BACK_MAX, PROBE_BACK_MIN

    c, sent = make(rtx_ssrc=0xBBBB, rtx_pt={96: 97})
    assert c.pad(5000) == 0  # nothing forwarded yet
    for i in range(300):
        c.forward(rtp(1000 + i, 3000 * i, 1, payload=bytes([i & 0xFF]) * 100), 1, i / 100)
    forwarded = len(sent)
    padded = c.pad(1000)
    padding = sent[forwarded:]
    assert padded >= 1000 and len(padding) == 9 and padded == sum(len(p) for p in padding)  # 112 B + OSN each
    osns = [struct.unpack_from("!H", p, 12)[0] for p in padding]
    newest = 1000 + 299
    assert all(newest - PROBE_BACK_MAX <= osn <= newest - PROBE_BACK_MIN for osn in osns)  # a few frames old
    for p, osn in zip(padding, osns, strict=True):
        _seq, _ts, ssrc, pt, _m = fields(p)
        assert ssrc == 0xBBBB and pt == 97 and p[14:] == bytes([(osn - 1000) & 0xFF]) * 100  # RFC 4588 §4
    rtx_seqs = [fields(p)[0] for p in padding]
    assert rtx_seqs == list(range(rtx_seqs[0], rtx_seqs[0] + 9))  # the RTX stream's own numbering goes on
    assert c.retransmits == 0 and c.padding_packets == 9 and c.padding_bytes == padded  # not NACK answers
    c.pad(10**6)  # a big budget cycles through the window, it does not run away
    assert len(sent) - forwarded <= 9 + PROBE_BACK_MAX

    plain, plain_sent = make()  # without RTX: no padding (a duplicate on the media SSRC would show in its stats)
    plain.forward(rtp(1, 0, 1), 1, 0.0)
    assert plain.pad(5000) == 0 and len(plain_sent) == 1


def test_a_packet_is_retransmitted_at_most_once_per_round_trip() -> None:
    """A receive-only Chrome re-NACKs every 100 ms; behind a second of queue each lost packet went out ten times."""
    c, sent = make(rtx_ssrc=0xBBBB, rtx_pt={96: 97})
    for s in range(10):
        c.forward(rtp(s, s * 10, 1), 1, 0.0)
    c.rtt = 1.0
    sent.clear()
    assert c.retransmit([3, 4], now=10.0) == 2
    assert c.retransmit([3, 4], now=10.1) == 0 and c.retransmits_suppressed == 2  # the copies may be queued still
    assert c.retransmit([3, 5], now=10.5) == 1  # a packet not resent yet goes at once
    assert c.retransmit([3, 4], now=11.05) == 2  # a round trip later: the copy was lost too
    assert c.retransmit([3], now=None) == 1  # no clock: every NACK answered, as before
    assert [struct.unpack_from("!H", p, 12)[0] for p in sent] == [3, 4, 5, 3, 4, 3]
