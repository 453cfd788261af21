"""ICE over TCP for the Python SDK (RFC 6544 active side): one media connection over one TCP stream.

The server announces a ``tcptype passive`` candidate; we connect to it and carry the same STUN, DTLS, SRTP
and SCTP as over UDP, each datagram as one RFC 4571 frame. Used where UDP is blocked, and by
``roomcast doctor`` to check that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any, cast

from roomcast.proto.webrtc import WebRtcTransport
from roomcast.sdk.client import MediaConnection, RoomcastError
from roomcast.wire.tcp_framing import FrameDecoder, FramingError, encode_frame


class TcpMediaConnection(MediaConnection, asyncio.Protocol):
    """A :class:`MediaConnection` whose datagrams travel as frames over a TCP stream."""

    def __init__(self, transport: WebRtcTransport, remote: tuple[str, int]) -> None:
        super().__init__(transport)
        self.remote = remote
        self.decoder = FrameDecoder()
        self.stream: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rtc.direct_send = self._send
        self.rtc.start(time.monotonic())
        self._pump()

    def _send(self, data: bytes, remote: tuple[str, int]) -> None:
        if self.stream is not None and not self.stream.is_closing():
            self.stream.write(encode_frame(data))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except FramingError as exc:
            self._fail(f"bad framing from the server: {exc}")
            return
        for frame in frames:
            self.datagram_received(frame, self.remote)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("the server closed the ICE-TCP connection")

    def _fail(self, reason: str) -> None:
        if not self.connected.done():
            self.connected.set_exception(RoomcastError("connection_failed", reason))
        self.close()

    def close(self) -> None:
        super().close()
        if self.stream is not None:
            self.stream.close()


async def open_tcp(rtc: WebRtcTransport, remote: tuple[str, int], local_host: str) -> TcpMediaConnection:
    """Connect to the server's passive candidate ``remote`` and start ICE on the stream."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await loop.create_connection(
            lambda: TcpMediaConnection(rtc, remote), remote[0], remote[1], local_addr=(local_host, 0)
        )
    except OSError as exc:
        raise RoomcastError("connection_failed", f"ICE-TCP to {remote[0]}:{remote[1]}: {exc}") from None
    return conn


def tcp_candidate(candidates: list[str]) -> tuple[str, int] | None:
    """The first ``tcptype passive`` candidate of an answer's ``a=candidate`` values."""
    for value in candidates:
        parts: list[Any] = value.split()
        if len(parts) >= 8 and parts[2].lower() == "tcp" and "passive" in parts[8:]:
            return parts[4], int(parts[5])
    return None
