"""The HTTP port's own defence against connection exhaustion (idle sockets, slowloris, oversized heads).

uvicorn keeps a TCP connection open for as long as the client likes before its first request, lets a
request head grow without bound, and never sends (nor closes after) the 414/431 the WebSocket handshake
parser produces for an oversized upgrade. So one client could hold every file descriptor of the process
and take ``/healthz`` and new WebSockets down with it. This module bounds that, inside the server:

- every connection is counted from ``connection_made`` to ``connection_lost`` (across the WebSocket
  upgrade: the transport is the key), per client IP (IPv6 per /64) and in all;
- over the per-IP cap a new connection gets ``429`` and is closed; when the global cap is reached the
  oldest connection still waiting for a request head (idle, keep-alive or slowloris) is evicted for the
  newcomer, and only when there is none is the newcomer refused (``503``);
- a request head must be complete within ``header_timeout`` of the connection (or of its first byte,
  after a keep-alive response), and be at most ``max_head_bytes``, else ``431`` and close;
- a WebSocket handshake must complete within ``header_timeout``; a refused one gets its 414/431/400
  written and the socket closed.

The global cap defaults to the file-descriptor limit (raised soft → hard at start) minus a reserve for
the media socket, logs and the like, so ``accept()`` never fails with ``EMFILE``.

The guard hooks uvicorn's httptools and websockets-sansio protocol classes (``uvicorn.Config(http=...,
ws=...)``): their parser callbacks are the only place that knows where a request head ends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from roomcast.rooms.manager import client_key

log = logging.getLogger("roomcast.app")
FD_RESERVE = 64  # descriptors kept for everything but HTTP connections (media socket, logs, epoll, imports)
MAX_HEAD_BYTES = 16 * 1024
_REASONS = {429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (allowed without privileges); (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def socket_budget(configured: int) -> int:
    """Connections the HTTP port may hold: ``configured`` (0 = as many as descriptors allow), never more."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    available = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    derived = max(16, available - max(FD_RESERVE, available // 10))
    return min(configured, derived) if configured else derived


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_sockets: int
    max_sockets_per_ip: int  # 0 = no per-IP cap
    header_timeout: float
    max_head_bytes: int = MAX_HEAD_BYTES


class ConnectionGuard:
    """Counts open connections by transport; decides admission and eviction. No I/O of its own."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self.open: dict[object, str] = {}
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.waiting: dict[object, Callable[[], None]] = {}  # insertion order = oldest first
        self.counters: collections.Counter[str] = collections.Counter()

    def admit(self, transport: object, host: str) -> int | None:
        """Admit a new connection, or return the HTTP status to refuse it with (429 per IP, 503 full)."""
        key = client_key(host)
        if self.limits.max_sockets_per_ip and self.per_ip[key] >= self.limits.max_sockets_per_ip:
            self.counters["refused_per_ip"] += 1
            return 429
        if len(self.open) >= self.limits.max_sockets:
            if not self.waiting:
                self.counters["refused_full"] += 1
                return 503
            oldest, close = next(iter(self.waiting.items()))
            self.release(oldest)
            self.counters["evicted_idle"] += 1
            close()
        self.open[transport] = key
        self.per_ip[key] += 1
        return None

    def release(self, transport: object) -> None:
        self.waiting.pop(transport, None)
        key = self.open.pop(transport, None)
        if key is not None:
            self.per_ip[key] -= 1
            if self.per_ip[key] <= 0:
                del self.per_ip[key]

    def idle(self, transport: object, close: Callable[[], None]) -> None:
        """The connection has no request in progress: it may be evicted for a newcomer."""
        if transport in self.open:
            self.waiting[transport] = close

    def busy(self, transport: object) -> None:
        self.waiting.pop(transport, None)

    def count(self, reason: str) -> None:
        self.counters[reason] += 1


def _raw_response(status: int, text: str) -> bytes:
    body = text.encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            b"x-content-type-options: nosniff\r\nx-frame-options: DENY\r\nreferrer-policy: no-referrer\r\n",
            b"\r\n",
            body,
        ]
    )


def guarded_protocols(guard: ConnectionGuard) -> tuple[type[HttpToolsProtocol], type[WebSocketsSansIOProtocol]]:
    """uvicorn protocol classes (``http=``, ``ws=``) that enforce ``guard``."""

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        """The handshake must complete in time; a refused handshake is answered and closed."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._deadline = self.loop.call_later(guard.limits.header_timeout, self._handshake_timeout)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.handshake_exc is not None and not self.handshake_initiated and not self.close_sent:
                guard.count("handshake_refused")  # uvicorn leaves the queued 414/431 unsent and the socket open
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.handshake_complete = self.close_sent = True
                self.transport.close()

        def _handshake_timeout(self) -> None:
            self._deadline = None
            if not self.handshake_complete and not self.transport.is_closing():
                guard.count("handshake_timeout")
                self.transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            guard.release(self.transport)
            super().connection_lost(exc)

    class GuardedHttp(HttpToolsProtocol):
        """Admission at ``connection_made``; a deadline and a size cap on every request head."""

        _head_timer: asyncio.TimerHandle | None = None
        _in_head = False
        _head_bytes = 0
        _refused = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            refusal = guard.admit(transport, self.client[0] if self.client else "")
            if refusal is not None:
                self._refused = True
                transport.write(_raw_response(refusal, "too many connections; try again later"))
                transport.close()
                return
            self._await_head()

        def _await_head(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(guard.limits.header_timeout, self._head_timeout)
            guard.idle(self.transport, self.transport.abort)

        def _head_done(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            guard.busy(self.transport)

        def _head_timeout(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                guard.count("header_timeout")
                self.transport.abort()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes = True, 0
            self._await_head()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_done()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:  # idle keep-alive: uvicorn closes it after its timeout
                guard.idle(self.transport, self.transport.abort)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)  # counts whole reads: over by at most one read, never under
                if self._head_bytes > guard.limits.max_head_bytes:
                    guard.count("head_too_large")
                    self._head_done()
                    self.transport.write(_raw_response(431, "request head too large"))
                    self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            guard.release(self.transport)
            super().connection_lost(exc)

    return GuardedHttp, GuardedWebSocket
