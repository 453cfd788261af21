"""The room model: rooms, participants, their tracks and permissions, and the events rooms deliver, independent
of any wire protocol. Adapters (the JSON WebSocket protocol today, WHIP/WHEP or another SFU's protocol later)
attach a :class:`ParticipantSink` per participant and receive :class:`RoomEvent`s through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from roomcast.errors import CodedError
from roomcast.rooms.tokens import Grants

# (identity, topic, room_admin, now) -> None, or (error code, reason): the apps' data rules (apps/rules.py),
# applied by the room to data sent on any path (the signaling socket, data channels in the SFU).
DataAuthorizer = Callable[[str, str | None, bool, float], tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class PublishedTrack:
    sid: str
    participant: str
    kind: str
    source: str
    name: str
    muted: bool
    track_id: str = ""


class RoomError(CodedError):
    """A refused room operation; ``code`` is stable and sent to clients."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ParticipantJoinedEvent:
    participant: Participant


@dataclass(frozen=True, slots=True)
class ParticipantLeftEvent:
    identity: str
    reason: str


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """A negotiation message relayed between two participants of a peer-to-peer room."""

    kind: Literal["offer", "answer", "ice_candidate"]
    sender: str
    sdp: str | None = None
    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True, slots=True)
class DataEvent:
    sender: str
    payload: str
    topic: str | None
    binary: bool
    ts: float


@dataclass(frozen=True, slots=True)
class TracksEvent:
    tracks: tuple[PublishedTrack, ...]


@dataclass(frozen=True, slots=True)
class PermissionsEvent:
    """Delivered to a participant whose grants a moderator changed, and to the others as an update."""

    participant: Participant
    by: str


@dataclass(frozen=True, slots=True)
class PublisherLayersEvent:
    """To a publisher: the simulcast layers (rids) of its track ``track_id`` someone receives (dynacast)."""

    track_id: str
    active: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpeakersEvent:
    """Who speaks in the room now, loudest first: (identity, level 0..1); empty when nobody does."""

    speakers: tuple[tuple[str, float], ...]


RoomEvent = (
    SpeakersEvent
    | PublisherLayersEvent
    | ParticipantJoinedEvent
    | ParticipantLeftEvent
    | SignalEvent
    | DataEvent
    | TracksEvent
    | PermissionsEvent
)


class ParticipantSink(Protocol):
    """Where the room delivers a participant's events. Must not block."""

    def deliver(self, event: RoomEvent) -> None: ...

    def close(self, code: str, reason: str) -> None: ...


# --------------------------------------------------------------------------- model


@dataclass(eq=False, slots=True)
class Participant:
    identity: str
    name: str
    sid: str
    joined_at: float
    grants: Grants
    token_id: str
    sink: ParticipantSink
    metadata: str | None = None
    token_expires_at: float = float("inf")


@dataclass(eq=False, slots=True)
class Room:
    name: str
    sid: str
    created_at: float
    max_participants: int
    auto_created: bool
    mode: Literal["p2p", "sfu"] = "p2p"
    participants: dict[str, Participant] = field(default_factory=dict)
    created_by: str = ""  # client key of an auto-created room (per-client room quota)
    data_rules: DataAuthorizer | None = None

    def visible(self) -> Iterator[Participant]:
        return (p for p in self.participants.values() if not p.grants.hidden)

    def others(self, identity: str) -> Iterator[Participant]:
        return (p for p in self.participants.values() if p.identity != identity)
