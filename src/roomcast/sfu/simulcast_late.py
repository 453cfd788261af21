"""Late packets of the layer a simulcast consumer forwards: reordered, or repaired upstream by RTX.

When the consumer sees a gap in the layer's sequence numbers it keeps the missing numbers' slots (one
entry per gap, a ring of :data:`GAPS`, each with the offsets then in force); a packet that arrives late
goes into its slot, so the subscriber sees no hole. A late packet of a frame the consumer dropped (a
temporal layer it does not forward) becomes padding in its slot. One of a frame never seen in order
goes out with the picture ID it would have had, shown as the frames are now (one temporal layer or not,
:mod:`roomcast.sfu.temporal`), as LiveKit's VP8 munger does: which layer a lost frame was on is unknown
until it arrives, and a picture ID left out would make a receiver wait for it. Only while TL0 alone is
forwarded does a TL1/TL2 frame first seen late become padding: its TL2 frames would need TL1 frames the
subscriber never got, and a TL0 chain does not wait for picture IDs in between.
"""

from __future__ import annotations

import struct

from roomcast.sfu.consumer import Consumer
from roomcast.sfu.producer import Layer
from roomcast.sfu.temporal import SINGLE_TEMPORAL, patch_descriptor
from roomcast.wire import vp8
from roomcast.wire.rtp import header_length

GAPS = 16  # gaps remembered (a ring): each costs O(1) to keep, whatever its length
PIC_SLOTS = 64  # recent frames remembered by picture ID (mask PIC_SLOTS - 1)
PATCHED = 1 << 55  # ring stamp flag: picture ID (bits 32-46) and TL0PICIDX (47-54) differ from the source
_PADDING = struct.pack("!BBHII", 0xA0, 0, 0, 0, 0) + b"\x00\x00\x00\x04"  # RFC 3550 §5.1: padding only


class LatePackets(Consumer):
    """The gap slots and the late-packet path of :class:`~roomcast.sfu.simulcast.SimulcastConsumer`."""

    __slots__ = (
        "frames_sent",
        "gap_filled",
        "gap_next",
        "gap_pic_offset",
        "gap_seq_offset",
        "gap_size",
        "gap_start",
        "late_dropped",
    )

    # the frame numbering the consumer keeps, read here
    gen: int
    in_seq: int
    pic_offset: int
    pic_tag: list[int]
    pic_out: list[int]
    pic_view: list[int]
    single: bool
    tl0_offset: int
    tl0_shift: int
    temporal: int
    scratch: bytearray

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.late_dropped = 0
        self.frames_sent = 0  # frames sent to the subscriber (each with a picture ID of its own)
        # gaps in the current layer's sequence numbers: first missing seq, how many, the offsets then in
        # force, and which of them have arrived since (a bit each); size 0 = a free entry
        self.gap_start = [0] * GAPS
        self.gap_size = [0] * GAPS
        self.gap_seq_offset = [0] * GAPS
        self.gap_pic_offset = [0] * GAPS
        self.gap_filled = [0] * GAPS
        self.gap_next = 0

    def forget_gaps(self) -> None:
        """Gaps of the layer left are nothing to the next one."""
        self.gap_size = [0] * GAPS

    def _keep_gap(self, delta: int) -> None:
        """The ``delta - 1`` sequence numbers after ``in_seq`` are missing: keep their slots (one entry)."""
        k = self.gap_next
        self.gap_next = (k + 1) % GAPS
        self.gap_start[k] = (self.in_seq + 1) & 0xFFFF
        self.gap_size[k] = delta - 1
        self.gap_seq_offset[k] = self.seq_offset
        self.gap_pic_offset[k] = self.pic_offset
        self.gap_filled[k] = 0

    def _late(self, pkt: bytes, layer: Layer, seq: int, ts: int, now: float) -> None:
        for k in range(GAPS):
            i = (seq - self.gap_start[k]) & 0xFFFF
            if i < self.gap_size[k] and not self.gap_filled[k] >> i & 1:
                break
        else:
            self.late_dropped += 1  # a duplicate, or older than the switch to this layer
            return
        self.gap_filled[k] |= 1 << i
        out_seq = (seq + self.gap_seq_offset[k]) & 0xFFFF
        pic = layer.picture_id
        out_pic = view = -1
        if pic >= 0:
            slot = pic & (PIC_SLOTS - 1)
            tag = (self.gen << 15) | pic
            if self.pic_tag[slot] != tag:  # a frame never seen in order
                self._first_seen_late(layer, pic, slot, tag, self.gap_pic_offset[k])
            out_pic = self.pic_out[slot]
            if out_pic < 0:  # its frame was dropped: padding keeps the sequence without a hole
                padding = bytes([0xA0, pkt[1] & 0x7F]) + pkt[2:8] + _PADDING[8:]
                self._emit(padding, layer, out_seq, -1, -1, ts, now)
                return
            view = self.pic_view[slot]
        self._emit(pkt, layer, out_seq, out_pic, view, ts, now)

    def _first_seen_late(self, layer: Layer, pic: int, slot: int, tag: int, pic_offset: int) -> None:
        """Number a frame first seen late: where it belonged (``pic_offset`` from when its gap was seen),
        shown as the frames are now. Of a temporal layer not forwarded while only TL0 is, it is dropped:
        no frame sent then needs it, and it needs a TL1 frame the subscriber never got."""
        self.pic_tag[slot] = tag
        if layer.tid > self.temporal == 0:
            self.pic_out[slot] = -1
            return
        out_pic = self.pic_out[slot] = (pic + pic_offset) & 0x7FFF
        tl0 = layer.tl0picidx
        if tl0 < 0:
            self.pic_view[slot] = -1
        elif self.single and layer.tid >= 0:
            self.pic_view[slot] = ((out_pic + self.tl0_shift) & 0xFF) | 0x100
        else:
            self.pic_view[slot] = (tl0 + self.tl0_offset) & 0xFF
        self.frames_sent += 1

    def _emit(self, pkt: bytes, layer: Layer, out_seq: int, out_pic: int, view: int, ts: int, now: float) -> None:
        """Send a late packet as ``out_seq``; VP8: picture ``out_pic``, TL0PICIDX and TID as ``view`` says."""
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        b1 = pkt[1]
        mapped = self.pt_map.get(b1 & 0x7F)
        if mapped is not None:
            b1 = (b1 & 0x80) | mapped
        stamp = out_ts
        patch = False
        out_tl0 = -1
        if out_pic >= 0:
            tl0 = layer.tl0picidx
            out_tl0 = view & 0xFF if view >= 0 and tl0 >= 0 else -1
            single = SINGLE_TEMPORAL if view & 0x100 and view >= 0 and (layer.tid > 0 or layer.layer_sync) else 0
            patch = out_pic != layer.picture_id or out_tl0 != tl0 or bool(single)
            if patch:
                stamp |= PATCHED | single | (out_pic << 32) | ((out_tl0 & 0xFF) << 47)
        self.ring.store(out_seq, pkt, stamp)
        if self.last_out_seq is None or ((out_seq - self.last_out_seq) & 0xFFFF) < 0x8000:
            self.last_out_seq = out_seq
            self.last_out_ts = out_ts
            self.last_sent_at = now
        self.packets_sent += 1
        self.bytes_sent += len(pkt)
        if patch:
            buf = self.scratch
            buf[:] = pkt
            patch_descriptor(buf, layer.picture_id_pos, out_pic, layer.tl0picidx_pos, out_tl0, stamp & SINGLE_TEMPORAL)
            if self.send_rewritten is not None:
                self.send_rewritten(buf, b1, out_seq, out_ts, self.ssrc)
            else:
                self.send(self._rewrite(buf, b1, out_seq, out_ts))
        elif self.send_rewritten is not None:
            self.send_rewritten(pkt, b1, out_seq, out_ts, self.ssrc)
        else:
            self.send(self._rewrite(pkt, b1, out_seq, out_ts))

    def _patch_payload(self, pkt: bytearray, stamp: int) -> None:
        """A retransmission carries the picture ID, TL0PICIDX and TID its first sending had."""
        pos = header_length(pkt)
        if pos < 0:
            return
        d = vp8.read_descriptor(pkt, pos)
        if d[vp8.PICTURE_ID_POS] >= 0:
            single = stamp & SINGLE_TEMPORAL if d[vp8.TID] >= 0 else 0
            tl0 = (stamp >> 47) & 0xFF if d[vp8.TL0PICIDX_POS] >= 0 else -1
            patch_descriptor(pkt, d[vp8.PICTURE_ID_POS], (stamp >> 32) & 0x7FFF, d[vp8.TL0PICIDX_POS], tl0, single)
