"""The per-subscriber estimate and allocation (sfu/congestion.py) on a fake clock, fed REMB every 0.5 s as
Chrome sends it, through the real REMB estimator (whose target climbs 8 %/s under the REMB)."""

from __future__ import annotations

from roomcast.sfu.congestion import CONGESTION_MEMORY, UNLIMITED, SubscriberEstimate
from roomcast.wire.rtcp import Remb

AUDIO = 40_000.0


def run(estimate: SubscriberEstimate, bitrate: int, start: float, end: float) -> list[list[float]]:
    """REMB ``bitrate`` and an allocation every 0.5 s over [start, end); the budgets each time."""
    rounds = []
    t = start
    while t < end:
        estimate.on_rtcp(Remb(1, bitrate, (2,)), t)
        budgets: list[float] = []
        tracks = [
            ("TR_a", "audio", "microphone", AUDIO, None),
            ("TR_v1", "video", "camera", 0.0, budgets.append),
            ("TR_v2", "video", "camera", 0.0, budgets.append),
        ]
        if estimate.allocate(tracks, t):
            rounds.append(budgets)
        t += 0.5
    return rounds


def test_no_feedback_means_no_allocation() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    assert not estimate.allocate([("TR_v", "video", "camera", 0.0, lambda b: None)], 0.0)


def test_an_uncongested_path_may_try_every_layer() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    rounds = run(estimate, 2_000_000, 0.0, 10.0)
    assert rounds and all(b[0] > 1e11 and b[0] == b[1] for b in rounds)  # unlimited, shared equally


def test_a_drop_makes_the_estimate_a_limit_after_audio_then_the_limit_lifts() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    run(estimate, 2_000_000, 0.0, 20.0)  # the target climbs to the REMB
    high = estimate.estimator.target_bitrate
    assert high > 1_000_000
    limited = run(estimate, 300_000, 20.0, 20.0 + CONGESTION_MEMORY)  # the path pushed back
    assert estimate.congested(20.0 + CONGESTION_MEMORY - 0.5)
    target = estimate.estimator.target_bitrate
    assert limited[-1] == [(target * 1.25 - AUDIO) / 2] * 2  # a little over the estimate, audio first, shared
    after = run(estimate, 300_000, 20.0 + CONGESTION_MEMORY, 30.0)
    assert after[-1][0] >= UNLIMITED / 4  # five seconds without another fall: layers may go up again


def test_a_quick_second_pushback_waits_longer_and_one_fall_counts_once() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    run(estimate, 2_000_000, 0.0, 20.0)
    run(estimate, 300_000, 20.0, 23.0)  # one fall, held for 3 s: counted once
    assert estimate.memory == CONGESTION_MEMORY
    run(estimate, 2_000_000, 23.0, 28.0)  # memory over, the estimate climbs again under a high REMB
    run(estimate, 150_000, 28.0, 29.0)  # and falls again soon after: the next wait is longer
    assert estimate.memory == 2 * CONGESTION_MEMORY
