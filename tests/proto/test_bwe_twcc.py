"""Both ends of transport-cc: the send history + feedback adapter (TwccSender) and the receive-side
feedback generator (TwccFeedbackGenerator), alone and end to end through the wire format."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.proto.bwe.twcc_receiver import TwccFeedbackGenerator
from roomcast.proto.bwe.twcc_sender import TICK, TwccSender
from roomcast.wire.rtcp import TransportCC, parse_compound


def fb(base: int, statuses: list[int], deltas: list[int], ref: int = 0, count: int = 0) -> TransportCC:
    return TransportCC.create(1, 2, base, ref, count, statuses, deltas)


def sent(sender: TwccSender, n: int, start: float = 0.0, step: float = 0.001, size: int = 1000) -> list[int]:
    return [sender.on_packet_sent(size, start + k * step) for k in range(n)]


def test_sequence_numbers_are_consecutive_and_wrap_at_16_bits() -> None:
    sender = TwccSender(capacity=64)
    seqs = [sender.on_packet_sent(100, 0.0) for _ in range(65_540)]
    assert seqs[:3] == [0, 1, 2] and seqs[65_535] == 0xFFFF and seqs[65_536:] == [0, 1, 2, 3]
    assert sender.packets_sent == 65_540


def test_feedback_gives_send_time_arrival_time_and_size_of_received_packets() -> None:
    sender = TwccSender()
    for k in range(5):
        sender.on_packet_sent(1000 + k, 10.0 + k * 0.010)
    # packets 0, 1, 3, 4 arrived 10 ms apart (40 ticks), 2 was lost
    results = sender.on_feedback(fb(0, [1, 1, 0, 1, 1], [4, 40, 80, 40], ref=3), 11.0)
    assert results is not None
    assert results.send_times == [10.0, 10.01, 10.03, 10.04]
    assert results.sizes == [1000, 1001, 1003, 1004]
    assert [round((a - results.arrival_times[0]) / TICK) for a in results.arrival_times] == [0, 40, 120, 160]
    assert (results.lost, results.reported) == (1, 5)
    assert sender.counters.packets_acked == 4 and sender.counters.packets_lost == 1
    assert sender.last_acked_send == 10.04


def test_packets_arriving_out_of_order_come_out_in_arrival_order() -> None:
    sender = TwccSender()
    sent(sender, 3, step=0.010)
    # packet 1 arrived 5 ms before packet 0: a negative delta, status 2
    results = sender.on_feedback(fb(0, [1, 2, 1], [40, -20, 60]), 1.0)
    assert results is not None
    assert results.send_times == [0.01, 0.0, 0.02]
    assert results.arrival_times == sorted(results.arrival_times)


def test_repeated_feedback_is_counted_as_duplicates_and_used_once() -> None:
    sender = TwccSender()
    sent(sender, 4)
    report = fb(0, [1, 1, 1, 1], [1, 1, 1, 1])
    first = sender.on_feedback(report, 1.0)
    again = sender.on_feedback(report, 1.1)
    assert first is not None and len(first.send_times) == 4
    assert again is not None and again.send_times == [] and again.reported == 0
    assert sender.counters.duplicates == 4 and sender.counters.packets_acked == 4


def test_a_packet_reported_lost_then_received_is_recovered() -> None:
    sender = TwccSender()
    sent(sender, 4)
    first = sender.on_feedback(fb(0, [1, 0, 1], [1, 2]), 1.0)
    later = sender.on_feedback(fb(1, [1, 1, 1], [3, 1, 1]), 1.1)  # overlaps: 1 recovered, 2 repeated, 3 new
    assert first is not None and first.lost == 1
    assert later is not None and later.send_times == [0.001, 0.003]
    assert later.reported == 1 and later.lost == -1  # one new packet, one earlier loss taken back
    assert sender.counters.packets_recovered == 1 and sender.counters.duplicates == 1


def test_a_gap_no_feedback_covered_is_new_when_a_later_one_covers_it() -> None:
    """The receiver's first report may start after packets that were still on their way."""
    sender = TwccSender()
    sent(sender, 3)
    first = sender.on_feedback(fb(1, [1], [1]), 1.0)
    later = sender.on_feedback(fb(0, [1, 1, 0], [5, 1]), 1.1)  # 0 arrived late; 1 again; 2 lost
    assert first is not None and later is not None
    assert later.send_times == [0.0] and (later.reported, later.lost) == (2, 1)
    assert sender.counters.duplicates == 1 and sender.counters.packets_recovered == 0


def test_feedback_about_unsent_packets_is_dropped_whole() -> None:
    sender = TwccSender()
    assert sender.on_feedback(fb(0, [1], [1]), 0.0) is None  # nothing sent yet
    sent(sender, 3)
    assert sender.on_feedback(fb(1, [1, 1, 1], [1, 1, 1]), 0.0) is None  # reaches seq 3: never sent
    assert sender.counters.bogus_feedback == 2 and sender.counters.packets_acked == 0


def test_packets_older_than_the_ring_are_unknown() -> None:
    sender = TwccSender(capacity=64)
    sent(sender, 200)
    results = sender.on_feedback(fb(100, [1] * 100, [1] * 100), 1.0)  # 100..135 were overwritten
    assert results is not None and len(results.send_times) == 64
    assert results.send_times[0] == pytest.approx(0.136)
    assert sender.counters.unknown == 36


def test_sequence_number_wrap_inside_one_feedback() -> None:
    sender = TwccSender(capacity=128)
    sent(sender, 65_530, step=0.0)
    tail = [sender.on_packet_sent(500, 100.0 + k * 0.001) for k in range(12)]
    assert tail[5:7] == [0xFFFF, 0]
    results = sender.on_feedback(fb(tail[0], [1] * 12, [1] * 12), 101.0)
    assert results is not None
    assert results.send_times == pytest.approx([100.0 + k * 0.001 for k in range(12)])
    assert sender.counters.unknown == 0


def test_reference_time_wrap_keeps_arrival_times_increasing() -> None:
    sender = TwccSender()
    sent(sender, 2)
    top = (1 << 24) - 1  # the last 64 ms step before the 24-bit reference time wraps
    first = sender.on_feedback(fb(0, [1], [0], ref=top), 1.0)
    second = sender.on_feedback(fb(1, [1], [0], ref=0), 1.1)  # 64 ms later, wrapped
    assert first is not None and second is not None
    assert second.arrival_times[0] - first.arrival_times[0] == pytest.approx(0.064)


@st.composite
def journeys(draw: st.DrawFn) -> list[tuple[float, float | None]]:
    """(send time, arrival time or None) per packet: jitter, reordering, loss, bursts, pauses."""
    n = draw(st.integers(1, 400))
    rng = random.Random(draw(st.integers(0, 2**32)))
    loss = draw(st.sampled_from([0.0, 0.05, 0.3]))
    jitter = draw(st.sampled_from([0.0, 0.002, 0.03]))
    out: list[tuple[float, float | None]] = []
    t = 0.0
    for _ in range(n):
        t += rng.choice([0.0, 0.0005, 0.005, 0.02]) + (2.5 if rng.random() < 0.01 else 0.0)
        arrival = None if rng.random() < loss else t + 0.03 + rng.uniform(0, jitter)
        out.append((t, arrival))
    return out


@settings(max_examples=150, deadline=None)
@given(journeys(), st.sampled_from([0.02, 0.05, 0.1]), st.integers(0, 0xFFFF))
def test_generator_wire_and_sender_agree_with_what_happened(
    journey: list[tuple[float, float | None]], interval: float, first_seq: int
) -> None:
    """Every packet that arrived is reported received exactly once (repeats of re-reported ranges are
    counted as duplicates, not used), with its own send time and its arrival time to within one
    250 µs tick of the others'; nothing that was lost is reported received."""
    sender = TwccSender(capacity=512)
    for _ in range(first_seq):  # start anywhere in the 16-bit space, wraps included
        sender.on_packet_sent(0, -1.0)
    generator = TwccFeedbackGenerator(1, 2, interval=interval, max_packets=64)
    events: list[tuple[float, int, int]] = []  # (time, kind, index): 0 send, 1 arrive
    for k, (send, arrival) in enumerate(journey):
        events.append((send, 0, k))
        if arrival is not None:
            events.append((arrival, 1, k))
    events.sort()
    seqs: dict[int, int] = {}
    matched: list[tuple[int, float, float]] = []  # (packet index from its size, send, arrival)

    def deliver(now: float) -> None:
        while (report := generator.poll_feedback()) is not None:
            (parsed,) = parse_compound(report.serialize())
            assert isinstance(parsed, TransportCC)
            results = sender.on_feedback(parsed, now)
            assert results is not None
            for size, send, arrival in zip(results.sizes, results.send_times, results.arrival_times, strict=True):
                matched.append((size - 100, send, arrival))

    for now, kind, k in events:
        timeout = generator.poll_timeout()
        if timeout is not None and timeout <= now:
            generator.handle_timeout(now)
            deliver(now)
        if kind == 0:
            seqs[k] = sender.on_packet_sent(100 + k, journey[k][0])
        else:
            generator.on_packet(seqs[k], now)
            deliver(now)
    generator.handle_timeout(1e9)
    deliver(1e9)

    arrived = {k for k, (_, a) in enumerate(journey) if a is not None}
    assert sorted(k for k, _, _ in matched) == sorted(arrived)
    if matched:
        k0, _, a0 = matched[0]
        offset = a0 - journey[k0][1]  # type: ignore[operator]  # the receiver's clock is its own
        for k, send, arrival in matched:
            assert send == journey[k][0]
            assert abs(arrival - offset - journey[k][1]) <= 2 * TICK  # type: ignore[operator]
    assert sender.counters.packets_acked == len(arrived) and sender.counters.unknown == 0


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 3000),
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF),
            st.lists(st.sampled_from([0, 1, 2]), min_size=1, max_size=80),
            st.integers(-(2**23), 2**23 - 1),
        ),
        max_size=8,
    ),
)
def test_arbitrary_feedback_never_breaks_the_sender(sent_count: int, reports: list[tuple[int, list[int], int]]) -> None:
    sender = TwccSender(capacity=256)
    sent(sender, sent_count)
    acked = 0
    for base, statuses, ref in reports:
        deltas = [3 if s == 1 else -9 for s in statuses if s]
        results = sender.on_feedback(fb(base, statuses, deltas, ref=ref), 5.0)
        if results is not None:
            assert len(results.send_times) == len(results.arrival_times) == len(results.sizes)
            acked += len(results.send_times)
    assert acked == sender.counters.packets_acked <= sent_count  # no packet acknowledged twice


# ---------------------------------------------------------------- the generator alone


def statuses_of(reports: list[TransportCC]) -> list[int]:
    return [s for r in reports for s in r.statuses]


def drain(generator: TwccFeedbackGenerator) -> list[TransportCC]:
    out = []
    while (report := generator.poll_feedback()) is not None:
        out.append(report)
    return out


def test_generator_reports_every_interval_and_sleeps_when_idle() -> None:
    gen = TwccFeedbackGenerator(7, 8, interval=0.05)
    assert gen.poll_timeout() is None
    gen.on_packet(10, 1.000)
    gen.on_packet(12, 1.010)
    assert gen.poll_timeout() == pytest.approx(1.05)
    gen.handle_timeout(1.04)
    assert drain(gen) == []
    gen.handle_timeout(1.05)
    (report,) = drain(gen)
    assert (report.sender_ssrc, report.media_ssrc, report.base_seq) == (7, 8, 10)
    assert report.statuses == bytes((1, 0, 1))
    assert gen.poll_timeout() is None  # nothing new: no timer, no empty feedback


def test_generator_sends_at_once_when_max_packets_are_waiting() -> None:
    gen = TwccFeedbackGenerator(1, 2, max_packets=16)
    for k in range(16):
        gen.on_packet(k, 0.001 * k)
    (report,) = drain(gen)
    assert len(report.statuses) == 16 and gen.poll_timeout() is None


def test_generator_rereports_a_late_packet_as_received() -> None:
    gen = TwccFeedbackGenerator(1, 2, interval=0.05, back_window=0.5)
    gen.on_packet(0, 0.0)
    gen.on_packet(2, 0.001)
    gen.handle_timeout(0.05)
    (first,) = drain(gen)
    assert first.statuses == bytes((1, 0, 1))
    gen.on_packet(1, 0.06)  # late: its range was reported already
    gen.handle_timeout(0.11)
    (second,) = drain(gen)
    assert second.base_seq == 1 and second.statuses == bytes((1, 2))  # 2 again (earlier: a negative delta)
    assert second.deltas[1] == -236  # from its kept arrival time: 0.001 s against 1's 0.060 s


def test_generator_splits_on_a_delta_too_large_for_16_bits() -> None:
    gen = TwccFeedbackGenerator(1, 2, max_packets=256)
    gen.on_packet(0, 1.0)
    gen.on_packet(1, 20.0)  # 19 s later: more than 8.19 s of 250 µs ticks
    gen.handle_timeout(30.0)
    reports = drain(gen)
    assert [r.base_seq for r in reports] == [0, 1] and [r.fb_count for r in reports] == [0, 1]
    assert statuses_of(reports) == [1, 1]


def test_generator_counts_duplicates_and_ignores_ancient_packets() -> None:
    gen = TwccFeedbackGenerator(1, 2, max_packets=64)
    gen.on_packet(1000, 0.0)
    gen.on_packet(1000, 0.001)
    gen.handle_timeout(1.0)
    drain(gen)
    gen.on_packet(500, 1.1)  # 500 behind what was reported: too old to report again
    assert gen.counters.duplicates == 1 and gen.counters.too_old == 1
    assert gen.poll_timeout() is None


def test_generator_unwraps_sequence_numbers() -> None:
    gen = TwccFeedbackGenerator(1, 2)
    for k, seq in enumerate([0xFFFE, 0xFFFF, 0, 1]):
        gen.on_packet(seq, 0.001 * k)
    gen.handle_timeout(1.0)
    (report,) = drain(gen)
    assert report.base_seq == 0xFFFE and report.statuses == bytes((1, 1, 1, 1))


def test_feedback_counter_wraps_at_8_bits() -> None:
    gen = TwccFeedbackGenerator(1, 2, max_packets=1)
    for k in range(300):
        gen.on_packet(k, 0.001 * k)
    counts = [r.fb_count for r in drain(gen)]
    assert counts[:2] == [0, 1] and counts[255:258] == [255, 0, 1]


def test_chromium_feedback_matches_what_was_sent() -> None:
    """Chromium's own transport-cc (tests/wire/capture_twcc.py), replayed against a send history of
    the packets the echo sent it: every packet it reports received was sent, at the time and with
    the size we sent it, and its arrival spacing follows the send spacing (loopback: a few ms; a
    misread reference time or delta would be off by 64 ms steps or by seconds)."""
    capture = json.loads((Path(__file__).parent.parent / "wire" / "fixtures" / "chromium_twcc.json").read_text())
    sent_at = {seq: (t, size) for t, seq, size in capture["packets"]}
    sender = TwccSender(capacity=1024)
    for seq in range(max(sent_at) + 1):  # our history numbers them as the browser did
        t, size = sent_at.get(seq, (0.0, 0))
        assert sender.on_packet_sent(size, t) == seq
    matched = 0
    for at, hexdata in capture["feedback"]:
        for packet in parse_compound(bytes.fromhex(hexdata)):
            assert isinstance(packet, TransportCC)
            results = sender.on_feedback(packet, at)
            assert results is not None
            for send, size in zip(results.send_times, results.sizes, strict=True):
                assert size > 0 and send <= at  # a packet the echo did send, before this feedback
                matched += 1
            if len(results.send_times) >= 2:
                spread = [a - s for s, a in zip(results.send_times, results.arrival_times, strict=True)]
                assert max(spread) - min(spread) < 0.03
    counters = sender.counters
    assert matched == counters.packets_acked > 200
    assert counters.bogus_feedback == counters.unknown == counters.duplicates == 0
