"""How a simulcast subscriber sees VP8 temporal layers: as one, while every packet it misses is repaired.

Why. Given TID, Y and TL0PICIDX (RFC 7741 §4.2), libwebrtc's receiver knows which frames nothing depends
on, and it decodes past one that is late: its frame buffer fast-forwards to a later frame that does not
need it (``FrameDecodeTiming``: more than 5 ms late while a later frame is decodable), and its
``RtpVp8RefFinder`` takes a non-sync frame to depend on the frames of its layer before it, so one skipped
TL2 frame can take the following ones with it until the next layer-sync frame. A frame whose only or last
packet is lost can be repaired only once the next frame has shown the gap, so through an SFU every such
TL1/TL2 frame is late. Measured with Chromium at 10 % loss on both legs: 75-82 % of the frames decoded
with Chrome's three temporal layers (simulcast or not), 99-100 % with one, 95-99 % directly between two
Chromiums (one lossy leg; docs/faults.md F5).

So the consumer presents the layer it forwards as one temporal layer (TID 0, no Y, TL0PICIDX +1 per
forwarded frame; picture IDs are continuous already): the subscriber waits for each repair, as it does
for a stream without temporal layers. The SFU keeps using the TIDs itself, to lower the frame rate. It
does so while TL1 is forwarded: every frame it sends then needs only frames the subscriber got (a
libwebrtc TL2 frame refers to TL0, TL1 and the keyframe; TL1 and TL2 frames update nothing a TL0 frame
uses). Forwarding TL0 alone it shows the real TIDs, all 0 then: a TL1/TL2 frame repaired late is not sent
(its TL2 frames would need TL1 frames the subscriber never got), and waiting is what a TL0 chain does.

The exception is a packet that will not come: libwebrtc publishers do not retransmit TL1/TL2 packets
when a lower-layer frame is due sooner than a repair could arrive (``kConditionallyRetransmitHigherLayers``,
so on paths with a round trip above a frame interval or two), and a gap can outlive the upstream NACKs. A
subscriber waiting for such a frame would stall until a keyframe; :class:`TemporalView` notices it (the
same packet asked for again after :data:`STUCK_AFTER` and still not ours to send), the consumer asks for
a keyframe and from it on shows the real temporal layers, for :data:`SINGLE_TEMPORAL_HOLD` at least.
"""

from __future__ import annotations

from typing import Protocol

SINGLE_TEMPORAL = 1 << 56  # ring stamp flag: the packet went out as TID 0 (re-applied to its retransmissions)
STUCK_AFTER = 0.25  # a subscriber asking this long for a packet we do not have is waiting for nothing
SINGLE_TEMPORAL_HOLD = 10.0  # after that, real temporal layers (chosen again at keyframes) for this long
_TRACKED = 64  # distinct missed packets remembered (a subscriber NACKs at most about this many at once)


class _Ring(Protocol):
    def get(self, seq: int) -> bytes | bytearray | None: ...


def patch_descriptor(buf: bytearray, pic_pos: int, pic: int, tl0_pos: int, tl0: int, single: int) -> None:
    """Write a VP8 payload descriptor's picture ID (keeping its width), TL0PICIDX (if ``tl0`` >= 0) and, if
    ``single``, TID 0 without Y in the byte after it (KEYIDX kept): RFC 7741 §4.2."""
    if buf[pic_pos] & 0x80:
        buf[pic_pos] = 0x80 | (pic >> 8)
        buf[pic_pos + 1] = pic & 0xFF
    else:
        buf[pic_pos] = pic & 0x7F
    if tl0 >= 0:
        buf[tl0_pos] = tl0
        if single:
            buf[tl0_pos + 1] &= 0x1F


class TemporalView:
    """Whether one subscriber may be shown one temporal layer (``allowed``; the consumer does so while it
    forwards TL1), and the packets it NACKed that we could not send, with when it first asked."""

    __slots__ = ("allowed", "first_asked", "stuck", "stuck_at")

    def __init__(self) -> None:
        self.allowed = True
        self.stuck = 0  # times it waited for a packet that was not coming
        self.stuck_at = float("-inf")
        self.first_asked: dict[int, float] = {}

    def at_keyframe(self, now: float) -> bool:
        """Choose for the frames from this keyframe on: one layer allowed, unless a wait ended lately."""
        self.allowed = now - self.stuck_at >= SINGLE_TEMPORAL_HOLD
        return self.allowed

    def waiting_for_nothing(self, ring: _Ring, seqs: list[int], now: float) -> bool:
        """Of ``seqs``, just NACKed of a subscriber shown one temporal layer, has one not in ``ring`` been
        asked for since :data:`STUCK_AFTER` ago? At most once per :data:`SINGLE_TEMPORAL_HOLD`; the caller
        then asks for a keyframe, from which on the subscriber sees the real temporal layers."""
        if not self.allowed or now - self.stuck_at < SINGLE_TEMPORAL_HOLD:
            return False
        if not any(ring.get(seq) is None and self._note(seq, now) for seq in seqs):
            return False
        self.stuck += 1
        self.stuck_at = now
        self.first_asked.clear()
        return True

    def _note(self, seq: int, now: float) -> bool:
        first = self.first_asked.get(seq)
        if first is None or now - first > 4 * STUCK_AFTER:  # new, or an old entry of a wrapped number
            first = self.first_asked[seq] = now
        if len(self.first_asked) > _TRACKED:  # bounded: forget what is long past (or everything, if flooded)
            self.first_asked = {s: t for s, t in self.first_asked.items() if now - t < 4 * STUCK_AFTER}
            if len(self.first_asked) > _TRACKED:
                self.first_asked = {seq: first}
        return now - first >= STUCK_AFTER
