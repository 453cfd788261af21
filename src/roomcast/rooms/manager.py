"""The room manager: every room of this node, joins and leaves, kicks and revocation, moderation, data rules
and per-client quotas. Everything runs on one event loop thread and never blocks: sinks must queue, not wait.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from roomcast.rooms.model import (
    DataAuthorizer,
    DataEvent,
    Participant,
    ParticipantJoinedEvent,
    ParticipantLeftEvent,
    ParticipantSink,
    PermissionsEvent,
    PublishedTrack,
    PublisherLayersEvent,
    Room,
    RoomError,
    RoomEvent,
    SignalEvent,
    SpeakersEvent,
    TracksEvent,
)
from roomcast.rooms.tokens import MAX_TOKEN_LIFETIME, AccessToken, validate_room

DEFAULT_MAX_PARTICIPANTS = 50
DEFAULT_MAX_ROOMS = 1000
DEFAULT_MAX_AUTO_ROOMS_PER_CLIENT = 100  # rooms one client (an IPv4 address, an IPv6 /64) may bring into being


def client_key(host: str) -> str:
    """What per-client quotas count: the IPv4 address, or the IPv6 /64 (one subscriber's prefix; counting
    single IPv6 addresses would let one host take as many as it likes)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# (event, room, participant or None, reason): "room_started", "room_finished", "participant_joined",
# "participant_left"; the composition root turns them into webhooks (app/webhooks.py). Must not block.
LifecycleHook = Callable[[str, Room, Participant | None, str], None]


class RoomManager:
    """All rooms of this node, in memory."""

    def __init__(
        self,
        *,
        max_rooms: int = DEFAULT_MAX_ROOMS,
        default_max_participants: int = DEFAULT_MAX_PARTICIPANTS,
        auto_create: bool = True,
        default_mode: Literal["p2p", "sfu"] = "sfu",
        max_auto_rooms_per_client: int = DEFAULT_MAX_AUTO_ROOMS_PER_CLIENT,
        data_rules: Callable[[], DataAuthorizer] | None = None,
    ) -> None:
        self.default_mode: Literal["p2p", "sfu"] = default_mode
        self.max_auto_rooms_per_client = max_auto_rooms_per_client
        self._data_rules = data_rules
        self._auto_rooms: Counter[str] = Counter()  # client key -> auto-created rooms that still exist
        self.rooms: dict[str, Room] = {}
        self.max_rooms = max_rooms
        self.default_max_participants = default_max_participants
        self.auto_create = auto_create
        self._revoked: dict[str, float] = {}  # token id -> its exp: replay after a kick is refused
        # (room, identity) -> time of the kick: every token for them issued before it is refused too (tokens
        # without a jti, others minted earlier, a token the kicked admin minted for itself).
        self._kicked: dict[tuple[str, str], float] = {}
        self.on_lifecycle: LifecycleHook = lambda event, room, participant, reason: None

    def participant_count(self) -> int:
        """Participants in every room of this node (metrics; memory trimming after departures)."""
        return sum(len(r.participants) for r in self.rooms.values())

    # ------------------------------------------------------------------ rooms

    def create_room(
        self,
        name: str,
        now: float,
        *,
        max_participants: int | None = None,
        auto: bool = False,
        mode: Literal["p2p", "sfu"] | None = None,
    ) -> Room:
        try:
            validate_room(name)
        except ValueError as exc:
            raise RoomError("invalid_room", str(exc)) from None
        if name in self.rooms:
            raise RoomError("room_exists", f"room {name!r} already exists")
        if len(self.rooms) >= self.max_rooms:
            raise RoomError("too_many_rooms", f"server limit of {self.max_rooms} rooms reached")
        limit = self.default_max_participants if max_participants is None else max_participants
        if limit < 1:
            raise RoomError("invalid_room", "max_participants must be at least 1")
        room = Room(name, "RM_" + secrets.token_hex(6), now, limit, auto, mode or self.default_mode)
        if self._data_rules is not None:
            room.data_rules = self._data_rules()
        self.rooms[name] = room
        self.on_lifecycle("room_started", room, None, "")
        return room

    def delete_room(self, name: str, reason: str = "room_deleted") -> None:
        room = self.rooms.pop(name, None)
        if room is None:
            raise RoomError("room_not_found", f"room {name!r} does not exist")
        self._forget_room(room)
        for participant in list(room.participants.values()):
            participant.sink.close(reason, f"room {name!r} was deleted")
            self.on_lifecycle("participant_left", room, participant, reason)
        room.participants.clear()
        self.on_lifecycle("room_finished", room, None, reason)

    # ------------------------------------------------------------------ participants

    def join(self, token: AccessToken, sink: ParticipantSink, now: float, client: str = "") -> tuple[Room, Participant]:
        """``client`` (see :func:`client_key`) is charged for a room this join creates."""
        room_name = token.grants.room
        if not room_name:
            raise RoomError("missing_grant", "token has no room grant")
        if self.is_revoked(token, now):
            raise RoomError("token_revoked", "this token was revoked when its participant was removed")
        room = self.rooms.get(room_name)
        if room is None:
            if not self.auto_create:
                raise RoomError("room_not_found", f"room {room_name!r} does not exist")
            quota = self.max_auto_rooms_per_client
            if client and quota and self._auto_rooms[client] >= quota:
                raise RoomError("too_many_rooms", f"your address already holds {quota} rooms")
            room = self.create_room(room_name, now, auto=True)
            if client:
                room.created_by = client
                self._auto_rooms[client] += 1
        previous = room.participants.get(token.identity)
        if previous is None and len(room.participants) >= room.max_participants:
            self._drop_if_empty(room)
            raise RoomError("room_full", f"room {room_name!r} is full ({room.max_participants} participants)")
        if previous is not None:
            # Same identity joining again (new tab, reconnect): the newest session wins.
            del room.participants[token.identity]
            previous.sink.close("duplicate_identity", "the same identity joined from another session")
            self._broadcast(room, ParticipantLeftEvent(previous.identity, "replaced"), previous)
            self.on_lifecycle("participant_left", room, previous, "replaced")
        participant = Participant(
            identity=token.identity,
            name=token.name,
            sid="PA_" + secrets.token_hex(6),
            joined_at=now,
            grants=token.grants,
            token_id=token.token_id,
            sink=sink,
            metadata=token.metadata,
            token_expires_at=token.expires_at,
        )
        room.participants[participant.identity] = participant
        self._broadcast(room, ParticipantJoinedEvent(participant), participant)
        self.on_lifecycle("participant_joined", room, participant, "")
        return room, participant

    def leave(self, room: Room, participant: Participant, reason: str = "left") -> None:
        """Remove ``participant`` if it is still the current session of its identity."""
        if room.participants.get(participant.identity) is not participant:
            return
        del room.participants[participant.identity]
        self._broadcast(room, ParticipantLeftEvent(participant.identity, reason), participant)
        self.on_lifecycle("participant_left", room, participant, reason)
        self._drop_if_empty(room)

    def is_revoked(self, token: AccessToken, now: float) -> bool:
        """Was this token (or its identity in its room, for tokens issued before a kick) revoked?"""
        self._forget_expired(now)
        if token.token_id and token.token_id in self._revoked:
            return True
        kicked_at = self._kicked.get((token.grants.room, token.identity))
        return kicked_at is not None and token.issued_at <= kicked_at

    def remove_participant(self, room_name: str, identity: str, now: float, expires_at: float | None = None) -> None:
        """Kick a participant (admin); its token, and every older token of that identity for this room, is refused
        from now on (until they have all expired: no token lives longer than ``MAX_TOKEN_LIFETIME``)."""
        room = self.rooms.get(room_name)
        if room is None:
            raise RoomError("room_not_found", f"room {room_name!r} does not exist")
        participant = room.participants.get(identity)
        if participant is None:
            raise RoomError("participant_not_found", f"{identity!r} is not in room {room_name!r}")
        if participant.token_id:
            self._revoked[participant.token_id] = expires_at if expires_at is not None else now + MAX_TOKEN_LIFETIME
        self._kicked[(room_name, identity)] = now
        participant.sink.close("removed", "removed from the room by an administrator")
        self.leave(room, participant, "removed")

    def is_current(self, room: Room, participant: Participant) -> bool:
        return self.rooms.get(room.name) is room and room.participants.get(participant.identity) is participant

    # ------------------------------------------------------------------ messages

    def relay_signal(self, room: Room, sender: Participant, target: str | None, event: SignalEvent) -> None:
        """Peer-to-peer negotiation: deliver to ``target``, or to the only other participant."""
        receiver = self._target(room, sender, target)
        receiver.sink.deliver(event)

    def send_data(self, room: Room, sender: Participant, to: list[str] | None, event: DataEvent) -> int:
        """Deliver a data message; returns how many participants it reached."""
        if not sender.grants.can_publish_data:
            raise RoomError("permission_denied", "token lacks the canPublishData grant")
        if room.data_rules is not None:
            refusal = room.data_rules(sender.identity, event.topic, sender.grants.room_admin, event.ts)
            if refusal is not None:
                raise RoomError(*refusal)
        receivers = [p for p in room.others(sender.identity) if p.grants.can_subscribe]
        if to is not None:
            wanted = set(to)
            receivers = [p for p in receivers if p.identity in wanted]
        for receiver in receivers:
            receiver.sink.deliver(event)
        return len(receivers)

    def set_can_publish(self, room: Room, moderator: Participant, identity: str, allowed: bool) -> Participant:
        """A room admin changes who may publish (e.g. invites a viewer on stage); everyone is told."""
        target = self._moderated(room, moderator, identity)
        target.grants = replace(target.grants, can_publish=allowed)
        event = PermissionsEvent(target, moderator.identity)
        for participant in room.participants.values():
            participant.sink.deliver(event)
        return target

    def moderate_remove(self, room: Room, moderator: Participant, identity: str, now: float) -> None:
        target = self._moderated(room, moderator, identity)
        self.remove_participant(room.name, identity, now, target.token_expires_at)

    def _moderated(self, room: Room, moderator: Participant, identity: str) -> Participant:
        if not moderator.grants.room_admin:
            raise RoomError("permission_denied", "only a room admin can moderate other participants")
        target = room.participants.get(identity)
        if target is None:
            raise RoomError("unknown_participant", f"no participant {identity[:128]!r} in this room")
        return target

    def tell_participant(self, room_name: str, participant_sid: str, event: RoomEvent) -> None:
        """Deliver ``event`` to one participant, found by its sid (the media service knows sids only)."""
        room = self.rooms.get(room_name)
        if room is None:
            return
        for participant in room.participants.values():
            if participant.sid == participant_sid:
                participant.sink.deliver(event)
                return

    def broadcast_speakers(self, room_name: str, speakers: list[tuple[str, float]]) -> None:
        """Active speakers (the media service hears them), to everyone who receives; hidden ones are left out."""
        room = self.rooms.get(room_name)
        if room is None:
            return
        hidden = {p.identity for p in room.participants.values() if p.grants.hidden}
        event = SpeakersEvent(tuple((identity, level) for identity, level in speakers if identity not in hidden))
        for participant in room.participants.values():
            if participant.grants.can_subscribe:
                participant.sink.deliver(event)

    def broadcast_tracks(self, room_name: str, tracks: list[PublishedTrack]) -> None:
        room = self.rooms.get(room_name)
        if room is None:
            return
        event = TracksEvent(tuple(tracks))
        for participant in room.participants.values():
            if participant.grants.can_subscribe:
                participant.sink.deliver(event)

    # ------------------------------------------------------------------ internals

    def _target(self, room: Room, sender: Participant, target: str | None) -> Participant:
        if target is None:
            others = list(room.others(sender.identity))
            if len(others) != 1:
                raise RoomError("target_required", "field 'to' is required when the room has more than 2 participants")
            return others[0]
        receiver = room.participants.get(target)
        if receiver is None or receiver is sender:
            raise RoomError("unknown_participant", f"no participant {target[:128]!r} in this room")
        return receiver

    def _broadcast(self, room: Room, event: RoomEvent, about: Participant) -> None:
        if about.grants.hidden:
            return
        for other in room.others(about.identity):
            other.sink.deliver(event)

    def _drop_if_empty(self, room: Room) -> None:
        if room.auto_created and not room.participants and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self._forget_room(room)
            self.on_lifecycle("room_finished", room, None, "empty")

    def _forget_room(self, room: Room) -> None:
        if room.created_by:
            self._auto_rooms[room.created_by] -= 1
            if self._auto_rooms[room.created_by] <= 0:
                del self._auto_rooms[room.created_by]
            room.created_by = ""

    def _forget_expired(self, now: float) -> None:
        if len(self._revoked) > 64:
            for token_id, expiry in list(self._revoked.items()):
                if expiry < now:
                    del self._revoked[token_id]
        if len(self._kicked) > 64:
            for key, kicked_at in list(self._kicked.items()):
                if kicked_at + MAX_TOKEN_LIFETIME < now:
                    del self._kicked[key]


__all__ = [
    "DEFAULT_MAX_PARTICIPANTS",
    "DEFAULT_MAX_ROOMS",
    "DataAuthorizer",
    "DataEvent",
    "Participant",
    "ParticipantJoinedEvent",
    "ParticipantLeftEvent",
    "ParticipantSink",
    "PermissionsEvent",
    "PublishedTrack",
    "PublisherLayersEvent",
    "Room",
    "RoomError",
    "RoomEvent",
    "RoomManager",
    "SignalEvent",
    "TracksEvent",
    "client_key",
]
