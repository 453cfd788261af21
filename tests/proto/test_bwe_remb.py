"""The fallback for peers without transport-cc: REMB as the ceiling, receiver-report loss under it."""

from __future__ import annotations

import pytest

from roomcast.proto.bwe.common import BandwidthEstimator
from roomcast.proto.bwe.gcc import GccEstimator
from roomcast.proto.bwe.remb import RembEstimator
from roomcast.wire.rtcp import ReceiverReport, Remb, ReportBlock, SenderReport, parse_compound


def block(ssrc: int, fraction_lost: int) -> ReportBlock:
    return ReportBlock(ssrc, fraction_lost, 0, 0, 0, 0, 0)


def test_remb_is_the_ceiling_and_the_target_follows_it() -> None:
    bwe = RembEstimator(start_bitrate=300_000)
    assert bwe.target_bitrate == 300_000
    bwe.on_rtcp(Remb(1, 1_200_000, (5,)), 0.0)
    assert bwe.target_bitrate == 300_000  # loss-based climbs from the start bitrate, 8 %/s at most
    bwe.on_rtcp(Remb(1, 1_200_000, (5,)), 1.0)
    assert bwe.target_bitrate == 325_000
    for second in range(2, 20):  # Chrome sends REMB about once a second
        bwe.on_rtcp(Remb(1, 1_200_000, (5,)), float(second))
    assert bwe.target_bitrate == 1_200_000
    bwe.on_rtcp(Remb(1, 400_000, (5,)), 20.0)
    assert bwe.target_bitrate == 400_000 and bwe.counters.remb == 21


def report(ssrc: int, highest: int, lost: int, fraction: int = 0) -> ReportBlock:
    """A report block: cumulative ``lost`` up to extended sequence ``highest`` (and the fraction field)."""
    return ReportBlock(ssrc, fraction, lost, highest, 0, 0, 0)


def test_receiver_report_loss_over_10_percent_lowers_it_under_2_percent_lets_it_climb() -> None:
    bwe = RembEstimator(start_bitrate=1_000_000, media_ssrcs=frozenset({5}))
    bwe.on_remb(2_000_000, 0.0)
    bwe.on_rtcp(ReceiverReport(9, (report(5, 1000, 0),)), 0.5)  # the first report: where counting starts
    bwe.on_rtcp(ReceiverReport(9, (report(5, 1100, 25),)), 1.0)  # 25 of 100 lost, over too short a time yet
    before = bwe.target_bitrate
    bwe.on_rtcp(ReceiverReport(9, (report(5, 1200, 50),)), 1.6)  # 50 of 200 over 0.6 s: 25 % lost
    assert bwe.target_bitrate == pytest.approx(before * (1 - 0.125), rel=0.01)
    cut = bwe.target_bitrate
    bwe.on_rtcp(ReceiverReport(9, (report(5, 1300, 51),)), 1.8)  # too few packets and too soon: nothing new
    assert bwe.target_bitrate == pytest.approx(cut, rel=0.01)
    bwe.on_rtcp(ReceiverReport(9, (report(5, 1500, 52),)), 2.2)  # 2 of 300 (under 1 %): it climbs again
    assert bwe.target_bitrate > cut
    assert bwe.counters.loss_decreases == 1 and bwe.counters.receiver_reports == 5


def test_loss_is_packets_lost_over_packets_expected_summed_over_streams_not_the_worst_stream() -> None:
    """A stream of few packets (audio beside video, a video at a quarter of the frame rate) swings from 0 to 30 %
    on one or two packets; its fraction alone cut the estimate, as libwebrtc's sender would not (it sums)."""
    bwe = RembEstimator(start_bitrate=1_000_000)
    bwe.on_remb(2_000_000, 0.0)
    t, video, few = 0.0, (1000, 0), (50, 0)
    for _ in range(10):  # every second: 200 video packets with 2 lost, 10 of the other stream with 3 lost
        t += 1.0
        video, few = (video[0] + 200, video[1] + 2), (few[0] + 10, few[1] + 3)
        blocks = (report(5, *video, fraction=2 * 256 // 200), report(6, *few, fraction=3 * 256 // 10))
        bwe.on_rtcp(ReceiverReport(9, blocks), t)
    assert bwe.counters.loss_decreases == 0 and bwe.target_bitrate >= 1_000_000  # 5 of 210: 2.4 %, it holds
    assert bwe.loss.fraction == pytest.approx(5 / 210, rel=0.01)


def test_packets_repaired_after_a_report_count_as_received() -> None:
    """Under 10 % random loss on both legs every report shows holes that NACK/RTX repairs fill a moment later;
    the cumulative count takes them back (its delta goes negative), so the estimate follows what the viewer is
    left missing."""
    bwe = RembEstimator(start_bitrate=1_000_000, media_ssrcs=frozenset({5}))
    bwe.on_remb(3_000_000, 0.0)
    highest = 1000
    bwe.on_rtcp(ReceiverReport(9, (report(5, highest, 0),)), 0.0)
    lost = 0
    for i in range(1, 41):  # a report every 0.25 s of 25 packets: 4 new holes, and 3 of the last ones repaired
        highest += 25
        lost += 4 if i % 2 else -3
        bwe.on_rtcp(ReceiverReport(9, (report(5, highest, lost, fraction=4 * 256 // 25),)), i * 0.25)
    assert bwe.counters.loss_decreases == 0  # 1 in 50 left missing: 2 %, never the 4 in 25 of one report


def test_a_report_whose_sequence_went_back_teaches_nothing() -> None:
    bwe = RembEstimator(start_bitrate=1_000_000, media_ssrcs=frozenset({5}))
    bwe.on_remb(2_000_000, 0.0)
    bwe.on_rtcp(ReceiverReport(9, (report(5, 5000, 0),)), 0.5)
    bwe.on_rtcp(ReceiverReport(9, (report(5, 100, 90),)), 1.0)  # a restarted stream: not 4 billion expected
    bwe.on_rtcp(ReceiverReport(9, (report(5, 300, 91),)), 2.0)
    assert bwe.counters.loss_decreases == 0


def test_reports_about_other_streams_and_compounds_from_the_wire() -> None:
    bwe = RembEstimator(start_bitrate=1_000_000, media_ssrcs=frozenset({5}))
    bwe.on_remb(1_000_000, 0.0)
    for packet in parse_compound(SenderReport(9, 1, 2, 3, 4, (block(77, 200),)).serialize()):
        bwe.on_rtcp(packet, 1.0)  # somebody else's stream: ignored
    assert bwe.target_bitrate == 1_000_000 and bwe.counters.receiver_reports == 0
    wire = ReceiverReport(9, (block(5, 0), block(6, 128))).serialize() + Remb(9, 700_000, (5,)).serialize()
    for packet in parse_compound(wire):
        bwe.on_rtcp(packet, 2.0)
    assert bwe.target_bitrate == 700_000 and bwe.counters.receiver_reports == 1


def test_both_estimators_fit_what_the_allocator_and_pacer_use() -> None:
    estimators: list[BandwidthEstimator] = [RembEstimator(), GccEstimator()]
    for bwe in estimators:
        assert bwe.target_bitrate == 300_000
        bwe.on_packet_sent(1200, 0.0)
        bwe.handle_timeout(0.0)
        assert bwe.counters.packets_sent == 1
    assert estimators[0].poll_probe() is None and estimators[0].poll_timeout() is None
    assert estimators[1].poll_probe() is not None  # transport-cc: initial probes are waiting
