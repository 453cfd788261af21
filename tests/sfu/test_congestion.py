"""The per-subscriber estimate and allocation (sfu/congestion.py) on a fake clock, fed REMB every 0.5 s as
Chrome sends it, through the real REMB estimator (whose target climbs 8 %/s under the REMB)."""

from __future__ import annotations

from dataclasses import dataclass, field

from roomcast.sfu.congestion import (
    CONGESTION_MEMORY,
    PROBE_DURATION,
    PROBE_SETTLE,
    UNLIMITED,
    UP_HEADROOM,
    Allocation,
    SubscriberEstimate,
)
from roomcast.wire.rtcp import ReceiverReport, Remb, ReportBlock

AUDIO = 40_000.0
REPORTED: dict[int, tuple[int, int]] = {}  # per estimate: the cumulative report so far (highest seq, lost)


@dataclass
class Track:
    """A simulcast track as the allocator sees it: the budgets it was given, with ``keep`` each time."""

    now: float = 0.0
    up: float = 0.0
    budgets: list[tuple[float, bool]] = field(default_factory=list)
    steps_taken: int = 0

    def step_up(self) -> tuple[float, float]:
        return self.now, self.up

    def set_budget(self, bitrate: float, keep: bool) -> object:
        self.budgets.append((bitrate, keep))
        return None

    def take_step_up(self) -> object:
        self.steps_taken += 1
        return None


def run(estimate: SubscriberEstimate, bitrate: int, start: float, end: float) -> list[list[float]]:
    """REMB ``bitrate`` and an allocation every 0.5 s over [start, end); the budgets each time."""
    rounds = []
    t = start
    while t < end:
        estimate.on_rtcp(Remb(1, bitrate, (2,)), t)
        v1, v2 = Track(), Track()
        tracks: list[Allocation] = [
            ("TR_a", "audio", "microphone", AUDIO, None),
            ("TR_v1", "video", "camera", 0.0, v1),
            ("TR_v2", "video", "camera", 0.0, v2),
        ]
        if estimate.allocate(tracks, t):
            rounds.append([v1.budgets[0][0], v2.budgets[0][0]])
        t += 0.5
    return rounds


def test_no_feedback_means_no_allocation() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    assert not estimate.allocate([("TR_v", "video", "camera", 0.0, Track())], 0.0)


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
    # five seconds without another fall: the estimate limits only the way up (above it: a probe first)
    assert after[-1] == [(estimate.estimator.target_bitrate * 1.25 - AUDIO) / 2] * 2


def test_a_path_that_never_pushed_back_may_try_every_layer() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    rounds = run(estimate, 300_000, 0.0, 10.0)
    assert rounds and all(b[0] >= UNLIMITED / 4 for b in rounds) and not estimate.counters["probes"]


def test_a_quick_second_pushback_waits_longer_and_one_fall_counts_once() -> None:
    estimate = SubscriberEstimate(transport_cc=False)
    run(estimate, 2_000_000, 0.0, 20.0)
    run(estimate, 300_000, 20.0, 23.0)  # one fall, held for 3 s: counted once
    assert estimate.memory == CONGESTION_MEMORY
    run(estimate, 2_000_000, 23.0, 28.0)  # memory over, the estimate climbs again under a high REMB
    run(estimate, 150_000, 28.0, 29.0)  # and falls again soon after: the next wait is longer
    assert estimate.memory == 2 * CONGESTION_MEMORY


def feed(
    estimate: SubscriberEstimate,
    bitrate: int,
    start: float,
    end: float,
    track: Track,
    lost: int = 0,
    rtt: float | None = 0.05,
) -> float:
    """REMB ``bitrate`` and a receiver report (50 more packets, ``lost`` of them lost) then an allocation of audio
    and ``track`` every 0.5 s over [start, end), the subscriber's round trip ``rtt``; returns ``end``."""
    t = start
    while t < end - 1e-9:
        highest, total_lost = REPORTED.get(id(estimate), (1000, 0))
        REPORTED[id(estimate)] = highest, total_lost = highest + 50, total_lost + lost
        estimate.on_rtcp(Remb(1, bitrate, (2,)), t)
        estimate.on_rtcp(ReceiverReport(1, (ReportBlock(2, 0, total_lost, highest, 0, 0, 0),)), t)
        audio: Allocation = ("TR_a", "audio", "microphone", AUDIO, None)
        estimate.allocate([audio, ("TR_v", "video", "camera", 0.0, track)], t, rtt)
        t += 0.5
    return end


def pushed_back(track: Track) -> tuple[SubscriberEstimate, float]:
    """An estimate whose path pushed back at 20 s (2 Mbit/s, then 300 kbit/s) and is uncongested again."""
    estimate = SubscriberEstimate(transport_cc=False)
    t = feed(estimate, 2_000_000, 0.0, 20.0, Track())
    t = feed(estimate, 300_000, t, t + CONGESTION_MEMORY + 0.5, Track())
    assert estimate.pushed_back and not estimate.congested(t) and estimate.probe_rate == 0
    return estimate, t


def test_after_a_push_back_a_layer_above_the_estimate_is_probed_and_taken_once_the_receiver_confirms() -> None:
    track = Track(now=150_000, up=400_000)
    estimate, t = pushed_back(track)
    t = feed(estimate, 300_000, t, t + 0.5, track)
    share = 300_000 * 1.25 - AUDIO
    assert track.budgets[-1] == (share, True) and share < 400_000 * UP_HEADROOM  # not covered: not taken, kept
    assert estimate.probe_rate == AUDIO + 400_000 and estimate.counters["probes"] == 1  # padded up to the layer
    assert track.steps_taken == 0

    media = padding = 0
    for i in range(1, 51):  # 1 s of ticks every 20 ms, media at 190 kbit/s: padding tops it up to the probe rate
        media += int(190_000 / 8 * 0.02)
        due = estimate.padding_due(media, t + i * 0.02)
        estimate.on_padding(due)
        padding += due
    assert abs(padding - (440_000 - 190_000) / 8) < 0.1 * (250_000 / 8), padding

    t = feed(estimate, 460_000, t + 1.0, t + 1.5, track)  # the receiver's estimate rose over the probe rate
    assert estimate.counters["probes_confirmed"] == 1 and estimate.estimator.target_bitrate == 460_000
    assert track.steps_taken == 1 and estimate.probe_rate == 0 and estimate.padding_due(10**6, t) == 0
    track.now, track.up = 400_000, 0.0  # taken; nothing above
    feed(estimate, 460_000, t, t + 4.0, track)
    assert track.budgets[-1] == (460_000 * 1.25 - AUDIO, True)
    assert estimate.counters["probes"] == 1 and not estimate.counters["probes_failed"] and track.steps_taken == 1


def test_a_probe_the_path_carries_without_loss_or_queue_buys_one_step_up() -> None:
    """Chrome's REMB may stay low for tens of seconds after a fall whatever arrives: a probe the path carried
    for its whole length (no fall, no loss, no round-trip growth) is confirmation enough."""
    track = Track(now=150_000, up=400_000)
    estimate, t = pushed_back(track)
    t = feed(estimate, 300_000, t, t + PROBE_DURATION + 0.5, track)
    assert estimate.counters["probes_confirmed"] == 1 and not estimate.counters["probes_failed"]
    assert track.steps_taken == 1 and track.budgets[-1] == (300_000 * 1.25 - AUDIO, True)  # one step, then kept
    track.now, track.up = 400_000, 800_000  # taken; the next step waits for the new layer's rate to show
    t = feed(estimate, 300_000, t, t + PROBE_SETTLE - 0.5, track)
    assert estimate.counters["probes"] == 1
    t = feed(estimate, 300_000, t, t + 1.0, track)
    assert estimate.counters["probes"] == 2 and estimate.probe_rate == AUDIO + 800_000


def test_a_probe_that_brings_loss_a_queue_or_a_fall_is_a_push_back() -> None:
    for kind in ("loss", "queue", "fall"):
        track = Track(now=150_000, up=400_000)
        estimate, t = pushed_back(track)
        memory = estimate.memory
        t = feed(estimate, 300_000, t, t + 0.5, track)
        assert estimate.probe_rate > 0
        if kind == "loss":  # padding and media share the bottleneck's queue: it overflowed
            t = feed(estimate, 300_000, t, t + 1.0, track, lost=4)  # 8 %
        elif kind == "queue":  # it has not overflowed yet, but the round trip grows
            t = feed(estimate, 300_000, t, t + 1.0, track, rtt=0.3)
        else:  # the receiver's estimate fell
            t = feed(estimate, 200_000, t, t + 0.5, track)
        assert estimate.counters["probes_failed"] == 1 and estimate.probe_rate == 0, kind
        assert estimate.congested(t) and estimate.memory == 2 * memory and not estimate.counters["probes_confirmed"]
        assert track.budgets[-1][1] is False and track.budgets[-1][0] < 400_000  # the estimate limits both ways
        assert estimate.padding_due(10**6, t) == 0 and track.steps_taken == 0  # no padding while congested


def test_a_layer_the_estimate_covers_needs_no_probe() -> None:
    track = Track(now=100_000, up=200_000)
    estimate, t = pushed_back(track)
    feed(estimate, 300_000, t, t + 3.0, track)
    assert estimate.counters["probes"] == 0 and track.budgets[-1] == (300_000 * 1.25 - AUDIO, True)
