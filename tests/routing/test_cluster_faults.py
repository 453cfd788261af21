"""Cluster faults with real processes (docs/faults.md F9, F11): Redis restarted under a live call, a node
drained by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from pathlib import Path

import httpx

from tests.faults.bots import counting_subscriber, publisher, until
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET, Client
from tests.support.cluster import ClusterProcesses
from tests.support.server import ServerProcess


def nodes(node: ServerProcess) -> dict[str, dict[str, object]]:
    try:
        listed = httpx.get(node.base + "/api/nodes", auth=(DEV_KEY, DEV_SECRET), timeout=5).json()["nodes"]
    except (httpx.HTTPError, KeyError, ValueError):
        return {}
    return {str(n["id"]): n for n in listed}


async def join_within(
    node: ServerProcess, room: str, identity: str, timeout: float
) -> tuple[Client, dict[str, object]]:
    """Join, trying again while the cluster refuses (``routing_unavailable``) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.joined(node.ws_base, room, identity)
        except Exception:  # refused (routing_unavailable, 1013) or closed while the cluster settles
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # polling a join with a deadline


async def test_redis_restart_under_a_live_call(artifacts: Path) -> None:
    cluster = ClusterProcesses(artifacts)
    try:
        one, two = cluster.nodes
        await until(lambda: set(nodes(one)) == {"node-1", "node-2"}, 20, "both nodes registering")
        r = "live-" + uuid.uuid4().hex[:8]
        watcher, joined = await Client.joined(one.ws_base, r, "watcher")  # the room is placed on node-1
        pub_client, publication = await publisher(two, r)  # its signaling relayed by node-2
        sub_client, counts = await counting_subscriber(two, r, "viewer")

        async def stream() -> None:
            n = 0
            while True:
                publication.send("video", bytes([n % 256]) * 800, n * 3000, marker=True)
                n += 1
                await asyncio.sleep(0.02)  # a 50 packet/s media source

        sender = asyncio.create_task(stream())
        try:
            await until(lambda: sum(counts.values()) >= 50, 10, "video reaching the viewer")
            cluster.redis.stop()
            during = sum(counts.values())
            await until(lambda: sum(counts.values()) >= during + 100, 10, "video flowing while Redis is down")
            cluster.redis.start()
            back = time.monotonic()
            after = sum(counts.values())
            await until(lambda: sum(counts.values()) >= after + 100, 10, "video flowing after Redis is back")

            # new joins work within 10 s of Redis coming back, and the live room is found where it runs
            late, late_joined = await join_within(two, r, "late", 10.0)
            fresh, _ = await join_within(two, "new-" + uuid.uuid4().hex[:8], "first", 10.0 - (time.monotonic() - back))
            assert time.monotonic() - back < 10.0
            assert late_joined["sid"] == joined["sid"]  # the same room: it was not lost or duplicated
            assert {"watcher", "camera", "viewer"} <= {p["identity"] for p in late_joined["participants"]}  # type: ignore[union-attr, index]
            while (await watcher.recv_type("participant_joined"))["participant"]["identity"] != "late":
                pass  # camera and viewer joined earlier
            await until(lambda: set(nodes(two)) == {"node-1", "node-2"}, 10, "both nodes in the new Redis")
            for client in (late, fresh, watcher):
                await client.close()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await pub_client.close()
            await sub_client.close()
    finally:
        assert not cluster.stop()


async def test_a_draining_node_keeps_its_room_and_new_rooms_go_elsewhere(artifacts: Path) -> None:
    cluster = ClusterProcesses(artifacts, args=["--drain-timeout", "30"])
    by_id = dict(zip(("node-1", "node-2"), cluster.nodes, strict=True))
    try:
        await until(lambda: set(nodes(by_id["node-2"])) == set(by_id), 30, "both nodes registering")
        r = "kept-" + uuid.uuid4().hex[:8]
        alice, joined = await Client.joined(by_id["node-1"].ws_base, r, "alice")
        host = rooms(by_id["node-1"])[r]
        other = next(n for n in by_id if n != host)
        by_id[host].proc.send_signal(signal.SIGTERM)
        await until(lambda: bool(nodes(by_id[other]).get(host, {}).get("draining")), 10, "the host draining")
        assert (await alice.recv_type("server_shutdown"))["grace"] == 30
        fresh = ["new-" + uuid.uuid4().hex[:8] for _ in range(6)]
        for name in fresh:
            made = httpx.post(f"{by_id[other].base}/api/rooms", json={"name": name}, auth=(DEV_KEY, DEV_SECRET))
            assert made.status_code == 201, made.text
        placed = rooms(by_id[other])
        # without the drain, the host (1 participant + 1 room: score 1.5) would have had some of the six (0.5
        # per room on the other node)
        assert [placed[name] for name in fresh] == [other] * 6
        assert placed[r] == host  # the draining node's room keeps running there
        bob, bob_joined = await Client.joined(by_id[other].ws_base, r, "bob")  # and still takes participants
        assert bob_joined["sid"] == joined["sid"]
        for client in (alice, bob):
            await client.send({"type": "leave"})
            await client.close()
        await until(lambda: by_id[host].proc.poll() is not None, 30, "the host exiting once its sockets are gone")
        assert by_id[host].proc.returncode == 0
    finally:
        assert not cluster.stop()


def rooms(node: ServerProcess) -> dict[str, str]:
    listed = httpx.get(f"{node.base}/api/rooms", auth=(DEV_KEY, DEV_SECRET), timeout=10).json()["rooms"]
    return {str(x["name"]): str(x["node"]) for x in listed}
