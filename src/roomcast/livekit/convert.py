"""The room model as LiveKit's protobuf messages: rooms, participants, tracks, leave reasons."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from livekit.protocol import models, rtc

from roomcast import __version__
from roomcast.rooms.model import Participant, PublishedTrack, Room

# LiveKit's protocol level this adapter speaks (ServerInfo.protocol), and the server version it reports:
# clients gate features on it (e.g. dynacast before 0.15.1 is off), so it names the LiveKit release whose
# behaviour the adapter follows.
PROTOCOL = 16
COMPATIBLE_VERSION = "1.9.0"
PING_INTERVAL, PING_TIMEOUT = 5, 15  # seconds, sent in the JoinResponse: clients ping us

# Clients drop a ParticipantInfo older than the one they hold (its ``version``): one increasing counter.
_versions = itertools.count(1)

_SOURCES = {
    "camera": models.TrackSource.CAMERA,
    "microphone": models.TrackSource.MICROPHONE,
    "screen": models.TrackSource.SCREEN_SHARE,
    "screen_share": models.TrackSource.SCREEN_SHARE,
    "screen_share_audio": models.TrackSource.SCREEN_SHARE_AUDIO,
}
SOURCE_NAMES = {
    models.TrackSource.CAMERA: "camera",
    models.TrackSource.MICROPHONE: "microphone",
    models.TrackSource.SCREEN_SHARE: "screen_share",
    models.TrackSource.SCREEN_SHARE_AUDIO: "screen_share_audio",
}

# our leave/close codes (rooms/manager.py) -> LiveKit's DisconnectReason
DISCONNECT_REASONS = {
    "duplicate_identity": models.DisconnectReason.DUPLICATE_IDENTITY,
    "removed": models.DisconnectReason.PARTICIPANT_REMOVED,
    "room_deleted": models.DisconnectReason.ROOM_DELETED,
    "server_shutdown": models.DisconnectReason.SERVER_SHUTDOWN,
    "token_expired": models.DisconnectReason.JOIN_FAILURE,
    "slow_consumer": models.DisconnectReason.SIGNAL_CLOSE,
}


@dataclass(frozen=True, slots=True)
class TrackShape:
    """What a LiveKit publisher said of its track in AddTrackRequest (our room model does not keep it)."""

    width: int = 0
    height: int = 0
    layers: tuple[models.VideoLayer, ...] = field(default_factory=tuple)


def track_info(track: PublishedTrack, shape: TrackShape | None = None) -> models.TrackInfo:
    info = models.TrackInfo(
        sid=track.sid,
        type=models.TrackType.AUDIO if track.kind == "audio" else models.TrackType.VIDEO,
        name=track.name,
        muted=track.muted,
        source=_SOURCES.get(track.source, models.TrackSource.UNKNOWN),
    )
    if shape is not None:
        info.width, info.height = shape.width, shape.height
        info.simulcast = len(shape.layers) > 1
        info.layers.extend(shape.layers)
    return info


def permission(p: Participant) -> models.ParticipantPermission:
    g = p.grants
    return models.ParticipantPermission(
        can_subscribe=g.can_subscribe,
        can_publish=g.can_publish,
        can_publish_data=g.can_publish_data,
        hidden=g.hidden,
    )


def participant_info(
    p: Participant,
    tracks: Iterable[PublishedTrack] = (),
    shapes: dict[str, TrackShape] | None = None,
    *,
    state: int = models.ParticipantInfo.State.ACTIVE,
) -> models.ParticipantInfo:
    infos = [track_info(t, (shapes or {}).get(t.sid)) for t in tracks]
    return models.ParticipantInfo(
        sid=p.sid,
        identity=p.identity,
        name=p.name,
        state=state,  # type: ignore[arg-type]
        tracks=infos,
        metadata=p.metadata or "",
        joined_at=int(p.joined_at),
        joined_at_ms=int(p.joined_at * 1000),
        version=next(_versions),
        permission=permission(p),
        is_publisher=bool(infos),
    )


def departed_info(identity: str, sid: str) -> models.ParticipantInfo:
    return models.ParticipantInfo(
        sid=sid, identity=identity, state=models.ParticipantInfo.State.DISCONNECTED, version=next(_versions)
    )


def room_info(room: Room, publishers: int) -> models.Room:
    return models.Room(
        sid=room.sid,
        name=room.name,
        max_participants=room.max_participants,
        creation_time=int(room.created_at),
        creation_time_ms=int(room.created_at * 1000),
        num_participants=sum(1 for _ in room.visible()),
        num_publishers=publishers,
    )


def server_info() -> models.ServerInfo:
    return models.ServerInfo(
        edition=models.ServerInfo.Edition.Standard,
        version=COMPATIBLE_VERSION,
        protocol=PROTOCOL,
        debug_info=f"roomcast {__version__}",
    )


def leave(reason: str, *, can_reconnect: bool = False) -> rtc.SignalResponse:
    code = DISCONNECT_REASONS.get(reason, models.DisconnectReason.UNKNOWN_REASON)
    action = rtc.LeaveRequest.Action.RECONNECT if can_reconnect else rtc.LeaveRequest.Action.DISCONNECT
    return rtc.SignalResponse(leave=rtc.LeaveRequest(can_reconnect=can_reconnect, reason=code, action=action))
