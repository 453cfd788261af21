"""Presentation timestamps of a recording from RTP timestamps (sans-IO: times are arguments).

Each track's RTP timestamps count at the codec's clock (90 kHz video, 48 kHz Opus, RFC 3550 §5.1) from a
random start, so a track's own timeline is its extended (wrap-free) timestamps, and two tracks of one
participant are put side by side by mapping each onto one wall clock:

- with sender reports (RFC 3550 §6.4.1) for every track, the sender's NTP time of an RTP timestamp: the
  sender's own capture clock, what lip sync uses;
- otherwise the arrival time: the earliest ``arrival - rtp_time`` seen, the frame that waited least in
  queues (a keyframe's many packets arrive later than it was captured).

The mapping is fixed when the file starts (at a video keyframe), so afterwards every timestamp is the
RTP clock's own, and the file's duration is the sender's media time, not the network's.
"""

from __future__ import annotations

from dataclasses import dataclass

NTP_FRACTION = 2**32


def ntp_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp (RFC 3550 §4) in seconds."""
    return (ntp >> 32) + (ntp & 0xFFFFFFFF) / NTP_FRACTION


def ts_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, wrap-aware (the nearest signed difference)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


@dataclass(slots=True)
class TrackClock:
    """One track's timestamps: extension past the 32-bit wrap, and both wall-clock mappings."""

    rate: int  # RTP clock rate (Hz)
    first_ts: int | None = None
    has_frames: bool = False
    _last_ext: int = 0
    # sender report: (NTP seconds, extended RTP timestamp), the latest one
    sr: tuple[float, int] | None = None
    # arrival: the smallest arrival - media time seen (seconds), in the receiver's clock
    arrival_offset: float | None = None

    def extend(self, ts: int) -> int:
        """The timestamp relative to the track's first, extended (RFC 3550 §A.1, for timestamps)."""
        if self.first_ts is None:
            self.first_ts = ts
        ext = self._last_ext + ts_delta(ts - self.first_ts, self._last_ext & 0xFFFFFFFF)
        if ext > self._last_ext:
            self._last_ext = ext
        return ext

    def on_frame(self, ts: int, arrival: float) -> int:
        ext = self.extend(ts)
        self.has_frames = True
        offset = arrival - ext / self.rate
        if self.arrival_offset is None or offset < self.arrival_offset:
            self.arrival_offset = offset
        return ext

    def on_sender_report(self, ntp: int, rtp_ts: int) -> None:
        self.sr = (ntp_seconds(ntp), self.extend(rtp_ts))

    def wallclock(self, ext: int, use_sr: bool) -> float | None:
        """Seconds on the chosen wall clock of the extended timestamp ``ext``; None if not known yet."""
        if use_sr:
            if self.sr is None:
                return None
            return self.sr[0] + (ext - self.sr[1]) / self.rate
        if self.arrival_offset is None:
            return None
        return self.arrival_offset + ext / self.rate


class Timeline:
    """One participant's file: every track's pts (in its own clock units) from one origin.

    :meth:`begin` fixes the origin at a track's timestamp (the first keyframe) and each track's offset on
    the chosen wall clock; :meth:`pts` then maps an extended timestamp to the stream's pts, or None for a
    frame before the origin or not after the stream's previous one (monotonic pts are the muxer's rule).
    A track without frames at :meth:`begin` is placed by its first frame's mapping when it comes.
    """

    def __init__(self, clocks: dict[str, TrackClock], min_step: dict[str, int] | None = None) -> None:
        self.clocks = clocks
        self.min_step = min_step or {}  # track -> the least pts step (a frame closer is moved that far)
        self.retimed = 0
        self.use_sr = False
        self._origin: dict[bool, float] = {}  # use_sr -> the origin on that wall clock
        self._offsets: dict[str, int] = {}  # track -> pts of its extended timestamp 0
        self._last: dict[str, int] = {}

    @property
    def started(self) -> bool:
        return bool(self._origin)

    def sender_reports_known(self) -> bool:
        return all(c.sr is not None for c in self.clocks.values() if c.has_frames)

    def begin(self, track: str, ext: int) -> bool:
        """Start at ``track``'s extended timestamp ``ext``; False if a track has frames but no mapping yet."""
        self.use_sr = self.sender_reports_known()
        reference = self.clocks[track]
        origins = {mode: reference.wallclock(ext, mode) for mode in (False, True)}
        if origins[self.use_sr] is None or origins[False] is None:
            return False
        self._origin = {mode: t for mode, t in origins.items() if t is not None}
        for name, clock in self.clocks.items():
            if clock.has_frames:
                self._place(name, clock, self.use_sr)
        return True

    def _place(self, name: str, clock: TrackClock, use_sr: bool) -> None:
        zero = clock.wallclock(0, use_sr)
        if zero is None:  # a late track without a sender report yet: the receiver's clock then
            use_sr, zero = False, clock.wallclock(0, False)
        if zero is not None:
            self._offsets[name] = round((zero - self._origin[use_sr]) * clock.rate)

    def pts(self, track: str, ext: int) -> int | None:
        if not self._origin:
            return None
        offset = self._offsets.get(track)
        if offset is None:
            self._place(track, self.clocks[track], self.use_sr)
            offset = self._offsets.get(track)
            if offset is None:
                return None
        pts = offset + ext
        last = self._last.get(track, -1)
        if pts < 0 or pts <= last:
            return None
        step = self.min_step.get(track, 0)
        if last >= 0 and pts < last + step:
            pts = last + step
            self.retimed += 1
        self._last[track] = pts
        return pts

    def start_offset(self) -> dict[str, float]:
        """Seconds from the origin to each track's timestamp 0 (where the mapping put it)."""
        return {t: off / self.clocks[t].rate for t, off in self._offsets.items()}

    def duration(self) -> float:
        """Seconds from the origin to the latest pts of any track."""
        return max((pts / self.clocks[t].rate for t, pts in self._last.items()), default=0.0)
