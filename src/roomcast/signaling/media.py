"""The signaling side's view of the media plane: an interface the composition root implements.

Signaling never imports the SFU; it hands offers addressed to a server endpoint (``to: "$echo"``, later
``"$sfu"``) to a :class:`MediaBackend` and relays the answer or a typed :class:`MediaError`.
"""

from __future__ import annotations

from typing import Protocol

SERVER_TARGETS = frozenset({"$echo"})


class MediaError(Exception):
    """A refused offer; ``code`` goes to the client in an ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MediaBackend(Protocol):
    def handle_offer(self, owner: str, target: str, sdp: str) -> str:
        """Answer ``sdp`` for the endpoint ``target`` on behalf of ``owner`` (a participant sid)."""
        ...

    def close_owner(self, owner: str) -> None:
        """Release everything ``owner`` holds (it left or disconnected)."""
        ...
