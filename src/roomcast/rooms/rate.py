"""The per-connection message budget every adapter applies (a token bucket): messages above the rate are
dropped, the first and every tenth drop are reported to the client, sustained abuse closes the connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["ok", "drop", "tell", "close"]


@dataclass
class MessageBudget:
    rate: float  # messages per second
    burst: float
    max_violations: int
    tokens: float = field(init=False)
    refilled: float = 0.0
    violations: int = 0

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> Verdict:
        """``ok``: handle it; ``drop``: drop it quietly; ``tell``: drop it and say so; ``close``: enough."""
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return "ok"
        self.violations += 1
        if self.violations >= self.max_violations:
            return "close"
        return "tell" if self.violations == 1 or self.violations % 10 == 0 else "drop"
