"""``livekit-api``'s RoomService client against Roomcast's Twirp endpoint: rooms, participants, removal, errors."""

from __future__ import annotations

import uuid

import httpx
import pytest
import websockets
from livekit import api
from livekit.protocol import models, rtc

from tests.livekit_adapter.test_signal_errors import receive, url
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET
from tests.support.livekit_page import livekit_token
from tests.support.server import ServerProcess


async def test_rooms_and_participants_are_managed_through_twirp(server: ServerProcess) -> None:
    r = "twirp-" + uuid.uuid4().hex[:8]
    lkapi = api.LiveKitAPI(server.base, DEV_KEY, DEV_SECRET)
    try:
        created = await lkapi.room.create_room(api.CreateRoomRequest(name=r, max_participants=5))
        assert created.name == r and created.max_participants == 5 and created.sid.startswith("RM_")
        again = await lkapi.room.create_room(api.CreateRoomRequest(name=r))  # idempotent, as LiveKit's
        assert again.sid == created.sid
        ws = await websockets.connect(url(server, livekit_token(r, "mallory")))
        assert (await receive(ws)).join.room.sid == created.sid
        rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[r]))
        assert [(x.name, x.num_participants) for x in rooms.rooms] == [(r, 1)]
        people = await lkapi.room.list_participants(api.ListParticipantsRequest(room=r))
        assert [p.identity for p in people.participants] == ["mallory"]
        with pytest.raises(api.TwirpError) as missing:
            await lkapi.room.mute_published_track(
                api.MuteRoomTrackRequest(room=r, identity="mallory", track_sid="TR_none", muted=True)
            )
        assert missing.value.code == "not_found" and missing.value.status == 404
        await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=r, identity="mallory"))
        leave = await receive(ws)  # the removed LiveKit client is told why
        assert leave.leave.reason == models.DisconnectReason.PARTICIPANT_REMOVED
        assert leave.leave.action == rtc.LeaveRequest.Action.DISCONNECT
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=r))
        assert (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[r]))).rooms == []
        with pytest.raises(api.TwirpError) as gone:
            await lkapi.room.list_participants(api.ListParticipantsRequest(room=r))
        assert gone.value.code == "not_found" and "room_not_found" in gone.value.message
    finally:
        await lkapi.aclose()


def twirp(server: ServerProcess, method: str, token: str, body: bytes = b"", kind: str = "application/protobuf"):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": kind}
    return httpx.post(f"{server.base}/twirp/livekit.RoomService/{method}", headers=headers, content=body)


def service_token(secret: str = DEV_SECRET, **grants: object) -> str:
    return api.AccessToken(DEV_KEY, secret).with_grants(api.VideoGrants(**grants)).to_jwt()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "token", "body", "status", "code"),
    [
        ("ListRooms", service_token(secret="not-the-secret", room_list=True), b"", 401, "unauthenticated"),
        ("ListRooms", service_token(room_create=True), b"", 403, "permission_denied"),
        ("ListParticipants", service_token(room_admin=True, room="a"), b"\x0a\x01b", 403, "permission_denied"),
        ("ListRooms", service_token(room_list=True), b"\x0a\xff\xff", 400, "malformed"),
        ("Nonsense", service_token(room_list=True), b"", 404, "bad_route"),
        ("SendData", service_token(room_admin=True, room="a"), b"", 404, "bad_route"),
    ],
)
def test_twirp_errors(server: ServerProcess, method: str, token: str, body: bytes, status: int, code: str) -> None:
    reply = twirp(server, method, token, body)
    assert reply.status_code == status and reply.json()["code"] == code, reply.text


def test_json_bodies_are_accepted_too(server: ServerProcess) -> None:
    r = "twirp-json-" + uuid.uuid4().hex[:8]
    created = twirp(
        server, "CreateRoom", service_token(room_create=True), b'{"name": "%s"}' % r.encode(), "application/json"
    )
    assert created.status_code == 200 and created.json()["name"] == r
    body = b'{"names": ["%s"]}' % r.encode()
    listed = twirp(server, "ListRooms", service_token(room_list=True), body, "application/json")
    assert [room["name"] for room in listed.json()["rooms"]] == [r]
    assert "Traceback" not in server.log()
