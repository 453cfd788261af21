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


def test_receiver_report_loss_over_10_percent_lowers_it_under_2_percent_lets_it_climb() -> None:
    bwe = RembEstimator(start_bitrate=1_000_000, media_ssrcs=frozenset({5}))
    bwe.on_remb(2_000_000, 0.0)
    bwe.on_rtcp(ReceiverReport(9, (block(5, 64),)), 1.0)  # 64/256 = 25 % lost
    assert bwe.target_bitrate == pytest.approx(1_000_000 * (1 - 0.125), rel=0.02)
    bwe.on_rtcp(ReceiverReport(9, (block(5, 64),)), 1.1)  # within 300 ms + RTT: one cut per interval
    assert bwe.target_bitrate == pytest.approx(875_000, rel=0.02)
    bwe.on_rtcp(ReceiverReport(9, (block(5, 2),)), 2.1)  # under 1 %: 8 %/s again
    assert bwe.target_bitrate == pytest.approx(875_000 * 1.08 + 1000, rel=0.01)
    assert bwe.counters.loss_decreases == 1 and bwe.counters.receiver_reports == 3


def test_reports_about_other_streams_and_compounds_from_the_wire() -> None:
    bwe = RembEstimator(start_bitrate=1_000_000, media_ssrcs=frozenset({5}))
    bwe.on_remb(1_000_000, 0.0)
    for packet in parse_compound(SenderReport(9, 1, 2, 3, 4, (block(77, 200),)).serialize()):
        bwe.on_rtcp(packet, 1.0)  # somebody else's stream: ignored
    assert bwe.target_bitrate == 1_000_000 and bwe.counters.receiver_reports == 0
    wire = ReceiverReport(9, (block(5, 0), block(6, 128))).serialize() + Remb(9, 700_000, (5,)).serialize()
    for packet in parse_compound(wire):
        bwe.on_rtcp(packet, 2.0)
    assert bwe.target_bitrate == 700_000


def test_both_estimators_fit_what_the_allocator_and_pacer_use() -> None:
    estimators: list[BandwidthEstimator] = [RembEstimator(), GccEstimator()]
    for bwe in estimators:
        assert bwe.target_bitrate == 300_000
        bwe.on_packet_sent(1200, 0.0)
        bwe.handle_timeout(0.0)
        assert bwe.counters.packets_sent == 1
    assert estimators[0].poll_probe() is None and estimators[0].poll_timeout() is None
    assert estimators[1].poll_probe() is not None  # transport-cc: initial probes are waiting
