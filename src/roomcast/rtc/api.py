"""What adapters see of the media service: an interface :class:`roomcast.rtc.service.MediaService` implements.

Adapters never import the SFU; they hand offers addressed to a server endpoint (``$echo``, ``$publish``,
``$subscribe``, ``$data``) to a :class:`MediaBackend` and relay the answer or a typed :class:`MediaError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from roomcast.errors import CodedError
from roomcast.rooms.model import PublishedTrack
from roomcast.wire.envelope import DataFraming

SERVER_TARGETS = frozenset({"$echo", "$publish", "$subscribe", "$data", "$peer"})
# ``$peer``: one peer connection that publishes, subscribes and carries data channels, every negotiation offered
# by the client (LiveKit's single peer connection); what it sends is ``OfferContext.subscriptions``.


@dataclass(frozen=True, slots=True)
class OfferContext:
    room: str
    identity: str
    tracks: dict[str, tuple[str, str]] = field(default_factory=dict)  # track id -> (source, name)
    track_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # track id -> capture width, height
    subscriptions: dict[str, str] = field(default_factory=dict)  # mid -> track sid
    can_publish_data: bool = True
    room_admin: bool = False
    can_subscribe: bool = True
    # the room's data rules (rooms.DataAuthorizer), so data channels and the signaling socket share one policy
    # and one set of per-topic rate buckets
    data_rules: Callable[[str, str | None, bool, float], tuple[str, str] | None] | None = None
    # ``$subscribe`` for a client that cannot renegotiate (WHEP): every audio/video m-line it receives is
    # answered sendonly with our SSRCs and one stream id, so other producers can be put behind it later
    send_all: bool = False
    can_publish: bool = True  # ``$peer`` receives nothing without it (its sending m-lines are answered inactive)
    track_sids: dict[str, str] = field(default_factory=dict)  # offer's msid track id -> sid announced already
    # the msid stream id of a track we send; ``{owner}|{track}`` is what LiveKit clients read
    stream_id: str = "{identity}"
    data_labels: tuple[str, ...] = ()  # ``$peer``: the data channels its association accepts, one of each
    data_framing: DataFraming | None = None  # ``$peer``: how its room data is framed (None: no room data)


@dataclass(frozen=True, slots=True)
class TrackSettings:
    """A subscriber's wish for one remote video track (adaptive stream): a quality, or the size it is shown
    at, or disabled while hidden."""

    track_sid: str
    quality: str | None = None  # "low" | "medium" | "high"
    width: int | None = None
    height: int | None = None
    enabled: bool = True


class MediaError(CodedError):
    """A refused offer; ``code`` goes to the client in an ``error`` message."""


class MediaBackend(Protocol):
    def handle_offer(self, owner: str, target: str, sdp: str, context: OfferContext) -> str:
        """Answer ``sdp`` for the endpoint ``target`` on behalf of ``owner`` (a participant sid)."""
        ...

    def room_tracks(self, room: str) -> list[PublishedTrack]: ...

    def room_speakers(self, room: str) -> list[tuple[str, float]]:
        """Who speaks in ``room`` now, loudest first: (identity, level 0..1)."""
        ...

    def set_muted(self, room: str, owner: str, track_sid: str, muted: bool) -> bool: ...

    def set_track_settings(self, room: str, owner: str, settings: TrackSettings) -> bool:
        """How subscriber ``owner`` wants remote track ``settings.track_sid``; False if it does not receive it."""
        ...

    def mute_owner(self, room: str, owner: str, muted: bool) -> int:
        """Stop or resume forwarding every track ``owner`` publishes; returns how many."""
        ...

    def stop_publishing(self, owner: str) -> None:
        """``owner`` lost the right to publish: close its publisher connection and tracks."""
        ...

    def close_owner(self, owner: str) -> None:
        """Release everything ``owner`` holds (it left or disconnected)."""
        ...
