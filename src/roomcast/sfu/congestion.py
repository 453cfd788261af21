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

Going up costs nothing visible when it is probed first. Once a path has pushed back (its estimate fell), a
layer above what the estimate covers is not simply tried (too much for the path, it overflows the
bottleneck and the picture freezes): the transport is padded up to what that layer would send
(:meth:`SubscriberEstimate.padding_due`, duplicates of recent packets on the RTX SSRC) for
:data:`PROBE_DURATION`, and the layer is taken only if the path carried it: the estimate did not fall, the
receiver reported no loss over 2 % and the round trip did not grow by :data:`PROBE_QUEUE` (a queue filling
at the bottleneck), or the receiver's estimate rose over the probe rate. Padding lost or queued costs no
picture; a probe that fails counts as a push back. (A receiver's REMB alone is no confirmation to wait for:
Chrome's stays low for tens of seconds after a fall, whatever arrives.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from roomcast.proto.bwe.gcc import GccEstimator
from roomcast.proto.bwe.remb import RembEstimator
from roomcast.proto.bwe.twcc_receiver import TwccFeedbackGenerator
from roomcast.sfu.consumer import Consumer
from roomcast.sfu.producer import Producer
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
UP_HEADROOM = 1.15  # the selector's: a layer is taken once its share covers it with this much to spare
PROBE_DURATION = 4.0  # seconds of padding at the next layer's rate: several receiver reports (RTT, loss)
PROBE_SETTLE = 3.0  # seconds after a step up before the next probe: the switch lands, its load shows in reports
PROBE_BURST = 0.05  # seconds of the probe rate that padding may send at once to catch up
PROBE_WINDOW = 0.25  # seconds over which media plus padding should average the probe rate
PROBE_QUEUE = 0.15  # seconds the round trip may grow during a probe: more is a queue building at the bottleneck
PROBE_LOSS = 0.02  # receiver-reported loss a probe may cause (the loss controller's "low")


class LayeredTrack(Protocol):
    """A simulcast track as one subscriber receives it, for the allocator."""

    def step_up(self) -> tuple[float, float]:
        """(bits/s of the layer it gets now, of the next option up; 0: none)."""
        ...

    def set_budget(self, bitrate: float, keep: bool) -> object:
        """Let ``bitrate`` choose its layer; ``keep``: never lower than now."""
        ...

    def take_step_up(self) -> object:
        """Go up to the next option now (a probe showed the path carries it)."""
        ...


# (track sid, kind, source, its bitrate now, the track's layers for the allocator, None for a track without)
Allocation = tuple[str, str, str, float, LayeredTrack | None]


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

    __slots__ = (
        "counters",
        "estimator",
        "feedbacks",
        "last_drop",
        "memory",
        "next_allocation",
        "pad_at",
        "pad_media",
        "pad_tokens",
        "peak",
        "probe_end",
        "probe_next",
        "probe_rate",
        "probe_reports",
        "probe_rtt",
        "pushed_back",
        "target",
    )

    def __init__(self, transport_cc: bool) -> None:
        self.estimator: GccEstimator | RembEstimator = GccEstimator() if transport_cc else RembEstimator()
        self.feedbacks = 0  # feedback that informs the estimate (transport-cc or REMB): none, no allocation
        self.next_allocation = 0.0
        self.target = 0
        self.peak = 0.0  # the estimate's recent high, decaying
        self.last_drop = float("-inf")  # when the estimate last fell well below it: the path is congested
        self.memory = CONGESTION_MEMORY  # how long a drop keeps the estimate a limit; doubles on repeats
        self.pushed_back = False  # it has, once: from then on a layer the estimate does not cover is probed
        self.probe_rate = 0.0  # bits/s media plus padding should reach while probing (0: not probing)
        self.probe_end = 0.0
        self.probe_rtt = 0.0  # the round trip when the probe began
        self.probe_reports = 0  # receiver reports counted when it began: loss counts from the next one
        self.probe_next = 0.0  # no probe before (a step up just taken shows its rate first)
        self.pad_at: float | None = None  # the padding bucket: when last filled, media bytes then, tokens
        self.pad_media = 0
        self.pad_tokens = 0.0
        self.counters = {"probes": 0, "probes_confirmed": 0, "probes_failed": 0, "padding_bytes": 0}

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

    def allocate(self, tracks: Iterable[Allocation], now: float, rtt: float | None = None) -> bool:
        """Spend the estimate on ``tracks``: (track sid, kind, source, bitrate now, its layers or None for a
        track without). Only once feedback has arrived (a subscriber that sends none keeps its layers) and
        at most every :data:`ALLOCATE_INTERVAL`. ``rtt``: the subscriber's round trip now (from its receiver
        reports), which a probe watches for a queue. Returns whether it allocated."""
        if self.feedbacks == 0 or now < self.next_allocation:
            return False
        self.next_allocation = now + ALLOCATE_INTERVAL
        self.target = self.estimator.target_bitrate
        if self.target < DROP * self.peak:
            self._pushed_back(now)
            self.peak = float(self.target)  # one fall counts once: the next drop is from here
        self.peak = max(self.target, self.peak * PEAK_DECAY)
        fixed = 0.0
        layered: list[LayeredTrack] = []
        for _sid, kind, _source, bitrate, track in tracks:
            if kind == "audio" or track is None:
                fixed += bitrate  # audio and single-layer video take what they take
            else:
                layered.append(track)
        congested = self.congested(now)
        if not congested and not (self.pushed_back and isinstance(self.estimator, RembEstimator)):
            for track in layered:  # a path that never pushed back: try (with transport-cc, GCC probes itself)
                track.set_budget(max(UNLIMITED - fixed, 0.0) / len(layered), False)
            return True
        share = max(float(self.target) * CONGESTED_HEADROOM - fixed, 0.0) / len(layered) if layered else 0.0
        for track in layered:
            track.set_budget(share, not congested)  # uncongested: the estimate limits only the way up
        if congested:
            self.probe_rate = 0.0
            return True
        steps = [track.step_up() for track in layered]
        if self._probe(fixed, share, steps, now, rtt):  # the path carried the next layer: take it, one step
            for track, (_cur, up) in zip(layered, steps, strict=True):
                if up > 0 and up * UP_HEADROOM > share:
                    track.take_step_up()
        return True

    def _pushed_back(self, now: float) -> None:
        """The path pushed back (the estimate fell, or a probe found no room): the estimate is a limit for a
        while, longer when it happens again soon."""
        if now - self.last_drop < 2 * self.memory:  # it pushed back again soon after: wait longer next time
            self.memory = min(self.memory * 2, MAX_CONGESTION_MEMORY)
        elif now - self.last_drop > 4 * MAX_CONGESTION_MEMORY:
            self.memory = CONGESTION_MEMORY
        self.last_drop = now
        self.pushed_back = True
        if self.probe_rate > 0:
            self.probe_rate = 0.0
            self.counters["probes_failed"] += 1

    def _probe(
        self, fixed: float, share: float, steps: list[tuple[float, float]], now: float, rtt: float | None
    ) -> bool:
        """Start, follow or end the probe for the next layer up that the estimate does not cover (one
        allocation's worth: ``steps`` are each layered track's (now, next up) bitrates). True: the path
        carried it, go up."""
        uncovered = [(cur, up) for cur, up in steps if up > 0 and up * UP_HEADROOM > share]
        rate = fixed + sum(cur for cur, _up in steps) + sum(up - cur for cur, up in uncovered)
        estimator = self.estimator
        if self.probe_rate > 0:
            fresh = estimator.counters.receiver_reports > self.probe_reports
            loss = estimator.loss.fraction if isinstance(estimator, RembEstimator) and fresh else 0.0
            queued = rtt is not None and rtt > self.probe_rtt + PROBE_QUEUE
            if loss > PROBE_LOSS or queued:
                self._pushed_back(now)  # the path did not carry it: wait as after a fall
                return False
            if not uncovered:  # the estimate covers it now: the selector goes up by itself
                self.probe_rate = 0.0
                return False
            remb = isinstance(estimator, RembEstimator) and estimator.remb >= self.probe_rate
            if remb or now >= self.probe_end:  # carried for the whole probe (or the receiver says so)
                if remb and isinstance(estimator, RembEstimator):
                    estimator.accept_remb(now)
                self.probe_rate = 0.0
                self.probe_next = now + PROBE_SETTLE
                self.counters["probes_confirmed"] += 1
                return True
            self.probe_rate = max(self.probe_rate, rate)
            return False
        if uncovered and now >= self.probe_next:
            self.probe_rate = rate
            self.probe_end = now + PROBE_DURATION
            self.probe_rtt = rtt if rtt is not None else 0.0
            self.probe_reports = estimator.counters.receiver_reports
            self.pad_at = None
            self.counters["probes"] += 1
        return False

    def padding_due(self, media_bytes: int, now: float) -> int:
        """Bytes of padding to send now so that media plus padding on this transport reach the probe rate;
        ``media_bytes`` is every byte of media sent on it so far (a running total). 0 when not probing."""
        if self.probe_rate <= 0 or self.pad_at is None:
            self.pad_at, self.pad_media, self.pad_tokens = now, media_bytes, 0.0
            return 0
        # what media left short of the rate over the last PROBE_WINDOW (a frame's burst then silence evens
        # out), sent PROBE_BURST at a time at most
        self.pad_tokens += self.probe_rate / 8 * (now - self.pad_at) - (media_bytes - self.pad_media)
        self.pad_at, self.pad_media = now, media_bytes
        window = self.probe_rate / 8 * PROBE_WINDOW
        self.pad_tokens = max(min(self.pad_tokens, window), -window)
        return int(min(self.pad_tokens, self.probe_rate / 8 * PROBE_BURST)) if self.pad_tokens > 0 else 0

    def on_padding(self, sent: int) -> None:
        """``sent`` bytes of padding went out."""
        self.pad_tokens -= sent
        self.counters["padding_bytes"] += sent


def pad(estimate: SubscriberEstimate, consumers: Iterable[tuple[Consumer, Producer]], now: float) -> int:
    """Probe padding on one subscriber transport, as much as its estimate's probe asks for now: RTX
    duplicates of a video consumer's recent packets (:meth:`Consumer.pad`). Returns the bytes sent."""
    found = list(consumers)
    due = estimate.padding_due(sum(consumer.bytes_sent for consumer, _producer in found), now)
    if due <= 0:
        return 0
    padder = next((c for c, p in found if p.kind == "video" and c.rtx_ssrc is not None and not c.paused), None)
    if padder is None:
        return 0
    sent = padder.pad(due)
    estimate.on_padding(sent)
    return sent
