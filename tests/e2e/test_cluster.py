"""Two nodes on one real Redis, two Chromium participants joining one room through different nodes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_call import FRAMES_DECODED, wait_stat
from tests.signaling.wsclient import DEV_KEY, DEV_SECRET
from tests.support.browser_fixtures import NewPage
from tests.support.cluster import ClusterProcesses
from tests.support.tcp_balancer import TcpBalancer

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


async def test_the_room_node_killed_browsers_rejoin_through_the_other_and_decode_again(
    artifacts: Path, new_page: NewPage
) -> None:
    procs = ClusterProcesses(artifacts)  # its own cluster: one node dies here
    lb = await TcpBalancer([node.port for node in procs.nodes]).start()  # clients reach "the cluster"
    try:
        one, two = procs.nodes
        r = "kill-" + uuid.uuid4().hex[:8]
        alice = await new_page(f"{lb.base}/call?room={r}&identity=alice&rejoin=1")
        await alice.wait_for_function("window.callState && window.callState.joined")
        bob = await new_page(f"{lb.base}/call?room={r}&identity=bob&rejoin=1")
        for page in (alice, bob):
            assert await wait_stat(page, FRAMES_DECODED, 30) >= 30
            await page.evaluate("window.room.on('rejoined', () => { window.rejoinedAt = performance.now(); })")
        rooms = httpx.get(f"{one.base}/api/rooms", auth=(DEV_KEY, DEV_SECRET), timeout=10).json()["rooms"]
        host = {"node-1": one, "node-2": two}[next(x["node"] for x in rooms if x["name"] == r)]
        survivor = two if host is one else one
        host.proc.kill()  # kill -9: no drain, no goodbye
        host.proc.wait()
        procs.nodes.remove(host)
        killed = time.monotonic()
        for page in (alice, bob):  # each joins again (the balancer skips the dead node) and publishes again
            await page.wait_for_function("window.rejoinedAt", timeout=15_000)
        for page in (alice, bob):  # the counts are the new connections' (the old ones are closed)
            assert await wait_stat(page, FRAMES_DECODED, 30, timeout=15.0) >= 30
        elapsed = time.monotonic() - killed
        print(f"kill -9 of the room's node to both browsers decoding again: {elapsed:.1f} s")
        people = httpx.get(f"{survivor.base}/api/rooms/{r}/participants", auth=(DEV_KEY, DEV_SECRET), timeout=10)
        assert sorted(p["identity"] for p in people.json()["participants"]) == ["alice", "bob"]
    finally:
        await lb.stop()
        assert not procs.stop()
