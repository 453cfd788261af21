"""Server-side data rules of the apps: which topics need which grant (roles come from tokens, not clients).

``control`` (IoT remote control) needs the ``roomAdmin`` grant: a dashboard operator's token carries it,
a viewer's does not, whatever the client claims.
"""

from __future__ import annotations

PRIVILEGED_TOPICS = {"control": "roomAdmin"}


def authorize_data(topic: str | None, *, room_admin: bool) -> str | None:
    """None if allowed, else a human-readable reason for the ``permission_denied`` error."""
    needed = PRIVILEGED_TOPICS.get(topic or "")
    if needed == "roomAdmin" and not room_admin:
        return f"topic {topic!r} needs the roomAdmin grant"
    return None
