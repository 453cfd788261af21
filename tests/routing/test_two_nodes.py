"""Two ``roomcast serve`` nodes on one real ``redis-server``: a room lives on one node, a socket that lands
on the other is relayed there; the admin API of either node sees the whole cluster."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.faults.bots import metric
from tests.livekit_adapter.test_signal_errors import receive as lk_receive
from tests.livekit_adapter.test_signal_errors import url as lk_url
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET, Client
from tests.support.cluster import ClusterProcesses, calm_and_idle
from tests.support.livekit_page import livekit_token
from tests.support.redis_server import RedisServer
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def two_nodes(artifacts: Path) -> Iterator[tuple[RedisServer, ServerProcess, ServerProcess]]:
    cluster = ClusterProcesses(artifacts)
    yield cluster.redis, cluster.nodes[0], cluster.nodes[1]
    assert not cluster.stop()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


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

    for node in (one, two):  # either node's admin API lists both, whichever node hosts the room
        people = api(node, f"/api/rooms/{r}/participants")
        assert people.status_code == 200, people.text
        assert sorted(p["identity"] for p in people.json()["participants"]) == ["alice", "bob"]
        listed = {x["name"]: x for x in api(node, "/api/rooms").json()["rooms"]}
        assert listed[r]["num_participants"] == 2
        nodes = api(node, "/api/nodes").json()
        assert {n["id"] for n in nodes["nodes"]} == {"node-1", "node-2"}
    host = listed[r]["node"]
    assert host in ("node-1", "node-2")

    async def host_reports_two() -> bool:
        found = {n["id"]: n for n in api(one, "/api/nodes").json()["nodes"]}
        return r in found[host]["rooms"] and found[host]["load"]["participants"] == 2

    await until(host_reports_two)

    other = two if host == "node-1" else one  # a kick through the node that does not host the room
    kicked = httpx.delete(f"{other.base}/api/rooms/{r}/participants/bob", auth=(DEV_KEY, DEV_SECRET), timeout=10)
    assert kicked.status_code == 204, kicked.text
    assert (await bob.recv_type("error"))["code"] == "removed"
    assert (await alice.recv_type("participant_left"))["identity"] == "bob"
    assert (await bob.closed())[0] == 1000  # the host's close code crossed the relay
    await alice.send({"type": "leave"})
    await alice.close()

    async def room_gone() -> bool:
        return r not in [x["name"] for x in api(one, "/api/rooms").json()["rooms"]]

    await until(room_gone)


async def test_rooms_created_through_the_api_are_placed_by_load_and_answer_from_any_node(two_nodes) -> None:  # type: ignore[no-untyped-def]
    _, one, two = two_nodes

    async def idle() -> bool:  # the previous test's participants gone, no loop stalled right now
        return calm_and_idle(one.base, (DEV_KEY, DEV_SECRET))

    await until(idle, 60)
    names = [room() for _ in range(6)]
    for name in names:
        made = httpx.post(f"{one.base}/api/rooms", json={"name": name}, auth=(DEV_KEY, DEV_SECRET), timeout=10)
        assert made.status_code == 201, made.text
    listed = {x["name"]: x["node"] for x in api(two, "/api/rooms").json()["rooms"] if x["name"] in names}
    assert set(listed) == set(names)
    assert set(listed.values()) == {"node-1", "node-2"}  # empty nodes: each new room goes to the emptier one
    again = httpx.post(f"{two.base}/api/rooms", json={"name": names[0]}, auth=(DEV_KEY, DEV_SECRET), timeout=10)
    assert again.status_code == 409  # the room's node says it exists, whichever node was asked
    bad = httpx.get(f"{two.base}/api/rooms/{names[1]}", auth=("devkey", "wrong"), timeout=10)
    assert bad.status_code == 401  # credentials are checked (by the node that answers)
    for name in names:
        assert httpx.delete(f"{two.base}/api/rooms/{name}", auth=(DEV_KEY, DEV_SECRET), timeout=10).status_code == 204
    assert httpx.get(f"{one.base}/api/rooms/{names[2]}", auth=(DEV_KEY, DEV_SECRET), timeout=10).status_code == 404


def test_metrics_of_any_node_through_any_node(two_nodes) -> None:  # type: ignore[no-untyped-def]
    _, one, _two = two_nodes
    own = httpx.get(f"{one.base}/metrics", timeout=10).text
    other = httpx.get(f"{one.base}/metrics", params={"node": "node-2"}, timeout=10).text
    assert 'roomcast_node_info{node="node-1"} 1.0' in own
    assert 'roomcast_node_info{node="node-2"} 1.0' in other


def test_load_tool_drives_every_node_of_a_cluster(two_nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, one, two = two_nodes

    def relayed() -> float:
        return sum(
            metric(node, r'^roomcast_signaling_events_total\{event="relayed_out"\} ([0-9.e+]+)') for node in (one, two)
        )

    before = relayed()
    args = ["--url", one.base, "--url", two.base, "--rooms", "2", "--subscribers", "3", "--duration", "3"]
    done = subprocess.run(
        [sys.executable, "-m", "roomcast", "load", *args, "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "report.json").read_text())["summary"]
    assert summary["join_success_rate"] == 1.0
    assert summary["forwarded_pps_mean"] > 0  # the cluster's sum (each node's /metrics?node=)
    assert relayed() - before >= 2  # bots joined through both nodes: those reaching the other node were relayed


async def test_a_livekit_client_on_the_other_node_joins_the_room_where_it_runs(two_nodes) -> None:  # type: ignore[no-untyped-def]
    _, one, two = two_nodes
    r = room()
    alice, _ = await Client.joined(one.ws_base, r, "alice")  # the room is placed on node-1 (the join's node)
    host = {x["name"]: x["node"] for x in api(two, "/api/rooms").json()["rooms"]}[r]
    far = two if host == "node-1" else one
    lk = await websockets.connect(lk_url(far, livekit_token(r, "lk-bob")), max_size=2**22)  # protobuf, relayed
    first = await lk_receive(lk)
    assert first.WhichOneof("message") == "join"
    assert [p.identity for p in first.join.other_participants] == ["alice"]  # the same room, not a twin
    assert (await alice.recv_type("participant_joined"))["participant"]["identity"] == "lk-bob"
    people = api(far, f"/api/rooms/{r}/participants").json()["participants"]
    assert sorted(p["identity"] for p in people) == ["alice", "lk-bob"]
    await lk.close()
    assert (await alice.recv_type("participant_left"))["identity"] == "lk-bob"
    bad = await asyncio.wait_for(
        _refused(lk_url(far, livekit_token(r, "eve", secret="wrong-secret-0123456789abcdef"))), 10
    )
    assert bad == 403  # a refused token gets no socket on the relaying node either
    await alice.close()


async def _refused(url: str) -> int:
    try:
        await websockets.connect(url)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    return 101
