"""Two nodes on one real Redis, two Chromium participants joining one room through different nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_call import FRAMES_DECODED, wait_stat
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET
from tests.support.browser_fixtures import NewPage
from tests.support.cluster import ClusterProcesses

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def cluster(artifacts: Path) -> Iterator[ClusterProcesses]:
    procs = ClusterProcesses(artifacts)
    yield procs
    assert not procs.stop()


async def test_browsers_on_two_nodes_decode_each_other_and_exchange_data(
    cluster: ClusterProcesses, new_page: NewPage
) -> None:
    one, two = cluster.nodes
    r = "cluster-" + uuid.uuid4().hex[:8]
    alice = await new_page(f"{one.base}/call?room={r}&identity=alice")
    await alice.wait_for_function("window.callState && window.callState.joined")
    bob = await new_page(f"{two.base}/call?room={r}&identity=bob")  # token minted by node 2: same secret
    assert await wait_stat(alice, FRAMES_DECODED, 30) >= 30
    assert await wait_stat(bob, FRAMES_DECODED, 30) >= 30

    # the room lives on one node; the other relays one participant's signaling to it
    people = httpx.get(f"{one.base}/api/rooms/{r}/participants", auth=(DEV_KEY, DEV_SECRET), timeout=10)
    assert sorted(p["identity"] for p in people.json()["participants"]) == ["alice", "bob"]
    host = next(x["node"] for x in httpx.get(f"{two.base}/api/rooms", auth=(DEV_KEY, DEV_SECRET)).json()["rooms"]
                if x["name"] == r)  # fmt: skip
    relayed = {"node-1": two, "node-2": one}[host]
    assert 'roomcast_signaling_events_total{event="relayed_out"}' in httpx.get(relayed.base + "/metrics").text

    await bob.evaluate("window.got = []; window.room.on('data', m => window.got.push(m))")
    await bob.evaluate("window.room.connectData()")
    await alice.evaluate("window.room.sendData('across nodes', {topic: 'chat'})")
    await bob.wait_for_function("window.got.length >= 1")
    assert await bob.evaluate("[window.got[0].payload, window.got[0].from, window.got[0].topic]") == [
        "across nodes",
        "alice",
        "chat",
    ]
    before = await wait_stat(alice, FRAMES_DECODED, 1)
    assert await wait_stat(alice, FRAMES_DECODED, before + 30) >= before + 30  # still flowing
