"""Server-side data rules of the apps: which topics need which grant (roles come from tokens, not clients).

``control`` (IoT remote control) needs the ``roomAdmin`` grant: a dashboard operator's token carries it,
a viewer's does not, whatever the client claims.
"""

from __future__ import annotations

PRIVILEGED_TOPICS = {"control": "roomAdmin", "qa": "roomAdmin", "hand-queue": "roomAdmin"}
# Per participant and topic: (messages per second, burst). Live streaming questions and gifts.
TOPIC_RATES = {"question": (0.5, 3.0), "gift": (5.0, 10.0), "hand": (1.0, 3.0)}


class TopicLimits:
    """Token buckets per (identity, topic) for the topics in :data:`TOPIC_RATES`; bounded state."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def allow(self, identity: str, topic: str | None, now: float) -> bool:
        rate = TOPIC_RATES.get(topic or "")
        if rate is None:
            return True
        per_second, burst = rate
        key = (identity, topic or "")
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * per_second)
        if len(self._buckets) > 10_000:
            self._buckets.clear()
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True


def authorize_data(topic: str | None, *, room_admin: bool) -> str | None:
    """None if allowed, else a human-readable reason for the ``permission_denied`` error."""
    needed = PRIVILEGED_TOPICS.get(topic or "")
    if needed == "roomAdmin" and not room_admin:
        return f"topic {topic!r} needs the roomAdmin grant"
    return None


class DataRules:
    """What the composition root installs on each room's data router."""

    def __init__(self) -> None:
        self.limits = TopicLimits()

    def __call__(self, identity: str, topic: str | None, room_admin: bool, now: float) -> tuple[str, str] | None:
        refusal = authorize_data(topic, room_admin=room_admin)
        if refusal is not None:
            return "permission_denied", refusal
        if not self.limits.allow(identity, topic, now):
            return "rate_limited", f"too many {topic!r} messages; slow down"
        return None
