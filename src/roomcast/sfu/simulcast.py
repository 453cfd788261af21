"""A simulcast consumer: one subscriber receives one layer of a simulcast track, switched without freezes.

The ideas are mediasoup's ``SimulcastConsumer`` and LiveKit's ``Forwarder`` (read, not copied):

- Spatial switches happen only on a keyframe of the layer switched to. The consumer asks for one (PLI
  through the layer's throttle, then again on a bounded back-off timer: 0.5 s doubling up to 4 s) and
  keeps forwarding the old layer until it arrives: the subscriber never waits on a missing picture.
- The subscriber sees one stream: sequence numbers continue (+1 across a switch, no holes where packets
  were dropped), timestamps continue (mapped through both layers' sender reports when known, else by
  elapsed time), and for VP8 the picture ID and TL0PICIDX continue too (RFC 7741 §4.2; Chrome's
  reference finder stalls on a picture ID gap, so dropped frames take no picture ID either).
- Temporal layers (VP8 TID) are dropped at frame boundaries to lower the frame rate; a higher one is
  added only at a layer-sync frame (Y bit), one TID at a time. :class:`LayerSelector` spends a bitrate
  budget temporal-first (frame rate goes before resolution) with hysteresis: down at once, up only after
  the budget has covered the higher layer with headroom for a while, so a budget that jitters around a
  threshold does not flap.
- Packets arriving late (reordered, or repaired upstream by RTX) go into the sequence number slot kept
  for them when the gap was seen; one of a dropped frame becomes padding in its slot (no hole left).
- The subscriber sees VP8 as one temporal layer (TID 0, TL0PICIDX +1 per frame) while TL1 is forwarded,
  so it waits for a repaired frame instead of decoding past it, unless repairs stop coming
  (:mod:`roomcast.sfu.temporal`); forwarding TL0 alone, frames lost whole within one base-layer period
  take no picture ID (they were above it).

The per-packet work is attribute reads of facts the layer parsed once (:class:`~roomcast.sfu.producer.Layer`)
and, only when the VP8 fields change value, one patch of a reused buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from roomcast.sfu.consumer import _SEQ_TS, Consumer
from roomcast.sfu.producer import MAX_TEMPORAL, Layer
from roomcast.sfu.selector import LayerSelector, next_option, step_up
from roomcast.sfu.simulcast_late import PATCHED, PIC_SLOTS, LatePackets
from roomcast.sfu.temporal import SINGLE_TEMPORAL, TemporalView
from roomcast.sfu.timeline import continued_timestamp

KEYFRAME_RETRY_MIN = 0.5
KEYFRAME_RETRY_MAX = 4.0
MAX_GAP = 512  # a bigger sequence jump is a discontinuity, not loss: no slots are kept for it
_PIC_MASK = PIC_SLOTS - 1

KeyframeRequest = Callable[[int, bool], None]
"""``(layer index, force)``: ask the publisher for a keyframe on that layer (through its throttle)."""


class SimulcastConsumer(LatePackets):
    """One subscriber's view of a simulcast producer (``layers``, lowest resolution first)."""

    __slots__ = (
        "current",
        "frame_bits",
        "frame_dropped",
        "frame_out_pic",
        "frame_out_tl0",
        "frame_pic",
        "frame_tl0",
        "gen",
        "in_seq",
        "keyframe_requests",
        "last_out_pic",
        "last_out_tl0",
        "layers",
        "max_spatial",
        "next_request_at",
        "pending",
        "pic_offset",
        "pic_out",
        "pic_tag",
        "pic_view",
        "request_keyframe",
        "retry",
        "scratch",
        "selector",
        "single",
        "spatial_goal",
        "switches",
        "target_spatial",
        "target_temporal",
        "temporal",
        "temporal_dropped",
        "tl0_offset",
        "tl0_shift",
        "view",
    )

    def __init__(self, *, layers: Sequence[Layer], request_keyframe: KeyframeRequest, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.layers: Sequence[Layer] = layers
        self.request_keyframe = request_keyframe
        self.target_spatial = len(layers) - 1
        self.max_spatial = len(layers) - 1  # the subscriber's own limit (quality, shown size): budgets stay under
        self.target_temporal = MAX_TEMPORAL - 1
        self.spatial_goal = self.target_spatial  # the target, or the best layer actually arriving under it
        self.current = -1  # spatial layer forwarded; -1 until the first keyframe
        self.temporal = MAX_TEMPORAL - 1  # highest TID forwarded
        self.pending = -1  # layer whose keyframe we wait for
        self.next_request_at = float("inf")
        self.retry = KEYFRAME_RETRY_MIN
        self.switches = 0
        self.keyframe_requests = 0
        self.temporal_dropped = 0
        self.gen = 0  # bumped at each switch: picture slots kept for one layer mean nothing for the next
        self.in_seq = 0
        self.frame_pic = self.frame_tl0 = -1
        self.frame_dropped = False
        self.frame_bits = self.frame_out_pic = 0
        self.frame_out_tl0 = -1
        self.pic_offset = self.tl0_offset = 0
        self.view = TemporalView()  # VP8 goes out as one temporal layer, mostly (sfu/temporal.py)
        self.single = True  # it does now: each frame's TL0PICIDX is then its picture ID plus tl0_shift
        self.tl0_shift = 0
        self.last_out_pic = self.last_out_tl0 = -1
        self.pic_tag = [-1] * (_PIC_MASK + 1)
        self.pic_out = [0] * (_PIC_MASK + 1)
        self.pic_view = [-1] * (_PIC_MASK + 1)  # its TL0PICIDX as sent (-1: none), 0x100 if shown as TID 0
        self.scratch = bytearray(1500)
        self.selector = LayerSelector()

    # ------------------------------------------------------------------ control

    def start(self, now: float) -> None:
        """Begin: want the target layer (a forced keyframe request: a new viewer needs a picture now)."""
        self._retarget(now, force=True)

    def set_target_layer(self, spatial: int, temporal: int | None, now: float) -> None:
        """Forward ``spatial`` (clamped to the layers there are) at TIDs up to ``temporal`` (None: all)."""
        if not self.layers:
            return
        self.target_spatial = max(0, min(spatial, len(self.layers) - 1))
        self.target_temporal = MAX_TEMPORAL - 1 if temporal is None else max(0, min(temporal, MAX_TEMPORAL - 1))
        self._retarget(now)

    def set_bitrate_budget(self, bitrate: float, now: float, keep: bool = False) -> tuple[int, int]:
        """Choose the layer for ``bitrate`` bits/s from the producer's measured layer bitrates (with
        hysteresis, see :class:`LayerSelector`; ``keep``: never lower); returns the (spatial, temporal)
        target now in force."""
        if not self.layers:
            return self.target_spatial, self.target_temporal
        rates, current = self._options_now()
        choice = self.selector.select(rates, bitrate, current, now, keep)
        if choice is not None and choice != (self.target_spatial, current[1]):
            self.set_target_layer(choice[0], choice[1], now)
        return self.target_spatial, self.target_temporal

    def step_up(self) -> tuple[float, float]:
        """(bits/s of the layer targeted now, of the next option up): 0 where none (see :func:`step_up`)."""
        if not self.layers:
            return 0.0, 0.0
        return step_up(*self._options_now())

    def take_step_up(self, now: float) -> tuple[int, int]:
        """Go up one option now, without the selector's hold (a probe showed the path carries it); returns the
        (spatial, temporal) target now in force."""
        up = next_option(*self._options_now()) if self.layers else None
        if up is not None:
            self.selector.restart()
            self.set_target_layer(up[0], up[1], now)
        return self.target_spatial, self.target_temporal

    def _options_now(self) -> tuple[list[list[float]], tuple[int, int]]:
        """The measured bitrates (bits/s per layer, cumulative per TID) under the subscriber's ceiling, and the
        (spatial, temporal) target among them."""
        rates = [list(layer.temporal_bitrates) if layer.max_tid >= 0 else [layer.bitrate] for layer in self.layers]
        rates = rates[: self.max_spatial + 1]  # never above what the subscriber asked for
        spatial = min(self.target_spatial, len(rates) - 1)
        return rates, (spatial, min(self.target_temporal, max(len(rates[spatial]) - 1, 0)))

    def keyframe_layer(self) -> int:
        """Where a subscriber's own PLI goes: the layer we switch to if one is pending, else the current."""
        return self.pending if self.pending >= 0 else max(self.current, 0)

    def handle_timeout(self, now: float) -> None:
        """Follow layers that stop or come back; re-ask for a keyframe that has not arrived."""
        if self.paused or not self.layers:
            return
        goal = self._goal(now)
        if goal != self.spatial_goal or (goal != self.current and goal != self.pending):
            self._retarget(now)
        elif self.pending >= 0 and now >= self.next_request_at:
            self._ask(now)

    def poll_timeout(self) -> float | None:
        return self.next_request_at if self.pending >= 0 else None

    def resume(self) -> None:
        """After a pause the subscriber needs a keyframe: wait for one, numbering continuing."""
        self.paused = False
        self.current = -1
        self.pending = self.spatial_goal
        self.next_request_at = float("-inf")
        self._register()

    def detach(self) -> None:
        """Leave the producer: off its layers, and holding none of it (a parked consumer outlives it)."""
        for layer in self.layers:
            if self in layer.layer_consumers:
                layer.layer_consumers = tuple(c for c in layer.layer_consumers if c is not self)
        self.layers = ()
        self.request_keyframe = _no_request
        self.pending = -1

    def continue_numbering(self, other: Consumer) -> None:
        """Carry on ``other``'s output numbering (a parked subscriber m-line reused for this track)."""
        super().continue_numbering(other)
        if isinstance(other, SimulcastConsumer):
            self.last_out_pic, self.last_out_tl0 = other.last_out_pic, other.last_out_tl0

    def stats(self) -> dict[str, int]:
        return {
            "spatial": self.current,
            "temporal": self.temporal if self.current >= 0 else -1,
            "target_spatial": self.target_spatial,
            "target_temporal": self.target_temporal,
            "pending": self.pending,
            "switches": self.switches,
            "keyframe_requests": self.keyframe_requests,
            "temporal_dropped": self.temporal_dropped,
            "late_dropped": self.late_dropped,
            "single_temporal": int(self.single),
            "frames": self.frames_sent,
            "stuck": self.view.stuck,
        }

    def retransmit(self, seqs: list[int], now: float | None = None) -> int:
        """Answer a NACK; if the subscriber waits for a packet that is not coming, a keyframe ends the wait
        (:meth:`TemporalView.waiting_for_nothing`; the time is that of our latest packet)."""
        suppressed = self.retransmits_suppressed
        sent = super().retransmit(seqs, now)
        missing = sent + self.retransmits_suppressed - suppressed < len(seqs)  # some were not in the ring
        stuck = missing and self.single and self.view.waiting_for_nothing(self.ring, seqs, self.last_sent_at)
        if stuck and self.current >= 0:
            self.keyframe_requests += 1
            self.request_keyframe(self.current, False)
        return sent

    def _goal(self, now: float) -> int:
        target = self.target_spatial
        if self.layers[target].active(now):
            return target
        below = [layer.index for layer in self.layers[:target] if layer.active(now)]
        if below:
            return below[-1]
        above = [layer.index for layer in self.layers[target + 1 :] if layer.active(now)]
        return above[0] if above else target

    def _retarget(self, now: float, force: bool = False) -> None:
        goal = self.spatial_goal = self._goal(now)
        if goal == self.current:
            self.pending = -1
            self.next_request_at = float("inf")
        elif goal != self.pending or force:
            self.pending = goal
            self.retry = KEYFRAME_RETRY_MIN
            self._ask(now, force)
        self._register()

    def _ask(self, now: float, force: bool = False) -> None:
        self.keyframe_requests += 1
        self.request_keyframe(self.pending, force)
        self.next_request_at = now + self.retry
        self.retry = min(self.retry * 2, KEYFRAME_RETRY_MAX)

    def _register(self) -> None:
        """Be handed packets of exactly the layers we may forward or switch to."""
        wanted = {self.current, self.pending}
        if self.current < 0:
            wanted.update(range(self.spatial_goal + 1))  # the first picture may come from any layer up to it
        for layer in self.layers:
            registered = self in layer.layer_consumers
            if layer.index in wanted and not registered:
                layer.layer_consumers = (*layer.layer_consumers, self)
            elif layer.index not in wanted and registered:
                layer.layer_consumers = tuple(c for c in layer.layer_consumers if c is not self)

    # ------------------------------------------------------------------ packets

    def on_layer_packet(self, pkt: bytes, layer: Layer, now: float) -> None:
        """One packet of ``layer``: switch here if it is the keyframe awaited, else forward or drop it.
        The in-order path is written out in full (no helper calls): it runs per packet per subscriber."""
        if self.paused:
            return
        if layer.index != self.current:
            index = layer.index
            if not layer.keyframe or not (index == self.pending or (self.current < 0 and index <= self.spatial_goal)):
                return
            self._switch(layer, pkt, now)
        seq, ts = _SEQ_TS.unpack_from(pkt, 2)
        delta = (seq - self.in_seq) & 0xFFFF
        if delta != 1:
            if delta == 0 or delta >= 0x8000:
                self._late(pkt, layer, seq, ts, now)
                return
            if delta <= MAX_GAP:
                self._keep_gap(delta)
        self.in_seq = seq
        bits = 0
        pic = layer.picture_id
        if pic >= 0:
            if pic != self.frame_pic:
                self._new_frame(layer, pic, now)
            if self.frame_dropped:
                self.seq_offset = (self.seq_offset - 1) & 0xFFFF
                self.temporal_dropped += 1
                return
            bits = self.frame_bits
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        b1 = pkt[1]
        mapped = self.pt_map.get(b1 & 0x7F)
        if mapped is not None:
            b1 = (b1 & 0x80) | mapped
        self.ring.store(out_seq, pkt, out_ts | bits)
        last = self.last_out_seq
        if last is None or ((out_seq - last) & 0xFFFF) < 0x8000:
            self.last_out_seq = out_seq
            self.last_out_ts = out_ts
            self.last_sent_at = now
        self.packets_sent += 1
        self.bytes_sent += len(pkt)
        if bits:  # this frame's picture ID / TL0PICIDX differ from the source's: patch a reused copy
            out = self.scratch
            out[:] = pkt
            pos = layer.picture_id_pos
            out_pic = self.frame_out_pic
            if out[pos] & 0x80:
                out[pos] = 0x80 | (out_pic >> 8)
                out[pos + 1] = out_pic & 0xFF
            else:
                out[pos] = out_pic & 0x7F
            if self.frame_out_tl0 >= 0:
                out[layer.tl0picidx_pos] = self.frame_out_tl0
                if bits & SINGLE_TEMPORAL:
                    out[layer.tl0picidx_pos + 1] &= 0x1F  # TID 0, no Y (KEYIDX kept)
            if self.send_rewritten is not None:
                self.send_rewritten(out, b1, out_seq, out_ts, self.ssrc)
            else:
                self.send(self._rewrite(out, b1, out_seq, out_ts))
        elif self.send_rewritten is not None:
            self.send_rewritten(pkt, b1, out_seq, out_ts, self.ssrc)
        else:
            self.send(self._rewrite(pkt, b1, out_seq, out_ts))

    def _new_frame(self, layer: Layer, pic: int, now: float) -> None:
        """A frame begins (in order): forward or drop it, and what its VP8 fields become (once per frame
        per subscriber: the common case is a few attribute reads, no call)."""
        dropped = self.frame_dropped = self._drop_frame(layer)
        tl0 = layer.tl0picidx
        if self.temporal == 0:
            self._drop_lost_above_base(pic, tl0, layer.tid)
        self.frame_pic = pic
        self.frame_tl0 = tl0
        slot = pic & _PIC_MASK
        self.pic_tag[slot] = (self.gen << 15) | pic
        if dropped:
            self.pic_out[slot] = -1
            self.pic_offset = (self.pic_offset - 1) & 0x7FFF
            return
        out = self.pic_out[slot] = self.frame_out_pic = self.last_out_pic = (pic + self.pic_offset) & 0x7FFF
        self.frames_sent += 1
        single = 0
        if tl0 < 0:
            out_tl0 = view = -1
        else:
            tid = layer.tid
            if tid >= 0:
                temporal = self.temporal
                wanted = self.view.allowed and (temporal >= 1 or layer.max_tid <= temporal)
                if wanted is not self.single or layer.keyframe:
                    self._choose_view(layer, out, now)
            if self.single and tid >= 0:
                out_tl0 = (out + self.tl0_shift) & 0xFF
                view = out_tl0 | 0x100
                if tid or layer.layer_sync:
                    single = SINGLE_TEMPORAL
            else:
                out_tl0 = view = (tl0 + self.tl0_offset) & 0xFF
            self.last_out_tl0 = out_tl0
        self.frame_out_tl0 = out_tl0
        self.pic_view[slot] = view
        patch = out != pic or out_tl0 != tl0 or single
        self.frame_bits = PATCHED | single | (out << 32) | ((out_tl0 & 0xFF) << 47) if patch else 0

    def _choose_view(self, layer: Layer, out_pic: int, now: float) -> None:
        """One temporal layer while TL1 is forwarded (or all there are): then every frame sent, a TL2 frame
        first seen late too, needs only frames the subscriber got (a libwebrtc TL2 frame refers to TL0, TL1
        and the keyframe, and no frame refers to it). Chosen again at keyframes, ended at a TL0 frame;
        TL0PICIDX continues +1 at every change (RFC 7741 §4.2)."""
        key = layer.keyframe
        allowed = self.view.at_keyframe(now) if key else self.view.allowed
        want = allowed and self.temporal >= min(1, layer.max_tid)
        if (want == self.single and not key) or (not want and layer.tid):
            return
        last = self.last_out_tl0
        if want:
            self.tl0_shift = ((last + 1 if last >= 0 else layer.tl0picidx) - out_pic) & 0xFF
        elif last >= 0:
            self.tl0_offset = (last + 1 - layer.tl0picidx) & 0xFF
        self.single = want

    def _drop_lost_above_base(self, pic: int, tl0: int, tid: int) -> None:
        """Forwarding TL0 alone: frames lost whole between the last one seen and this one (``pic``), within
        one base-layer period (TL0PICIDX), are above the base layer: they take no picture ID, and their
        repairs become padding (else the subscriber would see a picture ID it is never sent)."""
        prev, prev_tl0 = self.frame_pic, self.frame_tl0
        lost = (pic - prev - 1) & 0x7FFF
        if not 0 < lost < PIC_SLOTS or prev < 0 or prev_tl0 < 0:
            return
        if tl0 != prev_tl0 and (tl0 != (prev_tl0 + 1) & 0xFF or tid != 0):
            return  # a TL0 frame may be among them: they keep their picture IDs, their repairs go out
        for i in range(1, lost + 1):
            p = (prev + i) & 0x7FFF
            self.pic_tag[p & _PIC_MASK] = (self.gen << 15) | p
            self.pic_out[p & _PIC_MASK] = -1
        self.pic_offset = (self.pic_offset - lost) & 0x7FFF

    def _drop_frame(self, layer: Layer) -> bool:
        """Temporal layer decision at a frame's first packet: down at once, up at a layer sync frame."""
        tid = layer.tid
        if tid < 0:
            return False
        goal = self.target_temporal
        if goal < self.temporal:
            self.temporal = goal
        if tid <= self.temporal:
            return False
        if tid == self.temporal + 1 and tid <= goal and layer.layer_sync:
            self.temporal = tid  # this frame depends only on TL0 (RFC 7741 §4.2 Y bit)
            return False
        return True

    def _switch(self, layer: Layer, pkt: bytes, now: float) -> None:
        """Make ``layer`` (at its keyframe ``pkt``) the one forwarded, continuing every counter."""
        seq = (pkt[2] << 8) | pkt[3]
        ts = (pkt[4] << 24) | (pkt[5] << 16) | (pkt[6] << 8) | pkt[7]
        if self.last_out_seq is None:
            self.seq_offset = self.ts_offset = 0
        else:
            self.seq_offset = (self.last_out_seq + 1 - seq) & 0xFFFF
            old = self.layers[self.current] if self.current >= 0 else None
            elapsed = now - self.last_sent_at
            out = continued_timestamp(old, layer, ts, self.last_out_ts, self.ts_offset, self.clock_rate, elapsed)
            self.ts_offset = (out - ts) & 0xFFFFFFFF
        pic, tl0 = layer.picture_id, layer.tl0picidx
        self.pic_offset = (self.last_out_pic + 1 - pic) & 0x7FFF if pic >= 0 and self.last_out_pic >= 0 else 0
        self.tl0_offset = (self.last_out_tl0 + 1 - tl0) & 0xFF if tl0 >= 0 and self.last_out_tl0 >= 0 else 0
        if self.current >= 0:
            self.switches += 1
        self.current = layer.index
        self.source_ssrc = layer.ssrc
        self.gen = (self.gen + 1) & 0xFFFF
        self.forget_gaps()
        self.in_seq = (seq - 1) & 0xFFFF
        self.frame_pic = self.frame_tl0 = -1
        self.temporal = self.target_temporal  # a keyframe is a sync point for every temporal layer
        if self.pending == layer.index:
            self.pending = -1
            self.next_request_at = float("inf")
        self._register()


class LayerBudget:
    """A subscriber's simulcast consumer as the allocator sees it (sfu/congestion.py ``LayeredTrack``)."""

    __slots__ = ("consumer", "now")

    def __init__(self, consumer: SimulcastConsumer, now: float) -> None:
        self.consumer = consumer
        self.now = now  # the publisher transport's clock, which the consumer's layer timing runs on

    def step_up(self) -> tuple[float, float]:
        return self.consumer.step_up()

    def set_budget(self, bitrate: float, keep: bool) -> object:
        return self.consumer.set_bitrate_budget(bitrate, self.now, keep)

    def take_step_up(self) -> object:
        return self.consumer.take_step_up(self.now)


def _no_request(index: int, force: bool) -> None:
    """A detached consumer asks for nothing."""
