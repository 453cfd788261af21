"""One UDP socket for every peer: demultiplex, drive sans-IO connections, run their timers.

Demultiplexing (one port, many peers: docs/architecture.md): a datagram from a known remote address goes straight to
its connection (one dict lookup, the hot path). From an unknown address only a STUN request can be
accepted: its USERNAME names the local ufrag of exactly one connection, and once that connection has
validated the check (MESSAGE-INTEGRITY, then a success response: ``is_validated``), the address is bound
to it. The ufrags are no secret (clear in SDP and in every USERNAME), so nothing but that validation may
bind an address: DTLS and SRTP from an unbound address never reach a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol, cast

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.srtp import SrtpContext, SrtpError
from roomcast.proto.webrtc import BatchRewritten
from roomcast.runtime import sendmmsg
from roomcast.wire.stun import is_stun, peek_username

log = logging.getLogger("roomcast.runtime")


class Connection(Protocol):
    """What the endpoint needs of a sans-IO connection (e.g. :class:`~roomcast.proto.webrtc.WebRtcTransport`)."""

    local_ufrag: str
    closed: bool

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None: ...

    def handle_timeout(self, now: float) -> None: ...

    def poll_transmit(self) -> Transmit | None: ...

    def poll_timeout(self) -> float | None: ...

    def is_validated(self, remote: Addr) -> bool: ...


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, new_address_rate: float = 50.0, batched: bool | None = None
    ) -> None:
        self.clock = clock
        # sendmmsg batches (None: whenever the native helper is built and ROOMCAST_SENDMMSG is not 0)
        self.batched = sendmmsg.enabled() if batched is None else batched
        self.batch: sendmmsg.DatagramBatch | None = None  # made once the socket exists
        self._queueing = False  # inside one input: sends go to the batch
        # STUN from addresses we do not know yet costs an HMAC per check: at most this many *failing*
        # checks per second per source IP (burst twice that), so a flood cannot buy unbounded CPU
        # (docs/security.md: bounded cost). Only a check that validates its address (MESSAGE-INTEGRITY passed and a
        # success was sent) is refunded, so honest clients behind one NAT address never drain the
        # bucket; errors (a 487 too), bad integrity and unknown ufrags keep their cost.
        self.new_address_rate = new_address_rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.by_ufrag: dict[str, Connection] = {}
        self.by_addr: dict[Addr, Connection] = {}
        self._addrs: dict[Connection, set[Addr]] = {}
        self._ufrags: dict[Connection, set[str]] = {}  # more than one only during an ICE restart
        self._timers: dict[Connection, tuple[float, asyncio.TimerHandle]] = {}  # deadline it was armed for
        self._listeners: dict[Connection, Callable[[], None]] = {}
        # ICE-TCP (runtime/tcp.py): remote addresses a connection reaches over a TCP stream, not this socket
        self.streams: dict[Connection, dict[Addr, Callable[[bytes], None]]] = {}
        self.drops: Counter[str] = Counter()
        self.datagrams_in = 0
        self.datagrams_out = 0

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def bind(
        cls, host: str, port: int, clock: Callable[[], float] = time.monotonic, batched: bool | None = None
    ) -> UdpEndpoint:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(clock, batched=batched), local_addr=(host, port)
        )
        return protocol

    @property
    def local_address(self) -> Addr:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # one socket serves every peer: give bursts room (the kernel may cap this)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        if self.batched and sock is not None and sendmmsg.native is not None:
            self.batch = sendmmsg.DatagramBatch(self.transport, self.drops)
        else:
            self.batched = False

    def close(self) -> None:
        for conn in list(self._ufrags):
            self.remove(conn)
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ connections

    def add(self, conn: Connection, on_activity: Callable[[], None]) -> None:
        """Register ``conn``; ``on_activity`` runs after every input so its owner can drain events."""
        self.by_ufrag[conn.local_ufrag] = conn
        self._ufrags[conn] = {conn.local_ufrag}
        self._addrs[conn] = set()
        if hasattr(conn, "direct_send"):
            conn.direct_send = self._direct_send
        if self.batch is not None and hasattr(conn, "batch_rewritten"):
            conn.batch_rewritten = self._batch_sender(conn)
        self._listeners[conn] = on_activity
        self._schedule(conn)

    def add_ufrag(self, conn: Connection, ufrag: str) -> None:
        """An ICE restart gave ``conn`` a new local ufrag: checks naming it reach ``conn`` too."""
        if conn in self._ufrags:
            self._ufrags[conn].add(ufrag)
            self.by_ufrag[ufrag] = conn

    def retire_ufrag(self, conn: Connection, ufrag: str, keep: Addr | None = None) -> None:
        """After an ICE restart: stop routing ``ufrag`` to ``conn``; with ``keep``, also forget every
        address of ``conn`` but that one (bounded maps, however many restarts)."""
        ufrags = self._ufrags.get(conn)
        if ufrags is None:
            return
        ufrags.discard(ufrag)
        if self.by_ufrag.get(ufrag) is conn:
            del self.by_ufrag[ufrag]
        if keep is not None:
            addrs = self._addrs[conn]
            for addr in [a for a in addrs if a != keep]:
                addrs.discard(addr)
                if self.by_addr.get(addr) is conn:
                    del self.by_addr[addr]

    def remove(self, conn: Connection) -> None:
        if getattr(conn, "batch_rewritten", None) is not None:
            conn.batch_rewritten = None  # type: ignore[attr-defined]  # it holds conn: no cycle left behind
        for ufrag in self._ufrags.pop(conn, {conn.local_ufrag}):
            if self.by_ufrag.get(ufrag) is conn:
                del self.by_ufrag[ufrag]
        for addr in self._addrs.pop(conn, ()):
            if self.by_addr.get(addr) is conn:
                del self.by_addr[addr]
        armed = self._timers.pop(conn, None)
        if armed is not None:
            armed[1].cancel()
        self._listeners.pop(conn, None)
        self.streams.pop(conn, None)

    # ------------------------------------------------------------------ input

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        batch = self.batch
        if batch is None:
            self._datagram(data, addr)
            return
        self._queueing = True
        try:
            self._datagram(data, addr)
        finally:
            self._queueing = False
            batch.flush()

    def _datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        remote: Addr = (str(addr[0]), int(addr[1]))
        self.datagrams_in += 1
        conn = self.by_addr.get(remote)
        if conn is None:
            conn = self._accept_new(data, remote)
            if conn is None:
                return
        try:
            conn.handle_datagram(data, remote, self.clock())
        except Exception:  # a bug in one connection must not take the socket down
            self.drops["exception"] += 1
            log.exception("connection %s failed on a datagram", conn.local_ufrag)
            return
        if remote not in self._addrs.get(conn, ()) and conn.is_validated(remote):
            self._addrs[conn].add(remote)
            self.by_addr[remote] = conn
            self._refund(remote[0])  # a check that passed integrity costs its sender nothing
        self._after_input(conn)

    def _accept_new(self, data: bytes, remote: Addr) -> Connection | None:
        if not is_stun(data):
            self.drops["unknown_address"] += 1
            return None
        if not self._allow_new(remote[0]):
            self.drops["stun_rate_limited"] += 1
            return None
        username = peek_username(data)
        if username is None:
            self.drops["stun_no_username"] += 1
            return None
        local = username.split(b":", 1)[0].decode("ascii", "replace") if isinstance(username, bytes) else username
        local = local.split(":", 1)[0]
        conn = self.by_ufrag.get(local)
        if conn is None:
            self.drops["unknown_ufrag"] += 1
        return conn

    def _refund(self, ip: str) -> None:
        bucket = self._buckets.get(ip)
        if bucket is not None:
            self._buckets[ip] = (min(2 * self.new_address_rate, bucket[0] + 1), bucket[1])

    def _allow_new(self, ip: str) -> bool:
        now = self.clock()
        burst = 2 * self.new_address_rate
        tokens, last = self._buckets.get(ip, (burst, now))
        tokens = min(burst, tokens + (now - last) * self.new_address_rate)
        if len(self._buckets) > 10_000:  # bounded state: forget the quiet ones
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 10}
        if tokens < 1:
            self._buckets[ip] = (tokens, now)
            return False
        self._buckets[ip] = (tokens - 1, now)
        return True

    def error_received(self, exc: Exception) -> None:
        self.drops["socket_error"] += 1

    # ------------------------------------------------------------------ output and timers

    def _after_input(self, conn: Connection) -> None:
        self.flush(conn)
        listener = self._listeners.get(conn)
        if listener is not None:
            listener()
        self.flush(conn)
        self._schedule(conn)

    def _direct_send(self, data: bytes, remote: Addr) -> None:
        if self._queueing:
            self.batch.add(data, remote)  # type: ignore[union-attr]  # queueing only with a batch
            self.datagrams_out += 1
        elif self.transport is not None:
            self.transport.sendto(data, remote)
            self.datagrams_out += 1

    def _batch_sender(self, conn: Connection) -> BatchRewritten:
        """``conn``'s forwarded packets, protected straight into the batch while an input is handled; ``False``
        (the transport protects and sends itself) outside one, towards a remote ``conn`` reaches by ICE-TCP, or
        when its SRTP context cannot be protected natively. Runs once per subscriber per packet: kept flat."""
        streams = self.streams
        assert self.batch is not None
        add = self.batch.native_add_rewritten

        def batch_rewritten(
            srtp: SrtpContext, packet: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int, at: int, twcc: int,
            remote: Addr,
        ) -> bool:
            handle = srtp.native_protect
            if not self._queueing or handle is None or not 12 <= len(packet) <= handle[2]:
                return False
            routes = streams.get(conn)
            if routes is not None and remote in routes:
                return False
            status = add(handle[0], handle[1], packet, b1, seq, ts, ssrc, at, twcc, remote[0], remote[1])
            if status:
                raise SrtpError(f"protect failed: libsrtp status {status}")
            self.datagrams_out += 1
            return True

        return batch_rewritten

    def flush(self, conn: Connection) -> None:
        transport = self.transport
        if transport is None:
            return
        streams = self.streams.get(conn)
        # while one input is handled: behind what it already queued (the order on the wire is the order of sending)
        send = self.batch.add if self._queueing else transport.sendto  # type: ignore[union-attr]
        while (item := conn.poll_transmit()) is not None:
            if streams is not None and (stream := streams.get(item.remote)) is not None:
                stream(item.data)
                continue
            send(item.data, item.remote)
            self.datagrams_out += 1

    def _schedule(self, conn: Connection) -> None:
        if conn not in self._listeners:
            return
        when = conn.poll_timeout()
        armed = self._timers.get(conn)
        if armed is not None:
            if armed[0] == when:
                return  # most media packets leave the deadline alone: re-arming would cost more than them
            armed[1].cancel()
            del self._timers[conn]
        if when is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - self.clock())
        self._timers[conn] = (when, loop.call_at(loop.time() + delay, self._on_timer, conn))

    def _on_timer(self, conn: Connection) -> None:
        batch = self.batch
        if batch is None:
            self._timer(conn)
            return
        self._queueing = True
        try:
            self._timer(conn)
        finally:
            self._queueing = False
            batch.flush()

    def _timer(self, conn: Connection) -> None:
        self._timers.pop(conn, None)
        if conn not in self._listeners:
            return
        try:
            conn.handle_timeout(self.clock())
        except Exception:
            self.drops["exception"] += 1
            log.exception("connection %s failed on a timeout", conn.local_ufrag)
            return
        self._after_input(conn)

    def poke(self, conn: Connection) -> None:
        """Flush and reschedule after the owner fed ``conn`` from outside (e.g. sent media)."""
        self.flush(conn)
        self._schedule(conn)
