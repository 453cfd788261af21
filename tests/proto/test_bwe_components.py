"""Each part of the GCC-style estimator alone, fed what its inputs look like on a real path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.proto.bwe.acked_bitrate import AckedBitrateEstimator
from roomcast.proto.bwe.aimd import AimdRateControl, RateControlState
from roomcast.proto.bwe.common import BandwidthUsage, BweCounters
from roomcast.proto.bwe.gcc import GccConfig, GccEstimator
from roomcast.proto.bwe.inter_arrival import InterArrival
from roomcast.proto.bwe.loss_based import LossBasedControl
from roomcast.proto.bwe.overuse import OveruseDetector
from roomcast.proto.bwe.probe_controller import ProbeController
from roomcast.proto.bwe.probe_estimator import ProbeEstimator
from roomcast.proto.bwe.trendline import TrendlineFilter
from roomcast.wire.rtcp import TransportCC

NORMAL, UNDER, OVER = BandwidthUsage.NORMAL, BandwidthUsage.UNDERUSING, BandwidthUsage.OVERUSING

# ---------------------------------------------------------------- burst groups


def groups_of(sends: list[float], arrivals: list[float], **kw: float) -> list[tuple[float, float, float]]:
    out: list[tuple[float, float, float]] = []
    ia = InterArrival(lambda s, a, t: out.append((s, a, t)), BweCounters(), **kw)
    ia.update(sends, arrivals)
    return out


def test_packets_sent_within_5_ms_are_one_group() -> None:
    # three frames 33 ms apart, each a burst of 3 packets spread over 2 ms
    sends = [f * 0.033 + k * 0.001 for f in range(3) for k in range(3)]
    arrivals = [s + 0.05 for s in sends]
    deltas = groups_of(sends, arrivals)
    assert len(deltas) == 1  # groups 1 vs 0 complete; group 2 is still open
    send_delta, arrival_delta, at = deltas[0]
    assert send_delta == pytest.approx(0.033) and arrival_delta == pytest.approx(0.033)
    assert at == pytest.approx(0.033 + 0.002 + 0.05)


def test_a_draining_queue_merges_into_the_group_before() -> None:
    """Packets sent 10 ms apart but arriving back-to-back (1 ms apart, a queue emptying) are a burst."""
    sends = [0.0, 0.010, 0.020, 0.030, 0.100, 0.200, 0.300]
    arrivals = [0.050, 0.051, 0.052, 0.053, 0.150, 0.250, 0.350]
    deltas = groups_of(sends, arrivals)
    assert [round(s, 3) for s, _, _ in deltas] == [0.07, 0.1]  # 0..3 one group (last send 0.03)
    assert [round(a, 3) for _, a, _ in deltas] == [0.097, 0.1]


def test_packets_sent_before_the_open_group_are_reordered() -> None:
    counters = BweCounters()
    out: list[tuple[float, float, float]] = []
    ia = InterArrival(lambda s, a, t: out.append((s, a, t)), counters)
    ia.update([0.0, 0.1, 0.05, 0.2], [0.05, 0.15, 0.16, 0.25])
    assert counters.reordered == 1 and len(out) == 1


def test_an_outage_restarts_the_comparison() -> None:
    sends = [0.0, 0.1, 0.2, 0.3, 0.4]
    arrivals = [0.05, 0.15, 5.0, 5.1, 5.2]  # 4.8 s of extra delay between group 1 and 2
    deltas = groups_of(sends, arrivals)
    assert all(a - s < 1.0 for s, a, _ in deltas) and len(deltas) == 2


# ---------------------------------------------------------------- trendline + detector


def feed(trendline: TrendlineFilter, growth: float, n: int, t0: float = 0.0, step: float = 0.02) -> float:
    """``n`` groups sent ``step`` apart whose queueing delay grows by ``growth`` x ``step`` each."""
    trend = 0.0
    arrival = t0
    for _ in range(n):
        arrival += step * (1 + growth)
        trend = trendline.update(step, step * (1 + growth), arrival)
    return trend


def test_trend_is_zero_for_a_steady_queue_and_the_growth_rate_for_a_filling_one() -> None:
    assert feed(TrendlineFilter(), 0.0, 60) == pytest.approx(0.0, abs=1e-9)
    growing = TrendlineFilter()
    assert feed(growing, 0.1, 200) == pytest.approx(0.1 / 1.1, rel=1e-6)  # delay per second of arrival
    assert feed(growing, -0.1, 200, t0=4.0) < 0


@settings(max_examples=200)
@given(st.lists(st.floats(-0.02, 0.02), min_size=25, max_size=700), st.floats(0.0, 100.0))
def test_running_regression_matches_a_fresh_one(extra: list[float], start: float) -> None:
    """Rounding in the running sums (and the rebasing of x) never moves the slope."""
    trendline = TrendlineFilter(window=20)
    xs: list[float] = []
    ys: list[float] = []
    accumulated = smoothed = 0.0
    t = start
    for e in extra:
        t += 0.02
        trend = trendline.update(0.02, 0.02 + e, t)
        accumulated += e
        smoothed = 0.9 * smoothed + 0.1 * accumulated
        xs.append(t)
        ys.append(smoothed)
    wx, wy = xs[-20:], ys[-20:]
    mx, my = sum(wx) / 20, sum(wy) / 20
    expected = sum((x - mx) * (y - my) for x, y in zip(wx, wy, strict=True)) / sum((x - mx) ** 2 for x in wx)
    assert trend == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_detector_needs_a_sustained_rising_trend_for_overuse() -> None:
    counters = BweCounters()
    detector = OveruseDetector(counters)
    assert detector.detect(0.5, 30, 0.02, 0.0) is NORMAL  # one group over the threshold: not yet
    assert detector.detect(0.5, 31, 0.02, 0.02) is OVER  # two groups, 30 ms over the threshold
    assert counters.overuse == 1
    assert detector.detect(-0.5, 32, 0.02, 0.04) is UNDER
    assert detector.detect(0.0, 33, 0.02, 0.06) is NORMAL


def test_a_falling_trend_over_the_threshold_is_not_overuse() -> None:
    detector = OveruseDetector(BweCounters())
    detector.detect(0.8, 30, 0.02, 0.0)
    assert detector.detect(0.4, 31, 0.02, 0.02) is NORMAL  # still above, but the queue fills slower


def test_threshold_follows_the_signal_within_its_bounds() -> None:
    detector = OveruseDetector(BweCounters())
    for k in range(500):  # small noise: the threshold comes down to its floor
        detector.detect(0.01 if k % 2 else -0.01, 100, 0.02, k * 0.02)
    assert detector.threshold == pytest.approx(6.0)
    for k in range(3000):  # a persistent larger signal (concurrent TCP): it rises towards it
        detector.detect(0.08 if k % 2 else -0.08, 100, 0.02, 10 + k * 0.02)
    assert 18.0 < detector.threshold <= 19.3  # 60 x 0.08 x 4 = 19.2
    detector.detect(10.0, 100, 0.02, 100.0)  # a spike far over it is not learnt
    assert detector.threshold < 20


# ---------------------------------------------------------------- AIMD


def test_overuse_decreases_to_beta_times_the_acknowledged_rate_then_holds() -> None:
    aimd = AimdRateControl(BweCounters(), 2_000_000, 30_000, 10_000_000)
    assert aimd.update(OVER, 1_500_000, 1.0) == pytest.approx(0.85 * 1_500_000)
    assert aimd.state is RateControlState.HOLD
    assert aimd.update(UNDER, 1_500_000, 1.1) == pytest.approx(0.85 * 1_500_000)  # draining: hold
    assert aimd.link.estimate == pytest.approx(1500)


def test_increase_is_multiplicative_far_from_the_known_capacity_and_additive_near_it() -> None:
    far = AimdRateControl(BweCounters(), 1_000_000, 30_000, 10_000_000)
    far.update(NORMAL, 1_000_000, 0.0)
    assert far.update(NORMAL, 1_000_000, 1.0) == pytest.approx(1_080_000, rel=1e-3)  # 8 %/s
    near = AimdRateControl(BweCounters(), 1_000_000, 30_000, 10_000_000)
    near.update(OVER, 1_000_000, 0.0)  # learns a capacity of ~1 Mbit/s
    near.update(NORMAL, 850_000, 0.5)
    near.rtt = 0.1
    after = near.update(NORMAL, 850_000, 1.5)
    # one average packet (850 kbit/s / 30 fps in 3 packets: 9.4 kbit) per 200 ms response time
    assert after - 850_000 == pytest.approx(850_000 / 30 / 3 / 0.2, rel=0.01)


def test_increase_never_runs_past_one_and_a_half_times_what_was_acknowledged() -> None:
    aimd = AimdRateControl(BweCounters(), 1_000_000, 30_000, 10_000_000)
    aimd.update(NORMAL, 200_000, 0.0)
    assert aimd.update(NORMAL, 200_000, 1.0) == 1_000_000  # above 1.5 x 200k + 10k already: held
    low = AimdRateControl(BweCounters(), 300_000, 30_000, 10_000_000)
    low.update(NORMAL, 200_000, 0.0)
    assert low.update(NORMAL, 200_000, 1.0) == pytest.approx(310_000)  # capped at 1.5 x 200k + 10k


def test_decrease_repeats_only_after_a_round_trip() -> None:
    aimd = AimdRateControl(BweCounters(), 2_000_000, 30_000, 10_000_000)
    aimd.rtt = 0.1
    aimd.update(OVER, 2_000_000, 1.0)
    assert not aimd.time_to_reduce_further(1.05, 1_900_000)
    assert aimd.time_to_reduce_further(1.05, 700_000)  # throughput collapsed: at once
    assert aimd.time_to_reduce_further(1.1, 1_900_000)


# ---------------------------------------------------------------- loss-based


def test_loss_over_10_percent_decreases_once_per_interval() -> None:
    counters = BweCounters()
    loss = LossBasedControl(counters, 1_000_000, 30_000, 10_000_000)
    loss.rtt = 0.3  # cuts at most every 600 ms
    loss.on_packets(0, 50, 0.0)
    loss.on_packets(20, 50, 0.5)  # 20 % of the last half second
    assert loss.fraction == pytest.approx(0.2)
    assert loss.update(0.5, 10e6) == pytest.approx(900_000)
    assert loss.update(0.6, 10e6) == pytest.approx(900_000)  # the same report: acted on once
    loss.on_packets(20, 100, 0.7)  # a fresh 20 %, 200 ms after the cut
    loss.on_packets(0, 0, 1.0)
    assert loss.update(1.0, 10e6) == pytest.approx(900_000)  # fresh report, but within 300 ms + RTT
    assert loss.update(1.15, 10e6) == pytest.approx(810_000)
    assert counters.loss_decreases == 2


def test_loss_under_2_percent_allows_8_percent_per_second_and_in_between_holds() -> None:
    loss = LossBasedControl(BweCounters(), 1_000_000, 30_000, 10_000_000)
    loss.on_packets(0, 50, 0.0)
    loss.on_packets(1, 50, 0.5)  # 1 %
    loss.update(0.5, 10e6)
    assert loss.update(1.5, 10e6) == pytest.approx(1_081_000)
    loss.on_packets(5, 100, 2.0)  # 5 %
    assert loss.update(2.5, 10e6) == pytest.approx(1_081_000)
    assert loss.update(3.5, 900_000) == 900_000  # never above the delay-based estimate


def test_loss_needs_enough_packets_and_time_to_mean_anything() -> None:
    loss = LossBasedControl(BweCounters(), 1_000_000, 30_000, 10_000_000)
    loss.on_packets(3, 10, 0.0)  # 30 %, but of 10 packets
    loss.on_packets(0, 10, 0.1)
    assert loss.fraction == 0.0  # 20 packets, but over 100 ms
    loss.on_packets(0, 10, 0.5)
    assert loss.fraction == pytest.approx(0.1)


# ---------------------------------------------------------------- acknowledged bitrate


def test_acknowledged_bitrate_tracks_a_steady_rate_and_a_change() -> None:
    acked = AckedBitrateEstimator()
    t = 0.0
    for _ in range(100):  # 1 Mbit/s: 1250-byte packets every 10 ms, feedback every 50 ms
        acked.update([t + k * 0.01 for k in range(5)], [1250] * 5)
        t += 0.05
    assert acked.bitrate == pytest.approx(1e6, rel=0.1)
    assert acked.recent == pytest.approx(1e6, rel=0.1)
    for _ in range(20):  # the path now carries half
        acked.update([t + k * 0.02 for k in range(3)], [1250] * 3)
        t += 0.06
    assert acked.recent == pytest.approx(0.5e6, rel=0.15)
    assert acked.bitrate is not None and acked.bitrate < 0.8e6


# ---------------------------------------------------------------- probing


def test_initial_probes_then_exponential_search_until_the_path_says_no() -> None:
    counters = BweCounters()
    prober = ProbeController(counters, 300_000, 10_000_000)
    first, second = prober.poll(), prober.poll()
    assert first is not None and second is not None and prober.poll() is None
    assert (first.bitrate, second.bitrate) == (900_000, 1_800_000)
    assert first.min_bytes == int(900_000 * first.duration / 8) and first.min_packets == 5
    assert 200 <= first.packet_size <= 1200
    prober.on_result(first.cluster_id, 880_000, 1.0)  # got through: try twice that
    follow = prober.poll()
    assert follow is not None and follow.bitrate == 1_760_000
    prober.on_result(second.cluster_id, 1_000_000, 1.1)  # 1.8M probed, 1M got through: stop
    assert prober.poll() is None and counters.probe_results == 2


def probe_cluster(
    estimator: ProbeEstimator, prober: ProbeController, cluster: int, send_rate: float, path_rate: float
) -> float | None:
    """Send a cluster of 10 x 1000-byte packets at ``send_rate`` through a path of ``path_rate``."""
    sends, arrivals = [], []
    free = 0.0
    for k in range(10):
        s = k * 8000 / send_rate
        free = max(free, s) + 8000 / path_rate
        sends.append(s)
        arrivals.append(free + 0.03)
        prober.on_packet(cluster, 1000, s)
    return estimator.update(sends, arrivals, [1000] * 10, [cluster] * 10, 1.0)


def test_a_probe_measures_the_path_when_the_path_is_slower() -> None:
    prober = ProbeController(BweCounters(), 300_000, 10_000_000, initial=(), duration=0.001)
    probe = prober.request(4e6)
    assert probe is not None
    result = probe_cluster(ProbeEstimator(prober), prober, probe.cluster_id, 4e6, 1.5e6)
    assert result == pytest.approx(0.95 * 1.5e6, rel=0.02)


def test_a_probe_the_path_carries_reports_the_probed_rate() -> None:
    prober = ProbeController(BweCounters(), 300_000, 10_000_000, initial=(), duration=0.001)
    probe = prober.request(1e6)
    assert probe is not None
    result = probe_cluster(ProbeEstimator(prober), prober, probe.cluster_id, 1e6, 5e6)
    assert result == pytest.approx(1e6, rel=0.02)


def test_periodic_probing_after_a_large_drop_and_not_on_a_lossy_path() -> None:
    prober = ProbeController(BweCounters(), 300_000, 10_000_000, initial=(), interval=3.0)
    prober.on_estimate(2_000_000, 0.0)  # the peak
    prober.handle_timeout(3.0, 1_900_000, None)
    assert prober.poll() is None  # no drop: no probe
    prober.handle_timeout(6.0, 300_000, None, low_loss=False)
    assert prober.poll() is None  # dropped, but loss explains it
    prober.handle_timeout(9.0, 300_000, None)
    probe = prober.poll()
    assert probe is not None and probe.bitrate == 600_000
    assert prober.poll_timeout() is not None


def test_a_probe_that_is_never_sent_or_never_answered_expires() -> None:
    counters = BweCounters()
    prober = ProbeController(counters, 300_000, 10_000_000, initial=(3.0,))
    prober.handle_timeout(0.0, 300_000, None)  # first seen
    prober.handle_timeout(1.0, 300_000, None)
    assert prober.poll() is None and counters.probe_failures == 1
    probe = prober.request(1e6)
    assert probe is not None
    prober.on_packet(probe.cluster_id, 1200, 2.0)
    assert prober.active == probe.cluster_id
    deadline = prober.poll_timeout()
    assert deadline is not None and deadline == pytest.approx(3.0 + probe.duration)
    prober.handle_timeout(deadline, 300_000, None)
    assert prober.active == -1  # stopped counting packets into it
    prober.handle_timeout(4.0, 300_000, None)
    assert counters.probe_failures == 2 and prober.books(probe.cluster_id) is None


# ---------------------------------------------------------------- the composition's timers


def test_no_feedback_for_a_second_cuts_the_target_each_second() -> None:
    bwe = GccEstimator(GccConfig(start_bitrate=1_000_000, initial_probes=()))
    assert bwe.poll_timeout() is None  # nothing sent: nothing to wait for
    for k in range(10):
        bwe.on_packet_sent(1000, k * 0.01)
    deadline = bwe.poll_timeout()
    assert deadline == pytest.approx(1.0)
    bwe.handle_timeout(0.99)
    assert bwe.target_bitrate == 1_000_000
    bwe.handle_timeout(1.0)
    assert bwe.target_bitrate == 800_000 and bwe.counters.feedback_timeouts == 1
    bwe.handle_timeout(1.5)
    assert bwe.target_bitrate == 800_000
    bwe.handle_timeout(2.0)
    assert bwe.target_bitrate == 640_000
    bwe.on_feedback(TransportCC.create(1, 2, 0, 0, 0, [1] * 10, [4] * 10), 2.1)
    assert bwe.twcc.oldest_unreported() is None  # everything reported: only the prober's timer is left
    assert bwe.poll_timeout() == pytest.approx(2.1 + bwe.config.probe_interval)


def test_probe_packets_are_booked_and_media_sent_meanwhile_counts() -> None:
    bwe = GccEstimator(GccConfig(initial_probes=()))
    probe = bwe.request_probe(2e6)
    assert probe is not None and bwe.poll_probe() == probe
    bwe.on_packet_sent(500, 1.0, probe.cluster_id)
    bwe.on_packet_sent(1200, 1.001)  # media: counted into the active cluster
    books = bwe.prober.books(probe.cluster_id)
    assert books is not None and books.sent_packets == 2 and books.sent_bytes == 1700
    assert bwe.counters.packets_sent == 2
