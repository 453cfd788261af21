"""``roomcast serve --workers 2``: two worker processes behind one port, rooms placed on both by load, media
forwarded by each, and the refusal without Redis."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.bots import counting_subscriber, publisher, send_video, until
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET
from tests.support.cluster import calm_and_idle
from tests.support.redis_server import RedisServer
from tests.support.server import ServerProcess, free_port

WORKERS = ("w-w0", "w-w1")


@pytest.fixture(scope="module")
def workers(artifacts: Path) -> Iterator[ServerProcess]:
    redis = RedisServer(artifacts)
    server = ServerProcess(
        artifacts, args=["--redis-url", redis.url, "--workers", "2", "--node-id", "w"], ready_timeout=60
    )
    yield server
    code = server.stop()
    redis.stop()
    assert code == 0, server.log()[-3000:]
    assert "Traceback" not in server.log(), server.log()[-5000:]


def nodes(server: ServerProcess) -> dict[str, dict[str, object]]:
    listed = httpx.get(server.base + "/api/nodes", auth=(DEV_KEY, DEV_SECRET), timeout=10).json()["nodes"]
    return {str(n["id"]): n for n in listed}


def forwarded(server: ServerProcess, node: str) -> float:
    text = httpx.get(server.base + "/metrics", params={"node": node}, timeout=10).text
    assert f'roomcast_node_info{{node="{node}"}} 1.0' in text  # this worker's own metrics
    found = re.search(r"^roomcast_media_forwarded_packets_total ([0-9.e+]+)", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_rooms_land_on_both_workers_and_each_forwards(workers: ServerProcess) -> None:
    await until(lambda: set(nodes(workers)) == set(WORKERS), 60, "both workers registering")
    await until(lambda: calm_and_idle(workers.base, (DEV_KEY, DEV_SECRET)), 60, "idle, calm workers")
    before = {node: forwarded(workers, node) for node in WORKERS}
    rooms = ["wk-" + uuid.uuid4().hex[:8] for _ in range(4)]
    calls = []
    for room in rooms:  # one after another: each placement sees the rooms placed before it
        pub_client, publication = await publisher(workers, room)
        sub_client, counts = await counting_subscriber(workers, room, "viewer")
        calls.append((pub_client, publication, sub_client, counts))
    await asyncio.gather(*(send_video(publication, 150, 100.0) for _, publication, _, _ in calls))
    for _, _, _, counts in calls:
        await until(lambda c=counts: sum(c.values()) >= 140, 10, "a viewer receiving its room's video")  # type: ignore[misc]

    listed = httpx.get(workers.base + "/api/rooms", auth=(DEV_KEY, DEV_SECRET), timeout=10).json()["rooms"]
    hosts = {r["name"]: r["node"] for r in listed if r["name"] in rooms}
    assert set(hosts) == set(rooms)
    assert set(hosts.values()) == set(WORKERS), hosts  # both workers host rooms
    for node in WORKERS:  # and both forward: each worker's own counter grew by its rooms' packets
        rooms_here = sum(1 for h in hosts.values() if h == node)
        assert forwarded(workers, node) - before[node] >= 140 * rooms_here
    for pub_client, _, sub_client, _ in calls:
        await pub_client.close()
        await sub_client.close()


async def test_a_killed_worker_is_started_again_and_the_other_keeps_serving(workers: ServerProcess) -> None:
    await until(lambda: set(nodes(workers)) == set(WORKERS), 60, "both workers registering")
    started = {n: info["started_at"] for n, info in nodes(workers).items()}
    children = child_pids(workers)
    assert len(children) == 2
    os.kill(children[0], signal.SIGKILL)
    await until(lambda: len(set(child_pids(workers)) - set(children)) == 1, 10, "a new worker process")

    def restarted() -> int:
        return sum(1 for n, info in nodes(workers).items() if info["started_at"] != started[n])

    await until(lambda: restarted() == 1, 60, "the new worker's registry entry")  # the other one was untouched
    assert httpx.get(workers.base + "/healthz", timeout=10).status_code == 200


def child_pids(server: ServerProcess) -> list[int]:
    """The supervisor's live children (a killed one may linger as a zombie until reaped)."""
    pids = []
    for pid in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z":
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_workers_without_redis_are_refused_with_a_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roomcast", "serve", "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--workers N needs --redis-url" in done.stderr


def test_an_unreachable_redis_stops_the_start_with_where() -> None:
    port = free_port()  # nothing listens there
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "roomcast",
            "serve",
            "--port",
            "0",
            "--redis-url",
            f"redis://:s3cret@127.0.0.1:{port}/0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in done.stderr
    assert "s3cret" not in done.stderr  # the password is not printed
