"""ICE over TCP (RFC 6544): a listener for passive candidates, beside the UDP socket of ``runtime/udp.py``.

Browsers whose UDP is blocked connect to our ``tcptype passive`` candidate and send RFC 4571 frames
(:mod:`roomcast.wire.tcp_framing`): STUN, DTLS, SRTP and SCTP exactly as on the UDP port, so each frame is
handed to the same sans-IO connection as a datagram from the stream's remote address would be. A stream
belongs to no connection until a STUN check on it validates (MESSAGE-INTEGRITY passed): the first frames
must be STUN naming a known local ufrag; only then is the stream bound to that connection, and media to
that remote address leaves through the stream instead of the UDP socket (``UdpEndpoint.streams`` and the
connection's ``direct_send``, the two places where a connection's datagrams leave).

Limits, each counted when it bites (O5, docs/security.md B13): frame size; a handshake timeout (no
validated check within ``handshake_timeout`` seconds: closed); an idle timeout; failing checks per unbound
stream; unbound streams per source IP, streams per source IP and in all; a per-stream write buffer (a
frame that does not fit is dropped, as a congested UDP path would). Any of these closes only that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from roomcast.proto.common import Addr
from roomcast.runtime.udp import Connection, UdpEndpoint
from roomcast.wire.stun import is_stun, peek_username
from roomcast.wire.tcp_framing import FrameDecoder, FramingError

log = logging.getLogger("roomcast.runtime.tcp")

Send = Callable[[bytes, Addr], None]


@dataclass(frozen=True, slots=True)
class TcpLimits:
    # Chromium sends over ICE-TCP the packets it would send over UDP (at most one MTU); 4 KiB leaves room.
    max_frame: int = 4096
    handshake_timeout: float = 10.0  # no validated STUN check by then: closed
    idle_timeout: float = 30.0  # nothing received for this long (RFC 7675 consent is every ~5 s): closed
    max_unvalidated_checks: int = 8  # STUN checks an unbound stream may fail (each costs an HMAC)
    max_connections: int = 1024
    # Per source IP: streams still without a validated check (all an attacker can open without an ICE
    # password), and streams in all (offices whose UDP is blocked put many users behind one NAT address).
    max_handshaking_per_ip: int = 16
    max_per_ip: int = 256
    max_write_buffer: int = 1024 * 1024  # bytes queued per stream before frames are dropped


class IceTcpStream(asyncio.Protocol):
    """One accepted TCP connection: frames in, bound to at most one ICE connection."""

    def __init__(self, endpoint: TcpEndpoint) -> None:
        self.endpoint = endpoint
        self.decoder = FrameDecoder(endpoint.limits.max_frame)
        self.transport: asyncio.Transport | None = None
        self.remote: Addr = ("", 0)
        self.conn: Connection | None = None  # bound: a check on this stream validated
        self.routed: Connection | None = None  # the connection this stream's datagrams are routed to
        self.checks = 0
        self.last_input = endpoint.clock()
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # media: no Nagle delay on small frames
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.endpoint.admit(self):
            self.close()
            return
        self._arm(self.endpoint.limits.handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self.decoder.feed(data)
        except FramingError:
            self.endpoint.drops["tcp_bad_framing"] += 1
            self.close()
            return
        if frames:
            self.last_input = self.endpoint.clock()
        for frame in frames:
            if self.closed:
                return
            self.endpoint.frame_received(self, frame)

    def send(self, data: bytes, remote: Addr | None = None) -> None:
        """One datagram out as one frame (dropped, counted, when the stream's write buffer is full)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        size = len(data)
        if not 0 < size <= 65535 or transport.get_write_buffer_size() > self.endpoint.limits.max_write_buffer:
            self.endpoint.drops["tcp_send_dropped"] += 1
            return
        transport.write(size.to_bytes(2, "big") + data)
        self.endpoint.frames_out += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()
        self.endpoint.forget(self)

    def _arm(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(max(0.01, delay), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        limits = self.endpoint.limits
        if self.conn is None:
            self.endpoint.drops["tcp_handshake_timeout"] += 1
            self.close()
            return
        idle = self.endpoint.clock() - self.last_input
        if idle >= limits.idle_timeout:
            self.endpoint.drops["tcp_idle_timeout"] += 1
            self.close()
            return
        self._arm(limits.idle_timeout - idle)


class TcpEndpoint:
    """The ICE-TCP listener. Connections are those of ``udp`` (found by its ufrag map); their timers stay
    with ``udp`` (:meth:`UdpEndpoint.poke`), so a connection is driven the same whichever path it uses."""

    def __init__(
        self, udp: UdpEndpoint, limits: TcpLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.udp = udp
        self.limits = limits or TcpLimits()
        self.clock = clock
        self.server: asyncio.Server | None = None
        self.drops: Counter[str] = Counter()
        self.frames_in = 0
        self.frames_out = 0
        self.streams: set[IceTcpStream] = set()
        self._per_ip: Counter[str] = Counter()
        self._handshaking: Counter[str] = Counter()  # per IP: streams not bound to a connection yet
        self._listeners: dict[Connection, Callable[[], None]] = {}
        self._bound: dict[Connection, dict[Addr, IceTcpStream]] = {}
        self._udp_send: dict[Connection, Send | None] = {}  # direct_send as it was before a stream was bound

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: IceTcpStream(self), host, port, reuse_address=True)

    @property
    def port(self) -> int:
        if self.server is None or not self.server.sockets:
            return 0
        return int(self.server.sockets[0].getsockname()[1])

    # ------------------------------------------------------------------ connections (from the service)

    def add(self, conn: Connection, on_activity: Callable[[], None]) -> None:
        self._listeners[conn] = on_activity

    def remove(self, conn: Connection) -> None:
        self._listeners.pop(conn, None)
        for stream in list(self._bound.get(conn, {}).values()):
            stream.close()  # forget() unbinds it

    def close(self) -> None:
        for stream in list(self.streams):
            stream.close()
        if self.server is not None:
            self.server.close()

    # ------------------------------------------------------------------ streams

    def admit(self, stream: IceTcpStream) -> bool:
        ip = stream.remote[0]
        if len(self.streams) >= self.limits.max_connections:
            self.drops["tcp_refused_total"] += 1
            return False
        if self._per_ip[ip] >= self.limits.max_per_ip:
            self.drops["tcp_refused_per_ip"] += 1
            return False
        if self._handshaking[ip] >= self.limits.max_handshaking_per_ip:
            self.drops["tcp_refused_handshaking"] += 1
            return False
        self.streams.add(stream)
        self._per_ip[ip] += 1
        self._handshaking[ip] += 1
        return True

    def _handshake_done(self, ip: str) -> None:
        self._handshaking[ip] -= 1
        if self._handshaking[ip] <= 0:
            del self._handshaking[ip]

    def forget(self, stream: IceTcpStream) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        ip = stream.remote[0]
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        if stream.conn is None:
            self._handshake_done(ip)
        conn = stream.conn or stream.routed  # routed but not bound: closed in the middle of its first check
        stream.conn = None
        if conn is not None:
            self._unroute(conn, stream)

    def frame_received(self, stream: IceTcpStream, frame: bytes) -> None:
        self.frames_in += 1
        conn = stream.conn
        if conn is None:
            conn = self._first_check(stream, frame)
            if conn is None:
                return
        elif conn.closed:
            stream.close()
            return
        try:
            conn.handle_datagram(frame, stream.remote, self.clock())
        except Exception:  # a bug in one connection must not take the listener down
            self.drops["tcp_exception"] += 1
            log.exception("connection %s failed on a frame", conn.local_ufrag)
            stream.close()
            return
        if stream.conn is None:
            if conn.is_validated(stream.remote):
                stream.conn = conn
                self._handshake_done(stream.remote[0])
            else:
                self.udp.flush(conn)  # the answer (an error) leaves through the stream, then the route goes
                self._unroute(conn, stream)
                return
        self.udp.poke(conn)
        listener = self._listeners.get(conn)
        if listener is not None:
            listener()
        self.udp.poke(conn)

    def _first_check(self, stream: IceTcpStream, frame: bytes) -> Connection | None:
        """An unbound stream may carry only STUN naming a known ufrag; the check is routed back through it."""
        if not is_stun(frame):
            self.drops["tcp_not_stun"] += 1
            stream.close()
            return None
        stream.checks += 1
        if stream.checks > self.limits.max_unvalidated_checks:
            self.drops["tcp_unvalidated"] += 1
            stream.close()
            return None
        username = peek_username(frame)
        if username is None:
            self.drops["tcp_stun_no_username"] += 1
            return None
        local = username.split(b":", 1)[0].decode("ascii", "replace")
        conn = self.udp.by_ufrag.get(local)
        if conn is None or conn not in self._listeners:
            self.drops["tcp_unknown_ufrag"] += 1
            return None
        self._route(conn, stream)
        return conn

    # ------------------------------------------------------------------ the send seam

    def _route(self, conn: Connection, stream: IceTcpStream) -> None:
        """Datagrams ``conn`` sends to ``stream.remote`` go through the stream from now on."""
        routes = self._bound.get(conn)
        if routes is None:
            routes = self._bound[conn] = {}
            self.udp.streams[conn] = routes_send = {}
            previous: Send | None = getattr(conn, "direct_send", None)
            self._udp_send[conn] = previous
            if previous is not None:
                conn.direct_send = self._router(routes, previous)  # type: ignore[attr-defined]
        else:
            routes_send = self.udp.streams[conn]
        old = routes.get(stream.remote)
        if old is not None and old is not stream:
            old.close()
        routes[stream.remote] = stream
        routes_send[stream.remote] = stream.send
        stream.routed = conn

    def _unroute(self, conn: Connection, stream: IceTcpStream) -> None:
        if stream.routed is conn:
            stream.routed = None
        routes = self._bound.get(conn)
        if routes is None or routes.get(stream.remote) is not stream:
            return
        del routes[stream.remote]
        self.udp.streams.get(conn, {}).pop(stream.remote, None)
        if not routes:
            del self._bound[conn]
            self.udp.streams.pop(conn, None)
            previous = self._udp_send.pop(conn, None)
            if previous is not None and getattr(conn, "direct_send", None) is not None:
                conn.direct_send = previous  # type: ignore[attr-defined]

    @staticmethod
    def _router(routes: dict[Addr, IceTcpStream], udp_send: Send) -> Send:
        def send(data: bytes, remote: Addr) -> None:
            stream = routes.get(remote)
            if stream is None:
                udp_send(data, remote)
            else:
                stream.send(data)

        return send


class MediaEndpoint:
    """The UDP socket and the ICE-TCP listener as the one endpoint the media service drives
    (``rtc.service.Endpoint``): connections are registered with both, timers and flushes stay with UDP."""

    def __init__(self, udp: UdpEndpoint, tcp: TcpEndpoint) -> None:
        self.udp = udp
        self.tcp = tcp

    @property
    def local_address(self) -> Addr:
        return self.udp.local_address

    @property
    def drops(self) -> Counter[str]:
        return self.udp.drops + self.tcp.drops

    @property
    def datagrams_in(self) -> int:
        return self.udp.datagrams_in + self.tcp.frames_in

    @property
    def datagrams_out(self) -> int:
        return self.udp.datagrams_out + self.tcp.frames_out

    def add(self, conn: Connection, on_activity: Callable[[], None]) -> None:
        self.udp.add(conn, on_activity)
        self.tcp.add(conn, on_activity)

    def add_ufrag(self, conn: Connection, ufrag: str) -> None:
        self.udp.add_ufrag(conn, ufrag)

    def retire_ufrag(self, conn: Connection, ufrag: str, keep: Addr | None = None) -> None:
        self.udp.retire_ufrag(conn, ufrag, keep)

    def remove(self, conn: Connection) -> None:
        self.tcp.remove(conn)
        self.udp.remove(conn)

    def flush(self, conn: Connection) -> None:
        self.udp.flush(conn)

    def poke(self, conn: Connection) -> None:
        self.udp.poke(conn)

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()
