"""Transport-cc feedback for a publisher's transport: the receive side of
draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1.

Chrome, once transport-cc is negotiated, drives its sender estimate from this feedback alone, so a
server that negotiates it must answer every transport-wide sequence number it receives. Arrival
times are recorded per (unwrapped) sequence number; every ``interval`` (or as soon as
``max_packets`` are waiting) the range since the last feedback is reported: received packets with
their arrival delta in 250 µs ticks, the gaps as not received. A packet arriving after its range
was reported (reordering) moves the next report's start back to it, so it is reported once it
arrived; arrival times are kept ``back_window`` seconds for such re-reports. A delta that does not
fit 16 bits (a long pause) starts a new feedback packet with a new reference time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from roomcast.wire.rtcp import TransportCC

TICK = 0.00025
REFERENCE_TICKS = 256


@dataclass(slots=True)
class GeneratorCounters:
    received: int = 0
    duplicates: int = 0
    too_old: int = 0
    feedbacks: int = 0


class TwccFeedbackGenerator:
    def __init__(
        self,
        sender_ssrc: int,
        media_ssrc: int,
        *,
        interval: float = 0.05,
        max_packets: int = 256,
        back_window: float = 0.5,
        max_pending: int = 8192,
    ) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self.interval = interval
        self.max_packets = max_packets
        self.back_window = back_window
        self.max_pending = max_pending
        self.counters = GeneratorCounters()
        self._arrivals: dict[int, float] = {}
        self._order: deque[int] = deque()  # arrival order, for pruning
        self._highest = -1
        self._window_start = -1
        self._next_send: float | None = None
        self._fb_count = 0
        self._out: deque[TransportCC] = deque()

    def on_packet(self, seq: int, now: float) -> None:
        """A packet with transport-wide sequence number ``seq`` (16 bits) arrived at ``now``."""
        if self._highest < 0:  # one cycle up, so a packet reordered ahead of the first still unwraps
            ext = (seq & 0xFFFF) + 0x10000
            self._highest = self._window_start = ext
        else:
            ext = self._highest + ((((seq & 0xFFFF) - self._highest) + 0x8000) & 0xFFFF) - 0x8000
            if ext > self._highest:
                self._highest = ext
        arrivals = self._arrivals
        if ext in arrivals:
            self.counters.duplicates += 1
            return
        if ext < self._window_start:
            if ext < 0 or self._window_start - ext > self.max_packets:
                self.counters.too_old += 1
                return
            self._window_start = ext  # reported lost already: report it again, as received
        self.counters.received += 1
        arrivals[ext] = now
        self._order.append(ext)
        if self._next_send is None:
            self._next_send = now + self.interval
        if self._highest - self._window_start + 1 >= self.max_packets or len(arrivals) > self.max_pending:
            self._emit(now)

    def handle_timeout(self, now: float) -> None:
        if self._next_send is not None and now >= self._next_send:
            self._emit(now)

    def poll_timeout(self) -> float | None:
        return self._next_send

    def poll_feedback(self) -> TransportCC | None:
        """Next feedback packet to send on the publisher's transport (``.serialize()`` is the RTCP)."""
        return self._out.popleft() if self._out else None

    def _emit(self, now: float) -> None:
        arrivals = self._arrivals
        seq, end = self._window_start, self._highest + 1
        while seq < end:
            seq = self._build(seq, min(end, seq + self.max_packets))
        self._window_start = end
        self._next_send = None
        order = self._order
        horizon = now - self.back_window
        while order and (len(arrivals) > self.max_pending or arrivals[order[0]] < horizon):
            del arrivals[order.popleft()]

    def _build(self, start: int, end: int) -> int:
        """One feedback from ``start``; returns where the next one starts (``end`` unless a delta
        overflowed 16 bits)."""
        arrivals = self._arrivals
        first = next((s for s in range(start, end) if s in arrivals), None)
        reference = 0 if first is None else int(arrivals[first] / TICK) // REFERENCE_TICKS
        last = reference * REFERENCE_TICKS
        statuses: list[int] = []
        deltas: list[int] = []
        seq = start
        while seq < end:
            at = arrivals.get(seq)
            if at is None:
                statuses.append(0)
            else:
                ticks = int(at / TICK)
                delta = ticks - last
                if 0 <= delta <= 0xFF:
                    statuses.append(1)
                elif -0x8000 <= delta <= 0x7FFF:
                    statuses.append(2)
                else:
                    break  # the next feedback gets its own reference time
                deltas.append(delta)
                last = ticks
            seq += 1
        self._out.append(
            TransportCC.create(self.sender_ssrc, self.media_ssrc, start, reference, self._fb_count, statuses, deltas)
        )
        self._fb_count = (self._fb_count + 1) & 0xFF
        self.counters.feedbacks += 1
        return seq
