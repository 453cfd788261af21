"""Two ``roomcast serve`` nodes on one real ``redis-server``: a room lives on one node, a socket that lands
on the other is relayed there; the admin API of either node sees the whole cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.signaling.wsclient import DEV_KEY, DEV_SECRET, Client
from tests.support.redis_server import RedisServer
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def two_nodes(artifacts: Path) -> Iterator[tuple[RedisServer, ServerProcess, ServerProcess]]:
    redis = RedisServer(artifacts)
    nodes = [
        ServerProcess(artifacts, args=["--redis-url", redis.url, "--node-id", name]) for name in ("node-1", "node-2")
    ]
    yield redis, nodes[0], nodes[1]
    for node in nodes:
        assert node.stop() == 0, node.log()[-3000:]
        assert "Traceback" not in node.log(), node.log()[-5000:]
    redis.stop()


def room() -> str:
    return "x-" + uuid.uuid4().hex[:10]


def api(node: ServerProcess, path: str) -> httpx.Response:
    return httpx.get(node.base + path, auth=(DEV_KEY, DEV_SECRET), timeout=10)


async def test_participants_on_different_nodes_share_one_room(two_nodes) -> None:  # type: ignore[no-untyped-def]
    _, one, two = two_nodes
    r = room()
    alice, joined_a = await Client.joined(one.ws_base, r, "alice")
    bob, joined_b = await Client.joined(two.ws_base, r, "bob")
    assert joined_b["room"] == r and joined_b["sid"] == joined_a["sid"]  # the same room, not a twin
    assert [p["identity"] for p in joined_b["participants"]] == ["alice"]
    assert (await alice.recv_type("participant_joined"))["participant"]["identity"] == "bob"
    await bob.send({"type": "data", "payload": "over the relay", "topic": "chat"})
    data = await alice.recv_type("data")
    assert (data["payload"], data["from"]) == ("over the relay", "bob")
    await alice.send({"type": "data", "payload": "and back"})
    assert (await bob.recv_type("data"))["payload"] == "and back"
    await bob.send({"type": "ping", "ts": 1.0})
    assert (await bob.recv_type("pong"))["ts"] == 1.0

    await bob.send({"type": "leave"})
    assert (await alice.recv_type("participant_left"))["identity"] == "bob"
    await alice.close()
    await bob.close()
