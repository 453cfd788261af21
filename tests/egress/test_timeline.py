"""egress/timeline.py without I/O: RTP timestamps past the wrap, the two wall-clock mappings, late tracks,
monotonic and minimum-step pts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from roomcast.egress.timeline import Timeline, TrackClock, ntp_seconds, ts_delta


def ntp(seconds: float) -> int:
    return int(seconds * 2**32)


def test_extend_crosses_the_32_bit_wrap_and_tolerates_reordering() -> None:
    clock = TrackClock(90000)
    start = 0xFFFFFFFF - 3000
    assert clock.extend(start) == 0
    assert clock.extend((start + 6000) & 0xFFFFFFFF) == 6000  # after the wrap
    assert clock.extend((start + 3000) & 0xFFFFFFFF) == 3000  # a late frame from before it
    assert clock.extend((start + 9000) & 0xFFFFFFFF) == 9000


@given(st.integers(0, 0xFFFFFFFF), st.lists(st.integers(1, 30000), min_size=1, max_size=50))
def test_extend_is_the_sum_of_steps(first: int, steps: list[int]) -> None:
    clock = TrackClock(90000)
    clock.extend(first)
    total = 0
    for step in steps:
        total += step
        assert clock.extend((first + total) & 0xFFFFFFFF) == total


def test_ts_delta_and_ntp() -> None:
    assert ts_delta(5, 0xFFFFFFFF) == 6 and ts_delta(0xFFFFFFFF, 5) == -6
    assert ntp_seconds(ntp(12.5)) == 12.5


def test_arrival_alignment_uses_the_least_delayed_frame() -> None:
    video, audio = TrackClock(90000), TrackClock(48000)
    # video captured at t=10.0 s arrives 80 ms late (a keyframe's many packets), the next one 5 ms late
    video.on_frame(1000, 10.080)
    video.on_frame(1000 + 3000, 10.0333 + 0.005)
    audio.on_frame(777, 10.002)  # audio of t=10.0 s, 2 ms late
    timeline = Timeline({"video": video, "audio": audio})
    assert timeline.begin("video", 0)
    assert not timeline.use_sr
    offsets = timeline.start_offset()
    assert abs(offsets["audio"] - (-0.003)) < 0.001, offsets  # both at 10.0 s to within the 3 ms difference
    assert timeline.pts("video", 0) == 0 and timeline.pts("audio", 48000) == 48000 + round(offsets["audio"] * 48000)


def test_sender_reports_win_when_every_track_has_one() -> None:
    video, audio = TrackClock(90000), TrackClock(48000)
    video.on_frame(90000, 5.0)
    audio.on_frame(48000, 5.3)  # arrival says audio is 300 ms late; the sender says they were captured together
    video.on_sender_report(ntp(100.0), 90000)
    audio.on_sender_report(ntp(100.0), 48000)
    timeline = Timeline({"video": video, "audio": audio})
    assert timeline.begin("video", 0)
    assert timeline.use_sr
    assert timeline.start_offset() == {"video": 0.0, "audio": 0.0}


def test_a_late_track_is_placed_by_its_first_frame() -> None:
    video, audio = TrackClock(90000), TrackClock(48000)
    video.on_frame(0, 1.0)
    timeline = Timeline({"video": video, "audio": audio})
    assert timeline.begin("video", 0)
    audio.on_frame(500, 1.5)  # its first frame half a second after the video's origin
    assert timeline.pts("audio", 0) == 24000


def test_pts_are_monotonic_with_a_minimum_step() -> None:
    video = TrackClock(90000)
    video.on_frame(0, 0.0)
    timeline = Timeline({"video": video}, {"video": 2250})
    assert timeline.begin("video", 0)
    assert timeline.pts("video", 0) == 0
    assert timeline.pts("video", 0) is None  # the same frame again
    assert timeline.pts("video", 90) == 2250  # 1 ms later: moved to 25 ms
    assert timeline.pts("video", 6000) == 6000
    assert timeline.retimed == 1
    assert timeline.pts("video", -100) is None  # before the origin
    assert timeline.duration() == 6000 / 90000
