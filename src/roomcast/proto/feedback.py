"""Feedback processors shared by the SFU and the SDK, each small and tested alone (docs/architecture.md).

- :class:`RtxRing`: the last N packets sent to one receiver, by the sequence number it saw, so a NACK
  (RFC 4585 §6.2.1) is answered without asking the original sender.
- :class:`KeyframeThrottle`: keyframe requests (PLI/FIR, RFC 4585 §6.3.1 / RFC 5104 §4.3.1) forwarded
  upstream at most once per interval per producer, whatever the subscribers send.
- :class:`NackGenerator`: notices gaps in a sender's sequence numbers and asks again, a bounded number of
  times, for packets still missing (the receiving side of RFC 4585 generic NACK).
"""

from __future__ import annotations


class RtxRing:
    """Fixed ring of recent packets, indexed by 16-bit sequence number, each with one integer stamp;
    no per-packet objects but the packet (which may be shared with other rings)."""

    __slots__ = ("_mask", "_packets", "_seqs", "_stamps")

    def __init__(self, size: int = 1024) -> None:
        if size & (size - 1):
            raise ValueError("size must be a power of two")
        self._mask = size - 1
        self._packets: list[bytes | bytearray | None] = [None] * size
        self._seqs: list[int] = [-1] * size
        self._stamps: list[int] = [0] * size

    def store(self, seq: int, packet: bytes | bytearray, stamp: int = 0) -> None:
        i = seq & self._mask
        self._packets[i] = packet
        self._seqs[i] = seq
        self._stamps[i] = stamp

    def get(self, seq: int) -> bytes | bytearray | None:
        i = seq & self._mask
        return self._packets[i] if self._seqs[i] == seq else None

    def stamp(self, seq: int) -> int:
        return self._stamps[seq & self._mask]

    def clear(self) -> None:
        self._packets = [None] * len(self._packets)
        self._seqs = [-1] * len(self._seqs)


class KeyframeThrottle:
    """At most one keyframe request per ``interval`` seconds (docs/security.md B3: PLI floods)."""

    __slots__ = ("_last", "interval", "suppressed")

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._last = float("-inf")
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if now - self._last >= self.interval:
            self._last = now
            return True
        self.suppressed += 1
        return False


def seq_newer(a: int, b: int) -> bool:
    """RFC 3550 §A.1 style: is 16-bit sequence number ``a`` after ``b`` (modulo wrap)?"""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class NackGenerator:
    """Track a publisher's sequence numbers; report missing ones for NACK, each at most ``max_tries`` times."""

    __slots__ = ("_highest", "_missing", "max_age", "max_missing", "max_tries", "nacks_sent", "recovered", "rtt")

    def __init__(self, *, max_tries: int = 10, max_missing: int = 500, max_age: float = 1.0, rtt: float = 0.05) -> None:
        self._highest: int | None = None
        self._missing: dict[int, list[float]] = {}  # seq -> [first seen missing, last asked, tries]
        self.max_tries = max_tries
        self.max_missing = max_missing
        self.max_age = max_age
        self.rtt = rtt
        self.nacks_sent = 0
        self.recovered = 0

    def on_packet(self, seq: int, now: float) -> None:
        highest = self._highest
        if highest is None:
            self._highest = seq
            return
        if seq_newer(seq, highest):
            gap = (seq - highest) & 0xFFFF
            if gap > self.max_missing:  # a jump (new source, long outage): do not NACK the world
                self._missing.clear()
            else:
                for missing in range(highest + 1, highest + gap):
                    self._missing[missing & 0xFFFF] = [now, float("-inf"), 0.0]
                if len(self._missing) > self.max_missing:
                    for old in list(self._missing)[: len(self._missing) - self.max_missing]:
                        del self._missing[old]
            self._highest = seq
        elif self._missing.pop(seq, None) is not None:
            self.recovered += 1

    def due(self, now: float) -> list[int]:
        """Sequence numbers to NACK now (retried no sooner than one RTT apart)."""
        out: list[int] = []
        for seq, state in list(self._missing.items()):
            first, last, tries = state
            if tries >= self.max_tries or now - first > self.max_age:
                del self._missing[seq]
                continue
            if now - last >= self.rtt:
                state[1] = now
                state[2] = tries + 1
                out.append(seq)
        self.nacks_sent += len(out)
        return out

    @property
    def missing(self) -> int:
        return len(self._missing)
