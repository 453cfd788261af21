"""``WS /rtc`` against a real ``roomcast serve`` process: the happy path and every kind of bad input."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.signaling.wsclient import Client, create_room, dev_token
from tests.support.server import ServerProcess


def room() -> str:
    return "t-" + uuid.uuid4().hex[:10]


async def test_two_participants_relay_negotiation_and_data(server: ServerProcess) -> None:
    r = room()
    create_room(server.base, r, mode="p2p")  # SFU rooms (the default) refuse relays: test_signal_relay.py
    alice, joined_a = await Client.joined(server.ws_base, r, "alice")
    assert joined_a["participants"] == [] and joined_a["participant"]["identity"] == "alice"
    bob, joined_b = await Client.joined(server.ws_base, r, "bob")
    assert [p["identity"] for p in joined_b["participants"]] == ["alice"]
    assert (await alice.recv())["participant"]["identity"] == "bob"

    await alice.send({"type": "offer", "sdp": "v=0\r\n"})
    assert await bob.recv() == {"type": "offer", "v": 1, "sdp": "v=0\r\n", "from": "alice"}
    await bob.send({"type": "answer", "sdp": "v=0\r\n", "to": "alice"})
    assert (await alice.recv())["from"] == "bob"
    await bob.send({"type": "ice_candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdp_mid": "0"})
    cand = await alice.recv()
    assert cand["type"] == "ice_candidate" and cand["sdp_mid"] == "0" and cand["from"] == "bob"

    await alice.send({"type": "data", "payload": "hello", "topic": "chat"})
    data = await bob.recv()
    assert (data["payload"], data["from"], data["topic"]) == ("hello", "alice", "chat")

    await bob.send({"type": "leave"})
    left = await alice.recv()
    assert left == {"type": "participant_left", "v": 1, "identity": "bob", "reason": "left"}
    assert (await bob.closed())[0] == 1000
    await alice.close()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{nope", "invalid_json"),
        ('{"type": "teleport", "v": 1}', "unknown_type"),
        ('{"type": "offer", "v": 1}', "invalid_message"),
        ('{"type": "ping", "v": 9}', "unsupported_version"),
        ('{"type": "offer", "v": 1, "sdp": "v=0", "to": "nobody"}', "wrong_mode"),  # an SFU room: no relays
    ],
)
async def test_bad_messages_get_typed_errors_and_socket_survives(server: ServerProcess, raw: str, code: str) -> None:
    client, _ = await Client.joined(server.ws_base, room(), "alice")
    await client.send_raw(raw)
    err = await client.recv()
    assert err["type"] == "error" and err["code"] == code and not err["fatal"]
    await client.send({"type": "ping", "ts": 1.5})
    assert (await client.recv())["type"] == "pong"
    await client.close()


async def test_oversized_frame_is_refused_with_1009(server: ServerProcess) -> None:
    client, _ = await Client.joined(server.ws_base, room(), "alice")
    await client.send_raw('{"type": "data", "v": 1, "payload": "' + "x" * 100_000 + '"}')
    err = await client.recv()
    assert (err["code"], err["fatal"]) == ("message_too_large", True)
    assert (await client.closed())[0] == 1009


async def test_deep_nesting_is_refused_with_1008(server: ServerProcess) -> None:
    client, _ = await Client.joined(server.ws_base, room(), "alice")
    await client.send_raw("[" * 5000 + "]" * 5000)
    assert (await client.recv())["code"] == "too_deep"
    assert (await client.closed())[0] == 1008


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda r: "", "missing_token"),
        (lambda r: dev_token(r, "alice", now=time.time() - 7 * 3600), "token_expired"),
        (lambda r: dev_token(r, "alice", secret="not-the-server-secret"), "invalid_signature"),
        (lambda r: "garbage.garbage.garbage", "invalid_token"),
    ],
)
async def test_bad_tokens_are_refused_with_reason(server: ServerProcess, make_token, code: str) -> None:  # type: ignore[no-untyped-def]
    client = await Client.open(server.ws_base, make_token(room()))
    err = await client.recv()
    assert (err["type"], err["code"], err["fatal"]) == ("error", code, True)
    assert await client.closed() == (1008, code)


async def test_token_for_another_room_is_refused(server: ServerProcess) -> None:
    client = await Client.open(server.ws_base, dev_token("room-a", "alice"))
    await client.send({"type": "join", "room": "room-b"})
    err = await client.recv()
    assert (err["code"], err["fatal"]) == ("wrong_room", True)
    assert (await client.closed())[0] == 1008


async def test_full_room_refuses_the_next_participant(server: ServerProcess) -> None:
    r = room()
    res = httpx.post(server.base + "/api/rooms", json={"name": r, "max_participants": 2}, auth=("devkey", "devsecret"))
    assert res.status_code == 201, res.text
    a, _ = await Client.joined(server.ws_base, r, "a")
    b, _ = await Client.joined(server.ws_base, r, "b")
    c = await Client.open(server.ws_base, dev_token(r, "c"))
    await c.send({"type": "join"})
    err = await c.recv()
    assert (err["code"], err["fatal"]) == ("room_full", True)
    assert (await c.closed())[0] == 1008
    await b.send({"type": "data", "payload": "still here"})
    assert (await a.recv_type("data"))["payload"] == "still here"
    await a.close()
    await b.close()


async def test_messages_before_join_are_refused(server: ServerProcess) -> None:
    client = await Client.open(server.ws_base, dev_token(room(), "alice"))
    await client.send({"type": "offer", "sdp": "v=0"})
    assert (await client.recv())["code"] == "not_joined"
    await client.close()


async def test_subscriber_only_token_cannot_send_tracks(server: ServerProcess) -> None:
    r = room()
    create_room(server.base, r, mode="p2p")
    viewer, _ = await Client.joined(server.ws_base, r, "viewer", can_publish=False, can_publish_data=False)
    host, _ = await Client.joined(server.ws_base, r, "host")
    await viewer.send({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP 96\r\na=msid:s t\r\n"})
    assert (await viewer.recv_type("error"))["code"] == "permission_denied"
    await viewer.send({"type": "data", "payload": "spam"})
    assert (await viewer.recv_type("error"))["code"] == "permission_denied"
    await viewer.close()
    await host.close()


async def test_flood_is_rate_limited_and_other_rooms_unaffected(server: ServerProcess) -> None:
    canary_a, _ = await Client.joined(server.ws_base, room(), "a")
    flooder, _ = await Client.joined(server.ws_base, room(), "flood")
    for _ in range(400):
        await flooder.send_raw('{"type": "ping", "v": 1}')
    codes = []
    try:
        while True:
            msg = await flooder.recv()
            if msg["type"] == "error":
                codes.append(msg["code"])
    except Exception:
        pass
    assert "rate_limited" in codes
    assert flooder.ws.close_code == 1008
    await canary_a.send({"type": "ping", "ts": 1})
    assert (await canary_a.recv())["type"] == "pong"
    await canary_a.close()
    metrics = httpx.get(server.base + "/metrics").text
    assert 'roomcast_signaling_events_total{event="rate_limited"}' in metrics


async def test_kicked_participant_is_told_and_cannot_reuse_its_token(server: ServerProcess) -> None:
    r = room()
    token = dev_token(r, "mallory")
    mallory = await Client.open(server.ws_base, token)
    await mallory.send({"type": "join"})
    await mallory.recv_type("joined")
    res = httpx.delete(f"{server.base}/api/rooms/{r}/participants/mallory", auth=("devkey", "devsecret"))
    assert res.status_code == 204
    err = await mallory.recv_type("error")
    assert (err["code"], err["fatal"]) == ("removed", True)
    again = await Client.open(server.ws_base, token)
    await again.send({"type": "join"})
    assert (await again.recv())["code"] == "token_revoked"


async def test_server_survived_everything(server: ServerProcess) -> None:
    await asyncio.sleep(0)
    assert server.alive()
    assert httpx.get(server.base + "/healthz").json()["status"] == "ok"
