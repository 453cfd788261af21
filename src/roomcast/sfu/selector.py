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

    def restart(self) -> None:
        """Forget a hold in progress (the layer was chosen another way)."""
        self._up_since = None

    def select(
        self, bitrates: list[list[float]], budget: float, current: tuple[int, int], now: float, keep: bool = False
    ) -> tuple[int, int] | None:
        """``bitrates[s][t]``: layer ``s`` at TIDs 0..t (bits/s, 0 = not arriving). None: nothing known.
        ``keep``: the budget only limits going up (a path that has not pushed back: no reason to go down)."""
        options = _options(bitrates)
        if not options:
            return None
        rate = {o: bitrates[o[0]][o[1]] for o in options}
        fitting = [o for o in options if rate[o] <= budget or (keep and o <= current)]
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


def _options(bitrates: list[list[float]]) -> list[tuple[int, int]]:
    """The (spatial, temporal) options arriving, in order: every TID count of the lowest layer, the top two
    of the others (at least half the frame rate)."""
    return [
        (s, t)
        for s, rates in enumerate(bitrates)
        for t, rate in enumerate(rates)
        if rate > 0 and (s == 0 or t >= len(rates) - 2)
    ]


def next_option(bitrates: list[list[float]], current: tuple[int, int]) -> tuple[int, int] | None:
    """The option one step above ``current`` (None: ``current`` is not arriving, or is the best)."""
    options = _options(bitrates)
    above = [o for o in options if o > current]
    return above[0] if above and current in options else None


def step_up(bitrates: list[list[float]], current: tuple[int, int]) -> tuple[float, float]:
    """(bits/s of ``current``, of the next option above it): what going up one step would cost; 0 where there
    is none (``current`` not arriving, or already the best)."""
    up = next_option(bitrates, current)
    if up is None:
        return (bitrates[current[0]][current[1]] if current in _options(bitrates) else 0.0), 0.0
    return bitrates[current[0]][current[1]], bitrates[up[0]][up[1]]
