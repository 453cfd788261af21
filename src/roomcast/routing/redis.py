"""``Routing`` on Redis (redis-py asyncio): the node registry, room ownership and a channel per node.

Keys (``prefix`` = ``roomcast:``):
- ``node:<id>``: a hash (load, rooms, draining, media address), expiring ``node_ttl`` after the last
  heartbeat; ``nodes`` is the set of ids (members whose hash expired are dead and removed when seen).
- ``room:<name>``: the owner's id, ``SET`` with ``PX room_ttl`` by an atomic claim (a Lua check-and-set
  that takes a room only when nobody, or a node that is no longer registered, holds it) and renewed by its
  owner each heartbeat; released (compare-and-delete) once the room is gone there.
- ``cluster``, ``settling``: a Redis that has lost its data (restarted without persistence) has no
  ``cluster`` key; the first heartbeat on it sets both, ``settling`` for ``settle`` seconds, during which
  no new room is placed, so every node re-claims the rooms it still runs before anyone else can.
- ``inbox:<id>``: a stream of envelopes for that node (``routing/bus.py``), written by one task per node in
  order, trimmed to ``INBOX_LENGTH`` and expiring an hour after the last write (a node that is gone).

Redis is not on the media path: while it is away rooms keep forwarding, relayed sockets wait (and those that
lost a frame are closed so their clients resume), and everything re-registers on the first heartbeat back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from roomcast.routing.api import (
    CallHandler,
    Link,
    LinkHandler,
    LoadSource,
    NodeInfo,
    NodeLoad,
    RoutingError,
)
from roomcast.routing.bus import Bus

log = logging.getLogger("roomcast.routing")

_BEAT = """
local fresh = 0
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], '1')
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
  fresh = 1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return fresh
"""

# KEYS[1] room; ARGV: chosen node, ttl ms, node-key prefix, settling key. The live owner, or the chosen
# node once claimed, or '' while the cluster settles after a Redis restart.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then return owner end
if ARGV[1] == '' then return false end
if redis.call('EXISTS', ARGV[4]) == 1 then return '' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HINCRBY', ARGV[3] .. ARGV[1], 'rooms', 1)
return ARGV[1]
"""

# KEYS: rooms this node runs; ARGV: node id, ttl ms. Renews (or re-takes, after a restart) each; returns
# the rooms another node holds meanwhile.
_RENEW = """
local lost = {}
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    lost[#lost + 1] = key
  end
end
return lost
"""

_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then n = n + redis.call('DEL', key) end
end
return n
"""

_ERRORS = (RedisError, OSError, TimeoutError)
INBOX_LENGTH = 10_000
INBOX_TTL_MS = 3_600_000


class RedisRouting:
    clustered = True

    def __init__(
        self,
        url: str,
        node_id: str = "",
        *,
        prefix: str = "roomcast:",
        heartbeat: float = 0.5,
        node_ttl: float = 2.0,
        room_ttl: float = 10.0,
        settle: float = 2.0,
        start_timeout: float = 10.0,
    ) -> None:
        self._node_id = node_id or "node-" + secrets.token_hex(4)
        self.url = url
        self.prefix = prefix
        self.heartbeat, self.node_ttl, self.room_ttl, self.settle = heartbeat, node_ttl, room_ttl, settle
        self.start_timeout = start_timeout
        self.write_patience = 2.0
        self.redis: aioredis.Redis = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._beat_script = self.redis.register_script(_BEAT)
        self._claim_script = self.redis.register_script(_CLAIM)
        self._renew_script = self.redis.register_script(_RENEW)
        self._release_script = self.redis.register_script(_RELEASE)
        self.bus = Bus(self._node_id, self._enqueue)
        self._outgoing: deque[tuple[str, bytes]] = deque()
        self._outgoing_ready = asyncio.Event()
        self._load: LoadSource = lambda: (NodeLoad(), [])
        self._media = ""
        self._started_at = time.time()
        self._draining = False
        self._conflicts: set[str] = set()  # room keys another node holds while the room runs here too
        self._held: set[str] = set()  # rooms whose ownership this node renews
        self._pending: dict[str, float] = {}  # rooms placed here, not yet created: monotonic deadline
        self._healthy = True
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_beat = asyncio.Event()
        self._stopping = False

    @property
    def node_id(self) -> str:
        return self._node_id

    # ------------------------------------------------------------------ lifecycle

    async def start(self, load: LoadSource, on_link: LinkHandler, media: str = "") -> None:
        self._load, self._media = load, media
        self.bus.on_link = on_link
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                await self.redis.delete(self._inbox(self._node_id))  # for an earlier process of this id
                await self._beat()
                break
            except _ERRORS as exc:
                if time.monotonic() > deadline:
                    raise RoutingError(
                        "redis_unavailable", f"cannot reach Redis at {self._safe_url()}: {exc}"
                    ) from None
                await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop()),
            loop.create_task(self._reader_loop()),
            loop.create_task(self._writer_loop()),
        ]
        log.info("node %s registered in %s", self._node_id, self._safe_url())

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        with contextlib.suppress(*_ERRORS):
            async with asyncio.timeout(2.0):
                if self._held:
                    await self._release_script(keys=[self._room_key(r) for r in self._held], args=[self._node_id])
                await self.redis.delete(self._node_key(self._node_id))
                await self.redis.srem(self.prefix + "nodes", self._node_id)
        with contextlib.suppress(*_ERRORS):
            await self.redis.aclose()

    # ------------------------------------------------------------------ placement

    async def place(self, room: str) -> str:
        deadline = time.monotonic() + self.settle + 2.0
        while True:
            owner = await self._claim(room, "")
            if owner:
                return owner
            nodes = await self.nodes()
            candidates = [n for n in nodes if not n.draining] or [n for n in nodes if n.node_id == self._node_id]
            if not candidates:
                candidates = [NodeInfo(self._node_id)]
            best = min(candidates, key=lambda n: (n.load.score(), n.node_id != self._node_id, n.node_id))
            owner = await self._claim(room, best.node_id)
            if owner:
                if owner == self._node_id:
                    self._pending[room] = time.monotonic() + self.room_ttl
                return owner
            if time.monotonic() > deadline:  # settling for longer than it should: a stuck key
                raise RoutingError("cluster_settling", "the cluster is re-registering after a Redis restart")
            await asyncio.sleep(0.1)

    async def owner(self, room: str) -> str | None:
        return await self._claim(room, "") or None

    async def _claim(self, room: str, node: str) -> str:
        try:
            result = await self._claim_script(
                keys=[self._room_key(room)],
                args=[node, int(self.room_ttl * 1000), self.prefix + "node:", self.prefix + "settling"],
            )
        except _ERRORS as exc:
            raise RoutingError("redis_unavailable", f"Redis: {exc}") from None
        return _text(result) if result is not None else ""

    # ------------------------------------------------------------------ links and calls

    async def connect(self, node: str, hello: bytes) -> Link:
        if not await self._alive(node):
            raise RoutingError("unknown_node", f"node {node!r} is not registered")
        return self.bus.open(node, hello)

    async def call(self, node: str, method: str, body: bytes, timeout: float = 3.0) -> bytes:
        return await self.bus.call(node, method, body, timeout)

    def serve(self, method: str, handler: CallHandler) -> None:
        self.bus.handlers[method] = handler

    # ------------------------------------------------------------------ registry

    async def nodes(self) -> list[NodeInfo]:
        try:
            ids = sorted(_text(i) for i in await self.redis.smembers(self.prefix + "nodes"))
            async with self.redis.pipeline(transaction=False) as pipe:
                for node in ids:
                    pipe.hgetall(self._node_key(node))
                hashes = await pipe.execute()
            dead = [node for node, fields in zip(ids, hashes, strict=True) if not fields]
            if dead:
                await self.redis.srem(self.prefix + "nodes", *dead)
        except _ERRORS as exc:
            raise RoutingError("redis_unavailable", f"Redis: {exc}") from None
        return [_node_info(node, fields) for node, fields in zip(ids, hashes, strict=True) if fields]

    def set_draining(self) -> None:
        self._draining = True
        self._wake_beat.set()

    def counters(self) -> dict[str, int]:
        return {**self.bus.counters, "links_open": len(self.bus.links)}

    # ------------------------------------------------------------------ internals

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat):
                    await self._wake_beat.wait()
            self._wake_beat.clear()
            try:
                await self._beat()
                await self._drop_dead_peers()
            except _ERRORS as exc:
                self.bus.count("redis_errors")
                if self._healthy:
                    log.warning("Redis unreachable (%s): rooms keep running, routing waits", exc)
                self._healthy = False
                continue
            if not self._healthy:
                log.info("Redis back: node %s re-registered with %d rooms", self._node_id, len(self._held))
                self._healthy = True
                self.bus.resync()

    async def _beat(self) -> None:
        load, rooms = self._load()
        now = time.monotonic()
        self._pending = {r: t for r, t in self._pending.items() if t > now and r not in rooms}
        held = set(rooms) | set(self._pending)
        fields: dict[str, Any] = {
            "participants": load.participants,
            "rooms": load.rooms,
            "pps": round(load.forwarded_pps, 1),
            "lag": round(load.loop_lag, 4),
            "draining": int(self._draining),
            "media": self._media,
            "started": round(self._started_at, 3),
            "room_list": json.dumps(sorted(rooms)[:1000]),
        }
        flat = [str(x) for kv in fields.items() for x in kv]
        fresh = await self._beat_script(
            keys=[
                self._node_key(self._node_id),
                self.prefix + "nodes",
                self.prefix + "cluster",
                self.prefix + "settling",
            ],
            args=[self._node_id, int(self.node_ttl * 1000), int(self.settle * 1000), *flat],
        )
        if fresh and self._held:
            log.info("Redis lost its data: re-claiming %d rooms", len(held))
        if held:
            ordered = sorted(held)
            for i in range(0, len(ordered), 500):
                chunk = [self._room_key(r) for r in ordered[i : i + 500]]
                lost = await self._renew_script(keys=chunk, args=[self._node_id, int(self.room_ttl * 1000)])
                new = {_text(k) for k in lost} - self._conflicts
                if new:
                    self.bus.count("ownership_conflicts", len(new))
                    log.warning("rooms running here are owned by another node: %s", sorted(new)[:10])
                self._conflicts = (self._conflicts | new) & {self._room_key(r) for r in held}
        released = self._held - held
        if released:
            await self._release_script(keys=[self._room_key(r) for r in released], args=[self._node_id])
        self._held = held

    async def _drop_dead_peers(self) -> None:
        """Close the links to a node missing from the registry (its heartbeat expired), except while the
        cluster settles after a Redis restart: then the registry is empty until every node's next beat."""
        peers = {link.peer for link in self.bus.links.values()}
        if not peers or await self.redis.exists(self.prefix + "settling"):
            return
        for peer in peers:
            if not await self._alive(peer):
                log.info("node %s is gone: closing %d relayed sockets", peer, self.bus.drop_peer(peer))

    async def _alive(self, node: str) -> bool:
        try:
            return bool(await self.redis.exists(self._node_key(node)))
        except _ERRORS as exc:
            raise RoutingError("redis_unavailable", f"Redis: {exc}") from None

    def _enqueue(self, node: str, data: bytes) -> None:
        self._outgoing.append((node, data))
        self._outgoing_ready.set()

    async def _writer_loop(self) -> None:
        """The only writer: one pipeline at a time keeps every node's envelopes in order. A batch that fails
        is tried again for ``write_patience`` (a stale pooled connection fails once after a Redis restart),
        then dropped: the links it carried see the gap and close."""
        while not self._stopping:
            await self._outgoing_ready.wait()
            self._outgoing_ready.clear()
            while self._outgoing:
                batch = [self._outgoing.popleft() for _ in range(min(256, len(self._outgoing)))]
                give_up = time.monotonic() + self.write_patience
                while True:
                    try:
                        async with self.redis.pipeline(transaction=False) as pipe:
                            for node, data in batch:
                                key = self._inbox(node)
                                pipe.xadd(key, {"e": data}, maxlen=INBOX_LENGTH, approximate=True)
                                pipe.pexpire(key, INBOX_TTL_MS)
                            await pipe.execute()
                        self.bus.count("envelopes_out", len(batch))
                        break
                    except _ERRORS:
                        if time.monotonic() > give_up:
                            self.bus.count("envelopes_dropped", len(batch))
                            break
                        await asyncio.sleep(0.1)

    async def _reader_loop(self) -> None:
        """Read this node's inbox stream. A stream (not pub/sub) keeps what arrives while this reader
        reconnects; only a Redis restart loses envelopes, and the links find those gaps."""
        inbox = self._inbox(self._node_id)
        last = "0-0"
        lost = False
        while not self._stopping:
            try:
                # RESP2 reply: [[stream, [(id, {field: value}), ...]]]
                entries: Any = await self.redis.xread({inbox: last}, count=512, block=1000)
                if lost:
                    lost = False
                    self.bus.resync()
                for _key, messages in entries:
                    for entry_id, fields in messages:
                        last = _text(entry_id)
                        data = fields.get(b"e")
                        if data is not None:
                            self.bus.received(bytes(data))
            except _ERRORS:
                self.bus.count("redis_errors")
                lost = True
                await asyncio.sleep(0.2)

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def _inbox(self, node: str) -> str:
        return f"{self.prefix}inbox:{node}"

    def _safe_url(self) -> str:
        """The URL without its password, for logs and errors."""
        return _without_password(self.url)


def ping_until(url: str, patience: float) -> None:
    """A synchronous PING (before the event loop runs), retried until ``patience`` runs out."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    deadline = time.monotonic() + patience
    try:
        while True:
            try:
                client.ping()
                return
            except _ERRORS as exc:
                if time.monotonic() > deadline:
                    raise RoutingError(
                        "redis_unavailable", f"cannot reach Redis at {_without_password(url)}: {exc}"
                    ) from None
                time.sleep(0.2)  # Redis may be starting alongside this node
    finally:
        client.close()


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _node_info(node: str, fields: dict[bytes, bytes]) -> NodeInfo:
    f = {_text(k): _text(v) for k, v in fields.items()}

    def number(name: str) -> float:
        try:
            return float(f.get(name, 0))
        except ValueError:
            return 0.0

    try:
        rooms = tuple(str(r) for r in json.loads(f.get("room_list", "[]")))
    except ValueError:
        rooms = ()
    load = NodeLoad(int(number("participants")), int(number("rooms")), number("pps"), number("lag"))
    return NodeInfo(node, load, rooms, f.get("draining") == "1", f.get("media", ""), number("started"))
