"""Which simulcast layer a bitrate budget buys (for a bandwidth estimator / allocator), without flapping."""

from __future__ import annotations


class LayerSelector:
    """Which (spatial, temporal) layer a bitrate budget buys, without flapping.

    Options are ordered spatial first, then temporal, so a shrinking budget drops TIDs (frame rate) before it
    drops resolution, down to half the frame rate: below that a smaller layer at a smoother rate is better
    (7.5 fps of the full size looks frozen); only the lowest layer may go that low, as a last resort. Going
    down happens at once (the link is short now); going up needs the budget to cover the higher option with
    ``headroom`` for ``hold`` seconds without a break.
    """

    __slots__ = ("_up_since", "headroom", "hold")

    def __init__(self, headroom: float = 1.15, hold: float = 2.0) -> None:
        self.headroom = headroom
        self.hold = hold
        self._up_since: float | None = None

    def select(
        self, bitrates: list[list[float]], budget: float, current: tuple[int, int], now: float
    ) -> tuple[int, int] | None:
        """``bitrates[s][t]``: layer ``s`` at TIDs 0..t (bits/s, 0 = not arriving). None: nothing known."""
        options = [
            (s, t)
            for s, rates in enumerate(bitrates)
            for t, rate in enumerate(rates)
            if rate > 0 and (s == 0 or t >= len(rates) - 2)
        ]
        if not options:
            return None
        rate = {o: bitrates[o[0]][o[1]] for o in options}
        fitting = [o for o in options if rate[o] <= budget]
        best = max(fitting) if fitting else options[0]
        if best <= current or current not in rate:
            self._up_since = None
            return best
        up = max((o for o in fitting if o > current and rate[o] * self.headroom <= budget), default=None)
        if up is None:
            self._up_since = None
            return current
        if self._up_since is None:
            self._up_since = now
        if now - self._up_since >= self.hold:
            self._up_since = None
            return up
        return current
