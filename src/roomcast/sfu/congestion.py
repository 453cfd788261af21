"""Transport-wide congestion control in the SFU (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Two halves, one per direction of a participant's media:

- :class:`PublisherFeedback`: we receive. Every packet's transport-wide sequence number is recorded with its
  arrival time and reported in transport-cc feedback, so the publisher's own sender estimate (Chrome's
  goog_cc) works: its simulcast layers come up as fast as its uplink allows.
- :class:`SubscriberEstimate`: we send. Each forwarded packet gets this subscriber transport's own
  transport-wide sequence number (rewritten in place, see ``WebRtcTransport.send_rtp_rewritten``); the
  subscriber's feedback (transport-cc, else its REMB) drives an estimator (:mod:`roomcast.proto.bwe`), and
  :meth:`allocate` spends the estimate on its tracks: audio and single-layer video take what they use, the
  rest is shared equally by the simulcast tracks, each on the best layer its share buys (the consumer's
  selector keeps hysteresis).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from roomcast.proto.bwe.gcc import GccEstimator
from roomcast.proto.bwe.remb import RembEstimator
from roomcast.proto.bwe.twcc_receiver import TwccFeedbackGenerator
from roomcast.wire.rtcp import ReceiverReport, Remb, RtcpPacket, SenderReport, TransportCC

ALLOCATE_INTERVAL = 0.5
DROP = 0.85  # an estimate under 85 % of its recent high: the path pushed back
PEAK_DECAY = 0.97  # per allocation: the recent high forgets in about 10 s
CONGESTION_MEMORY = 5.0  # seconds the estimate stays a hard limit after a drop (doubling on repeats)
MAX_CONGESTION_MEMORY = 20.0
# A receiver's estimate (REMB) only climbs to about 1.5 times what it receives, and lands at 0.85 times it after
# an overuse: spending a little more than it lets the estimate find the path's capacity.
CONGESTED_HEADROOM = 1.25
UNLIMITED = 1e12  # an uncongested path: every layer may be tried (the way up is to try; a drop brings it back)
# (track sid, kind, source, its bitrate now, a setter of its layer budget, None for a track without layers)
Allocation = tuple[str, str, str, float, Callable[[float], object] | None]


class PublisherFeedback:
    """Arrival times of one publisher transport's packets, reported back as transport-cc feedback."""

    __slots__ = ("ext_id", "generator")

    def __init__(self, ext_id: int, sender_ssrc: int, media_ssrc: int) -> None:
        self.ext_id = ext_id
        self.generator = TwccFeedbackGenerator(sender_ssrc, media_ssrc)

    def on_arrival(self, pkt: bytes, at: int, now: float) -> None:
        """Record the arrival of ``pkt``, whose transport-wide sequence number is at offset ``at`` (-1: none)."""
        if at >= 0:
            self.generator.on_packet((pkt[at] << 8) | pkt[at + 1], now)

    def poll(self, now: float) -> list[bytes]:
        """Feedback due by ``now``, serialized RTCP packets for the publisher."""
        self.generator.handle_timeout(now)
        out = []
        while (fb := self.generator.poll_feedback()) is not None:
            out.append(fb.serialize())
        return out


class SubscriberEstimate:
    """One subscriber transport's bandwidth estimate and its allocation over that subscriber's tracks:
    GCC on its transport-cc feedback when negotiated, else its own REMB (Chrome's receive-side estimate
    from abs-send-time) with receiver-report loss."""

    __slots__ = ("estimator", "feedbacks", "last_drop", "memory", "next_allocation", "peak", "target")

    def __init__(self, transport_cc: bool) -> None:
        self.estimator: GccEstimator | RembEstimator = GccEstimator() if transport_cc else RembEstimator()
        self.feedbacks = 0  # feedback that informs the estimate (transport-cc or REMB): none, no allocation
        self.next_allocation = 0.0
        self.target = 0
        self.peak = 0.0  # the estimate's recent high, decaying
        self.last_drop = float("-inf")  # when the estimate last fell well below it: the path is congested
        self.memory = CONGESTION_MEMORY  # how long a drop keeps the estimate a limit; doubles on repeats

    def congested(self, now: float) -> bool:
        """Has the path pushed back lately? Only then is the estimate a limit: an estimate on an idle path only
        says what was sent (about 1.5 times what it carried), so layers may go up to find out more."""
        return now - self.last_drop < self.memory

    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int:
        return self.estimator.on_packet_sent(size, now, probe_cluster)

    def on_rtcp(self, packet: RtcpPacket, now: float) -> None:
        estimator = self.estimator
        if isinstance(packet, TransportCC):
            if isinstance(estimator, GccEstimator):
                self.feedbacks += 1
                estimator.on_feedback(packet, now)
            return
        if isinstance(packet, Remb):
            if isinstance(estimator, GccEstimator):
                return  # with transport-cc, a REMB is not the estimate
            self.feedbacks += 1
        if isinstance(packet, Remb | ReceiverReport | SenderReport):
            estimator.on_rtcp(packet, now)

    def handle_timeout(self, now: float) -> None:
        deadline = self.estimator.poll_timeout()
        if deadline is not None and now >= deadline:
            self.estimator.handle_timeout(now)

    def allocate(
        self,
        tracks: Iterable[Allocation],
        now: float,
    ) -> bool:
        """Spend the estimate on ``tracks``: (track sid, kind, source, bitrate now, set budget or None for a
        track without layers). Only once feedback has arrived (a subscriber that sends none keeps its
        layers) and at most every :data:`ALLOCATE_INTERVAL`. Returns whether it allocated."""
        if self.feedbacks == 0 or now < self.next_allocation:
            return False
        self.next_allocation = now + ALLOCATE_INTERVAL
        self.target = self.estimator.target_bitrate
        if self.target < DROP * self.peak:
            if now - self.last_drop < 2 * self.memory:  # it pushed back again soon after: wait longer next time
                self.memory = min(self.memory * 2, MAX_CONGESTION_MEMORY)
            elif now - self.last_drop > 4 * MAX_CONGESTION_MEMORY:
                self.memory = CONGESTION_MEMORY
            self.last_drop = now
            self.peak = float(self.target)  # one fall counts once: the next drop is from here
        self.peak = max(self.target, self.peak * PEAK_DECAY)
        budget = float(self.target) * CONGESTED_HEADROOM if self.congested(now) else UNLIMITED
        layered = []
        for _sid, kind, _source, bitrate, set_budget in tracks:
            if kind == "audio" or set_budget is None:
                budget -= bitrate  # audio and single-layer video take what they take
            else:
                layered.append(set_budget)
        share = max(budget, 0.0) / len(layered) if layered else 0.0
        for set_budget in layered:
            set_budget(share)
        return True
