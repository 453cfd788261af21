"""LiveKit's server API, Twirp ``RoomService`` (``POST /twirp/livekit.RoomService/<Method>``), over the room
manager, so ``livekit-api`` and LiveKit's server SDKs manage Roomcast rooms.

Requests and responses are protobuf (``application/protobuf``) or protobuf JSON (``application/json``);
errors are Twirp's JSON (``{"code": "not_found", "msg": "room_not_found: ..."}``). Authorization is a
LiveKit token (``Authorization: Bearer``) whose ``video`` grant holds ``roomCreate`` (create, delete),
``roomList`` (list) or ``roomAdmin`` for the request's room (participants, mute), as LiveKit's server asks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as lk
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomcast.livekit import convert
from roomcast.rooms.manager import RoomManager
from roomcast.rooms.model import Room, RoomError
from roomcast.rooms.tokens import TokenError, verified_claims
from roomcast.rtc.api import MediaBackend

MAX_BODY = 64 * 1024
# Twirp error codes (twirp spec v7) with their HTTP statuses, and ours mapped onto them
_TWIRP_STATUS = {
    "malformed": 400,
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "resource_exhausted": 429,
    "unimplemented": 501,
}
_TWIRP_CODE = {
    "room_not_found": "not_found",
    "participant_not_found": "not_found",
    "unknown_track": "not_found",
    "room_exists": "already_exists",
    "room_full": "resource_exhausted",
    "too_many_rooms": "resource_exhausted",
    "invalid_room": "invalid_argument",
}


@dataclass(frozen=True, slots=True)
class _Call:
    """A RoomService method: its request type, the grant it needs, what it does."""

    request: type[Message]
    grant: str  # "roomCreate" | "roomList" | "roomAdmin" (of the request's ``room``)
    run: Callable[[Any], Message]


class TwirpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(eq=False)
class RoomServiceApi:
    manager: RoomManager
    keys: Mapping[str, str]
    clock: Callable[[], float]
    media: Callable[[], MediaBackend | None] = lambda: None
    on_event: Callable[[str], None] = lambda name: None

    def calls(self) -> dict[str, _Call]:
        return {
            "CreateRoom": _Call(lk.CreateRoomRequest, "roomCreate", self._create_room),
            "ListRooms": _Call(lk.ListRoomsRequest, "roomList", self._list_rooms),
            "DeleteRoom": _Call(lk.DeleteRoomRequest, "roomCreate", self._delete_room),
            "ListParticipants": _Call(lk.ListParticipantsRequest, "roomAdmin", self._list_participants),
            "GetParticipant": _Call(lk.RoomParticipantIdentity, "roomAdmin", self._get_participant),
            "RemoveParticipant": _Call(lk.RoomParticipantIdentity, "roomAdmin", self._remove_participant),
            "MutePublishedTrack": _Call(lk.MuteRoomTrackRequest, "roomAdmin", self._mute),
        }

    async def handle(self, request: Request) -> Response:
        method = request.path_params.get("method", "")
        json_body = request.headers.get("content-type", "").split(";")[0].strip() == "application/json"
        try:
            call = self.calls().get(method)
            if call is None:
                raise TwirpError("bad_route", f"no RoomService method {method[:64]!r}")
            self._authorize(request, call)
            body = await request.body()
            if len(body) > MAX_BODY:
                raise TwirpError("malformed", f"request body over {MAX_BODY} bytes")
            message = call.request()
            try:
                if json_body:
                    json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
                else:
                    message.ParseFromString(body)
            except (DecodeError, json_format.ParseError) as exc:
                raise TwirpError("malformed", f"cannot decode {call.request.__name__}: {exc}") from None
            self._check_room(request, call, message)
            try:
                result = call.run(message)
            except RoomError as exc:
                raise TwirpError(_TWIRP_CODE.get(exc.code, "invalid_argument"), f"{exc.code}: {exc.message}") from None
        except TwirpError as exc:
            self.on_event("livekit_twirp_error")
            status = _TWIRP_STATUS.get(exc.code, 500)
            return JSONResponse({"code": exc.code, "msg": exc.message[:512]}, status_code=status)
        self.on_event("livekit_twirp_" + method)
        if json_body:
            return Response(json_format.MessageToJson(result), media_type="application/json")
        return Response(result.SerializeToString(), media_type="application/protobuf")

    # ------------------------------------------------------------------ authorization

    def _video(self, request: Request) -> Mapping[str, Any]:
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise TwirpError("unauthenticated", "missing_token: use Authorization: Bearer <LiveKit token>")
        try:
            claims = verified_claims(raw.strip(), self.keys, now=self.clock())
        except TokenError as exc:
            raise TwirpError("unauthenticated", f"{exc.code}: {exc.message}") from None
        video = claims.get("video")
        return video if isinstance(video, dict) else {}

    def _authorize(self, request: Request, call: _Call) -> None:
        video = self._video(request)
        if video.get(call.grant) is not True:
            raise TwirpError("permission_denied", f"permission_denied: the token lacks the video.{call.grant} grant")
        request.state.video = video

    def _check_room(self, request: Request, call: _Call, message: Message) -> None:
        """A roomAdmin grant is for its room only."""
        if call.grant == "roomAdmin" and request.state.video.get("room") != getattr(message, "room", None):
            raise TwirpError("permission_denied", "permission_denied: the token is an admin of another room")

    # ------------------------------------------------------------------ methods

    def _room(self, name: str) -> Room:
        room = self.manager.rooms.get(name)
        if room is None:
            raise RoomError("room_not_found", f"room {name[:128]!r} does not exist")
        return room

    def _room_info(self, room: Room) -> models.Room:
        media = self.media()
        tracks = media.room_tracks(room.name) if media is not None else []
        return convert.room_info(room, len({t.participant for t in tracks}))

    def _create_room(self, req: lk.CreateRoomRequest) -> Message:
        existing = self.manager.rooms.get(req.name)
        if existing is not None:  # LiveKit's CreateRoom is idempotent: the room as it is
            return self._room_info(existing)
        room = self.manager.create_room(req.name, self.clock(), max_participants=req.max_participants or None)
        return self._room_info(room)

    def _list_rooms(self, req: lk.ListRoomsRequest) -> Message:
        wanted = set(req.names)
        rooms = [r for name, r in self.manager.rooms.items() if not wanted or name in wanted]
        return lk.ListRoomsResponse(rooms=[self._room_info(r) for r in rooms])

    def _delete_room(self, req: lk.DeleteRoomRequest) -> Message:
        self.manager.delete_room(req.room)
        return lk.DeleteRoomResponse()

    def _participants(self, room: Room) -> list[models.ParticipantInfo]:
        media = self.media()
        tracks = media.room_tracks(room.name) if media is not None else []
        return [
            convert.participant_info(p, [t for t in tracks if t.participant == p.identity])
            for p in room.participants.values()
        ]

    def _list_participants(self, req: lk.ListParticipantsRequest) -> Message:
        return lk.ListParticipantsResponse(participants=self._participants(self._room(req.room)))

    def _get_participant(self, req: lk.RoomParticipantIdentity) -> Message:
        found = [p for p in self._participants(self._room(req.room)) if p.identity == req.identity]
        if not found:
            raise RoomError("participant_not_found", f"{req.identity[:128]!r} is not in room {req.room[:128]!r}")
        return found[0]

    def _remove_participant(self, req: lk.RoomParticipantIdentity) -> Message:
        room = self._room(req.room)
        participant = room.participants.get(req.identity)
        expires = participant.token_expires_at if participant is not None else None
        self.manager.remove_participant(room.name, req.identity, self.clock(), expires)
        return lk.RemoveParticipantResponse()

    def _mute(self, req: lk.MuteRoomTrackRequest) -> Message:
        room = self._room(req.room)
        participant = room.participants.get(req.identity)
        media = self.media()
        if participant is None:
            raise RoomError("participant_not_found", f"{req.identity[:128]!r} is not in room {req.room[:128]!r}")
        if media is None or not media.set_muted(room.name, participant.sid, req.track_sid, req.muted):
            raise RoomError("unknown_track", f"{req.identity[:128]!r} publishes no track {req.track_sid[:64]!r}")
        track = next(t for t in media.room_tracks(room.name) if t.sid == req.track_sid)
        return lk.MuteRoomTrackResponse(track=convert.track_info(track))
