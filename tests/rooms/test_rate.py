"""The per-connection message budget on a fake clock."""

from __future__ import annotations

from roomcast.rooms.rate import MessageBudget


def test_burst_then_rate_then_tell_every_tenth_then_close() -> None:
    budget = MessageBudget(rate=10.0, burst=5.0, max_violations=25)
    assert [budget.take(0.0) for _ in range(5)] == ["ok"] * 5
    verdicts = [budget.take(0.0) for _ in range(25)]
    assert verdicts[0] == "tell" and verdicts[9] == "tell" and verdicts[1] == "drop" and verdicts[-1] == "close"
    fresh = MessageBudget(rate=10.0, burst=5.0, max_violations=25)
    assert [fresh.take(t / 10) for t in range(50)] == ["ok"] * 50  # at the rate, never refused
