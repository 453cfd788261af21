"""Bad input on LiveKit's signal path (docs/RELIABILITY B14): clear reasons, no crash, the next client is fine."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from livekit.protocol import models, rtc

from tests.support.livekit_page import livekit_token
from tests.support.server import ServerProcess


def join_param(request: rtc.JoinRequest | None = None) -> str:
    wrapped = rtc.WrappedJoinRequest(join_request=(request or rtc.JoinRequest()).SerializeToString())
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("=")


def url(server: ServerProcess, token: str, *, join: str | None = None, path: str = "/rtc/v1") -> str:
    return f"{server.ws_base}{path}?access_token={token}&join_request={join if join is not None else join_param()}"


async def receive(ws: websockets.ClientConnection) -> rtc.SignalResponse:
    response = rtc.SignalResponse()
    response.ParseFromString(await ws.recv())
    return response


async def joined(server: ServerProcess, identity: str = "mallory") -> websockets.ClientConnection:
    ws = await websockets.connect(url(server, livekit_token("lk-" + uuid.uuid4().hex[:8], identity)), max_size=2**22)
    first = await receive(ws)
    assert first.WhichOneof("message") == "join" and first.join.participant.identity == identity
    return ws


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (livekit_token("r1", "eve", secret="not-the-server-secret"), "invalid_signature"),
        (livekit_token("r1", "eve", ttl=-60), "token_expired"),
        ("garbage", "invalid_token"),
    ],
)
async def test_refused_tokens_get_no_socket_and_validate_says_why(server: ServerProcess, token: str, code: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url(server, token))
    assert refused.value.response.status_code == 403
    reply = httpx.get(f"{server.base}/rtc/v1/validate", params={"access_token": token, "join_request": join_param()})
    assert reply.status_code == 401 and reply.text.startswith(code + ":")
    assert reply.headers["access-control-allow-origin"] == "*"


async def test_validate_accepts_a_good_token_and_refuses_a_bad_join_request(server: ServerProcess) -> None:
    token = livekit_token("r1", "eve")
    ok = httpx.get(f"{server.base}/rtc/v1/validate", params={"access_token": token, "join_request": join_param()})
    assert ok.status_code == 200
    bad = httpx.get(f"{server.base}/rtc/v1/validate", params={"access_token": token, "join_request": "!!!"})
    assert bad.status_code == 400 and bad.text.startswith("invalid_message:")


async def test_malformed_protobuf_gets_a_leave_and_a_policy_close(server: ServerProcess) -> None:
    ws = await joined(server)
    await ws.send(b"\x0a\xff\xff\xff\xff\x0f")  # field 1, a length running far past the frame
    leave = await receive(ws)
    assert leave.WhichOneof("message") == "leave" and leave.leave.action == rtc.LeaveRequest.Action.DISCONNECT
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1008 and ws.close_reason == "invalid_message"


async def test_oversized_frame_closes_with_1009(server: ServerProcess) -> None:
    ws = await joined(server)
    await ws.send(rtc.SignalRequest(offer=rtc.SessionDescription(type="offer", sdp="x" * 300_000)).SerializeToString())
    assert (await receive(ws)).WhichOneof("message") == "leave"
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1009 and ws.close_reason == "message_too_large"


async def test_text_frames_are_refused(server: ServerProcess) -> None:
    ws = await joined(server)
    await ws.send('{"offer": {}}')
    assert (await receive(ws)).WhichOneof("message") == "leave"
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1008


async def test_unknown_and_unsupported_requests_get_a_typed_answer_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    ws = await joined(server)
    await ws.send(b"")  # an empty SignalRequest: no message set (also what an unknown field number decodes to)
    unknown = await receive(ws)
    assert unknown.request_response.reason == rtc.RequestResponse.Reason.UNSUPPORTED_TYPE
    assert unknown.request_response.message.startswith("unknown_message:")
    await ws.send(rtc.SignalRequest(simulate=rtc.SimulateScenario(node_failure=True)).SerializeToString())
    unsupported = await receive(ws)
    assert unsupported.request_response.message.startswith("unsupported_request:")
    metadata = rtc.UpdateParticipantMetadata(metadata="x", request_id=41)
    await ws.send(rtc.SignalRequest(update_metadata=metadata).SerializeToString())
    refused_update = await receive(ws)  # the id lets the client reject that update's promise
    assert refused_update.request_response.request_id == 41
    assert refused_update.request_response.reason == rtc.RequestResponse.Reason.UNSUPPORTED_TYPE
    await ws.send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=1234)).SerializeToString())
    pong = await receive(ws)
    assert pong.pong_resp.last_ping_timestamp == 1234 and pong.pong_resp.timestamp > 0
    await ws.send(
        rtc.SignalRequest(offer=rtc.SessionDescription(type="offer", sdp="v=0 nonsense", id=7)).SerializeToString()
    )
    refused = await receive(ws)
    assert refused.request_response.request_id == 7 and refused.request_response.message.startswith("invalid_sdp:")
    await ws.send(rtc.SignalRequest(leave=rtc.LeaveRequest()).SerializeToString())
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1000
    assert httpx.get(f"{server.base}/healthz").status_code == 200
    assert "Traceback" not in server.log()


async def test_a_publish_without_the_grant_is_refused(server: ServerProcess) -> None:
    token = livekit_token("lk-" + uuid.uuid4().hex[:8], "viewer", can_publish=False)
    ws = await websockets.connect(url(server, token))
    assert (await receive(ws)).join.participant.permission.can_publish is False
    add = rtc.AddTrackRequest(cid="cam", name="camera", type=models.TrackType.VIDEO, source=models.TrackSource.CAMERA)
    await ws.send(rtc.SignalRequest(add_track=add).SerializeToString())
    refused = await receive(ws)
    assert refused.request_response.reason == rtc.RequestResponse.Reason.NOT_ALLOWED
    assert refused.request_response.message.startswith("permission_denied:")
    await ws.close()


async def test_the_dual_peer_connection_path_is_refused_with_a_reason(server: ServerProcess) -> None:
    token = livekit_token("r1", "old")
    ws = await websockets.connect(f"{server.ws_base}/rtc?access_token={token}&sdk=js&protocol=16&auto_subscribe=1")
    leave = await receive(ws)
    assert leave.leave.reason == models.DisconnectReason.JOIN_FAILURE
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1008 and "singlePeerConnection" in (ws.close_reason or "")


async def test_a_resume_asks_for_a_full_reconnect(server: ServerProcess) -> None:
    ws = await websockets.connect(
        url(server, livekit_token("r1", "back"), join=join_param(rtc.JoinRequest(reconnect=True)))
    )
    leave = await receive(ws)
    assert leave.leave.action == rtc.LeaveRequest.Action.RECONNECT and leave.leave.can_reconnect


async def test_a_flood_is_dropped_then_closed_and_a_huge_offer_refused(server: ServerProcess) -> None:
    ws = await joined(server)
    big = rtc.SessionDescription(type="offer", sdp="v=0\r\n" + "a=x\r\n" * 15_000, id=3)
    await ws.send(rtc.SignalRequest(offer=big).SerializeToString())
    refused = await receive(ws)
    assert refused.request_response.request_id == 3 and refused.request_response.message.startswith("sdp_too_large:")
    ping = rtc.SignalRequest(ping_req=rtc.Ping(timestamp=1)).SerializeToString()
    for _ in range(300):  # far over the burst: the budget (rooms/rate.py) drops, tells, then closes
        await ws.send(ping)
    seen: list[str] = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            response = await receive(ws)
            kind = response.WhichOneof("message") or ""
            seen.append(response.request_response.message.split(":")[0] if kind == "request_response" else kind)
    assert "pong_resp" in seen and "rate_limited" in seen and seen[-1] == "leave"
    assert ws.close_code == 1008 and ws.close_reason == "rate_limited"


async def test_over_the_per_address_limit_a_livekit_client_reads_a_leave(artifacts: Path) -> None:
    limited = ServerProcess(artifacts, env={"ROOMCAST_MAX_CONNECTIONS_PER_IP": "1"})
    try:
        first = await joined(limited)
        second = await websockets.connect(url(limited, livekit_token("r1", "second")))
        leave = await receive(second)  # a LeaveRequest, not a JSON error a LiveKit client cannot read
        assert leave.leave.reason == models.DisconnectReason.JOIN_FAILURE
        with pytest.raises(websockets.ConnectionClosed):
            await second.recv()
        assert second.close_code == 1008 and second.close_reason == "too_many_connections"
        await first.close()
    finally:
        assert limited.stop() == 0
