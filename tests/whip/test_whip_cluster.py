"""WHIP in a cluster: a POST to a node that does not host the room is carried to the room's node (the answer,
and so the media, is that node's), PATCH/DELETE follow it there, and the per-client POST budget still sees
the real client's address."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import ClusterProcesses
from tests.support.server import ServerProcess
from tests.whip.conftest import AUTH, ffmpeg_publisher, mint

OFFER = (Path(__file__).parent / "fixtures" / "ffmpeg_offer.sdp").read_text().replace("\n", "\r\n")


@pytest.fixture(scope="module")
def cluster(artifacts: Path) -> Iterator[ClusterProcesses]:
    """Two nodes on one redis-server; a WHIP budget of 1 POST/s (burst 2) per client (the nodes inherit it)."""
    os.environ["ROOMCAST_WHIP_POSTS_PER_SECOND"] = "1"
    try:
        processes = ClusterProcesses(artifacts)
    finally:
        del os.environ["ROOMCAST_WHIP_POSTS_PER_SECOND"]
    yield processes
    assert not processes.stop()


def nodes_of(cluster: ClusterProcesses, room: str) -> tuple[ServerProcess, ServerProcess]:
    """(the node hosting ``room``, the other one), from the cluster-wide room list."""
    listed = httpx.get(f"{cluster.nodes[0].base}/api/rooms", auth=AUTH).json()["rooms"]
    node_id = next(r["node"] for r in listed if r["name"] == room)
    host = cluster.nodes[0] if node_id == "node-1" else cluster.nodes[1]
    return host, cluster.nodes[1] if host is cluster.nodes[0] else cluster.nodes[0]


def participants(node: ServerProcess, room: str) -> list[str]:
    res = httpx.get(f"{node.base}/api/rooms/{room}/participants", auth=AUTH)
    return sorted(p["identity"] for p in res.json()["participants"])


def test_whip_through_the_other_node(cluster: ClusterProcesses, artifacts: Path) -> None:
    room = "cw-" + uuid.uuid4().hex[:6]
    assert httpx.post(f"{cluster.nodes[0].base}/api/rooms", json={"name": room}, auth=AUTH).status_code in (200, 201)
    host, other = nodes_of(cluster, room)
    token = mint(other, room, "enc")
    headers = {"content-type": "application/sdp", "authorization": f"Bearer {token}"}
    res = httpx.post(f"{other.base}/whip/{room}", content=OFFER, headers=headers)
    assert res.status_code == 201, res.text
    assert f"a=candidate:1 1 udp 2130706431 127.0.0.1 {host.media_port} typ host" in res.text  # the host's media
    assert participants(host, room) == ["enc"]
    location = res.headers["location"]
    bearer = {"authorization": f"Bearer {token}"}
    restart = "a=ice-ufrag:cluster1\r\na=ice-pwd:0123456789abcdef0123456789abcdef\r\n"
    patch = httpx.patch(
        other.base + location,
        content=restart,
        headers={**bearer, "content-type": "application/trickle-ice-sdpfrag", "if-match": res.headers["etag"]},
    )
    assert patch.status_code == 200, patch.text
    assert httpx.delete(other.base + location, headers=bearer).status_code == 200
    assert participants(host, room) == []

    # media: FFmpeg POSTs to the other node and sends its RTP to the host's port, as the answer said
    media_room = "cwm-" + uuid.uuid4().hex[:6]
    assert httpx.post(f"{cluster.nodes[0].base}/api/rooms", json={"name": media_room}, auth=AUTH).status_code in (
        200,
        201,
    )
    host, other = nodes_of(cluster, media_room)
    publisher = ffmpeg_publisher(other, media_room, mint(other, media_room, "cam"), 6, artifacts / "cw-ffmpeg.log")
    try:
        packets = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and packets < 100:
            stats = httpx.get(f"{host.base}/api/rooms/{media_room}/stats", auth=AUTH).json()
            packets = sum(t["packets_in"] for t in stats["tracks"] if t["kind"] == "video")
            time.sleep(0.2)
        assert packets >= 100, stats
        assert publisher.wait(40) == 0
    finally:
        if publisher.poll() is None:
            publisher.kill()


def test_forwarded_posts_are_charged_to_the_real_client(cluster: ClusterProcesses) -> None:
    """Forwarded requests arrive from the other node: the budget must be the client's (127.0.0.5), not shared
    by every client of that node, and a client cannot name its own address in the internal header."""
    room = "cwr-" + uuid.uuid4().hex[:6]
    assert httpx.post(f"{cluster.nodes[0].base}/api/rooms", json={"name": room}, auth=AUTH).status_code in (200, 201)
    host, other = nodes_of(cluster, room)
    token = mint(other, room, "burst")
    headers = {"content-type": "application/sdp", "authorization": f"Bearer {token}", "x-roomcast-client": "10.9.9.9"}
    started = time.monotonic()
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.5")) as client:
        statuses = [
            client.post(f"{other.base}/whip/{room}", content=OFFER, headers=headers).status_code for _ in range(15)
        ]
    elapsed = time.monotonic() - started
    assert set(statuses) == {201, 429} and statuses.count(201) <= 2 + elapsed + 1, (statuses, elapsed)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.6")) as client:
        res = client.post(
            f"{other.base}/whip/{room}", content=OFFER, headers={**headers, "x-roomcast-client": "127.0.0.5"}
        )
    assert res.status_code == 201  # 127.0.0.6 has its own budget, whatever header it sends
    httpx.delete(f"{host.base}/api/rooms/{room}", auth=AUTH)
