"""``RedisRouting`` against a real ``redis-server``: registry, atomic placement by load, links, calls,
draining, a dead node's rooms, and a Redis restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from roomcast.routing.api import Link, LinkClosed, NodeLoad, RoutingError
from roomcast.routing.redis import RedisRouting
from tests.support.redis_server import RedisServer

FAST = {"heartbeat": 0.2, "node_ttl": 1.0, "room_ttl": 3.0, "settle": 0.5, "start_timeout": 10.0}


class Node:
    """A routing instance with a load and a room list the test controls, and the links it was handed."""

    def __init__(self, url: str, name: str, prefix: str) -> None:
        self.routing = RedisRouting(url, name, prefix=prefix, **FAST)  # type: ignore[arg-type]
        self.load = NodeLoad()
        self.rooms: list[str] = []
        self.links: asyncio.Queue[tuple[Link, bytes]] = asyncio.Queue()

    async def start(self) -> Node:
        await self.routing.start(lambda: (self.load, list(self.rooms)), self._on_link, "127.0.0.1:1")
        return self

    def _on_link(self, link: Link, hello: bytes) -> None:
        self.links.put_nowait((link, hello))


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll an async condition until it holds (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def settled(node: Node) -> None:
    """A fresh key space first settles (no placement for ``settle`` seconds): wait until it has."""

    async def done() -> bool:
        return not await node.routing.redis.exists(node.routing.prefix + "settling")

    await until(done)


@pytest.fixture(scope="module")
def redis_server(artifacts: Path) -> Iterator[RedisServer]:
    server = RedisServer(artifacts)
    yield server
    server.stop()


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[Callable[[str], Awaitable[Node]]]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"  # each test its own key space on the shared server
    started: list[Node] = []

    async def make(name: str) -> Node:
        node = await Node(redis_server.url, name, prefix).start()
        started.append(node)
        return node

    yield make
    for node in started:
        await node.routing.stop()


async def test_registry_lists_live_nodes_with_their_load_and_forgets_a_stopped_one(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster("a"), await cluster("b")
    a.load = NodeLoad(participants=3, rooms=1, forwarded_pps=250.0, loop_lag=0.004)
    a.rooms = ["r1"]

    async def a_reported() -> bool:
        nodes = {n.node_id: n for n in await b.routing.nodes()}
        return "a" in nodes and nodes["a"].load.participants == 3

    await until(a_reported)
    nodes = {n.node_id: n for n in await b.routing.nodes()}
    assert set(nodes) == {"a", "b"}
    assert nodes["a"].load == NodeLoad(3, 1, 250.0, 0.004) and nodes["a"].rooms == ("r1",)
    assert nodes["a"].media == "127.0.0.1:1" and not nodes["a"].draining
    await a.routing.stop()
    assert [n.node_id for n in await b.routing.nodes()] == ["b"]


async def test_placement_is_atomic_and_goes_to_the_least_loaded_node(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster("a"), await cluster("b")
    a.load = NodeLoad(participants=40)
    await settled(a)

    async def b_sees_load() -> bool:
        return any(n.node_id == "a" and n.load.participants == 40 for n in await b.routing.nodes())

    await until(b_sees_load)
    owners = await asyncio.gather(*(node.routing.place("room-x") for node in (a, b, a, b)))
    assert owners == ["b"] * 4  # one claim won, everyone agrees; b carries less load
    assert await a.routing.owner("room-x") == "b"
    assert await a.routing.owner("room-nobody") is None


async def test_a_draining_node_gets_no_new_rooms_but_keeps_its_own(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster("a"), await cluster("b")
    b.load = NodeLoad(participants=100)
    await settled(a)
    assert await b.routing.place("kept") == "a"
    a.rooms = ["kept"]
    a.routing.set_draining()

    async def a_draining() -> bool:
        return any(n.node_id == "a" and n.draining for n in await b.routing.nodes())

    await until(a_draining)
    assert await b.routing.place("new-room") == "b"  # b is busier, but a drains
    assert await b.routing.place("kept") == "a"


async def test_a_room_released_by_its_node_and_a_dead_nodes_room_are_placed_again(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster("a"), await cluster("b")
    b.load = NodeLoad(participants=5)
    await settled(a)
    assert await b.routing.place("r") == "a"
    a.rooms = ["r"]
    a.rooms = []

    async def released() -> bool:
        return await b.routing.owner("r") is None

    await until(released)  # the next heartbeat after the room is gone deletes the claim
    assert await b.routing.place("r2") == "a"
    a.rooms = ["r2"]
    link = await b.routing.connect("a", b"")  # a socket relayed from b to a
    await asyncio.wait_for(a.links.get(), 5)
    for task in a.routing._tasks:  # a dies: no clean stop, its registry entry just expires
        task.cancel()

    async def a_gone() -> bool:
        return [n.node_id for n in await b.routing.nodes()] == ["b"]

    await until(a_gone)
    assert await b.routing.redis.get(b.routing.prefix + "room:r2") == b"a"  # a's claim is still there
    assert await b.routing.place("r2") == "b"  # a's claim on r2 had not expired (room_ttl 3 s, node_ttl 1 s)
    assert await asyncio.wait_for(link.receive(), 5) == LinkClosed(1012, "relay_lost")  # its client resumes


async def test_links_carry_frames_in_order_both_ways_and_close_with_the_code(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster("a"), await cluster("b")
    link = await a.routing.connect("b", b"hello")
    far, hello = await asyncio.wait_for(b.links.get(), 5)
    assert hello == b"hello" and far.peer == "a" and far.id == link.id
    for i in range(200):
        link.send(f"up {i}")
    link.send(b"\x00\x01")
    got = [await asyncio.wait_for(far.receive(), 5) for _ in range(201)]
    assert got == [f"up {i}" for i in range(200)] + [b"\x00\x01"]
    far.send("down")
    assert await asyncio.wait_for(link.receive(), 5) == "down"
    far.close(4001, "bye")
    assert await asyncio.wait_for(link.receive(), 5) == LinkClosed(4001, "bye")
    assert await asyncio.wait_for(far.receive(), 5) == LinkClosed(4001, "bye")  # the closing side ends too
    with pytest.raises(RoutingError):
        await a.routing.connect("no-such-node", b"")


async def test_calls_reach_the_other_node_and_fail_clearly(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = await cluster("a"), await cluster("b")

    async def echo(body: bytes) -> bytes:
        return b"b says " + body

    b.routing.serve("echo", echo)
    assert await a.routing.call("b", "echo", b"hi") == b"b says hi"
    assert await b.routing.call("b", "echo", b"self") == b"b says self"  # a node can call itself
    with pytest.raises(RoutingError) as unknown:
        await a.routing.call("b", "nope", b"")
    assert unknown.value.code == "unknown_method"
    with pytest.raises(RoutingError) as silent:
        await a.routing.call("ghost", "echo", b"", timeout=0.3)
    assert silent.value.code == "node_timeout"


async def test_redis_restart_rooms_are_reclaimed_and_a_link_that_lost_a_frame_closes(  # type: ignore[no-untyped-def]
    cluster, redis_server: RedisServer
) -> None:
    a, b = await cluster("a"), await cluster("b")
    a.rooms = ["live-room"]
    await settled(a)
    link = await a.routing.connect("b", b"")
    far, _ = await asyncio.wait_for(b.links.get(), 5)
    link.send("before")
    assert await asyncio.wait_for(far.receive(), 5) == "before"
    idle = await a.routing.connect("b", b"")  # a link with nothing lost must survive the restart
    idle_far, _ = await asyncio.wait_for(b.links.get(), 5)

    a.routing.write_patience = 0.2  # a frame is retried this long, then dropped (default 2 s)
    redis_server.stop()
    link.send("lost while Redis is down")

    async def dropped() -> bool:
        return a.routing.counters().get("envelopes_dropped", 0) >= 1

    await until(dropped)
    redis_server.start()

    async def reclaimed() -> bool:
        try:
            return await b.routing.owner("live-room") == "a"
        except RoutingError:
            return False

    await until(reclaimed)  # the empty Redis learns a's room again from a's heartbeat
    assert await asyncio.wait_for(far.receive(), 5) == LinkClosed(1012, "relay_lost")
    assert await asyncio.wait_for(link.receive(), 5) == LinkClosed(1012, "relay_lost")
    idle.send("after")
    assert await asyncio.wait_for(idle_far.receive(), 5) == "after"
    assert await b.routing.place("placed-after-restart") in ("a", "b")  # once the cluster has settled
