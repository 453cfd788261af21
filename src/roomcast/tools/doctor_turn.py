"""TURN for ``roomcast doctor``: one Allocate (RFC 8656 §7) with the credentials the server minted, over
UDP, TCP or TLS, then a Refresh with lifetime 0 that releases the relay at once.

An allocation proves what a browser needs of the TURN server: reachable on that transport, the
time-limited REST credentials accepted (so the shared secret matches), a relay address handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import ssl
import struct
import urllib.parse
from dataclasses import dataclass

from roomcast.wire import ParseError
from roomcast.wire.stun import (
    CLASS_ERROR,
    CLASS_REQUEST,
    CLASS_SUCCESS,
    USERNAME,
    StunMessage,
    decode_xor_address,
    finalize,
)

ALLOCATE = 0x003
REFRESH = 0x004
LIFETIME = 0x000D
XOR_RELAYED_ADDRESS = 0x0016
REALM = 0x0014
NONCE = 0x0015
REQUESTED_TRANSPORT = 0x0019
UDP_TRANSPORT = b"\x11\x00\x00\x00"  # RFC 8656 §18.7: protocol 17, RFFU


class TurnError(Exception):
    """The TURN check failed; the message says why in words an operator can act on."""


@dataclass(frozen=True, slots=True)
class TurnUrl:
    scheme: str  # "turn" | "turns"
    host: str
    port: int
    transport: str  # "udp" | "tcp" | "tls"

    @classmethod
    def parse(cls, url: str) -> TurnUrl:
        """``turn:host:port?transport=udp|tcp`` or ``turns:host:port`` (RFC 7065)."""
        scheme, _, rest = url.partition(":")
        if scheme not in ("turn", "turns") or not rest:
            raise TurnError(f"not a TURN URL: {url!r}")
        where, _, query = rest.partition("?")
        found = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+)(?::(\d{1,5}))?", where)
        if found is None:
            raise TurnError(f"not a TURN URL: {url!r}")
        params = urllib.parse.parse_qs(query)
        transport = "tls" if scheme == "turns" else params.get("transport", ["udp"])[0]
        port = int(found.group(2)) if found.group(2) else (5349 if scheme == "turns" else 3478)
        return cls(scheme, found.group(1).strip("[]"), port, transport)

    @property
    def label(self) -> str:
        return {"udp": "TURN/UDP", "tcp": "TURN/TCP", "tls": "TURN/TLS"}.get(self.transport, "TURN")


def _request(method: int, attrs: list[tuple[int, bytes]], key: bytes | None) -> tuple[bytes, bytes]:
    tid = os.urandom(12)
    return tid, finalize(StunMessage(method, CLASS_REQUEST, tid, tuple(attrs)), key)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


class _Channel:
    """One request/response exchange at a time over UDP (retransmitted) or a TCP/TLS stream."""

    def __init__(self, url: TurnUrl, timeout: float, context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.context = context or ssl.create_default_context()
        self.udp: asyncio.DatagramTransport | None = None
        self.protocol: _Udp | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.url.transport == "udp":
                self.udp, self.protocol = await loop.create_datagram_endpoint(
                    _Udp, remote_addr=(self.url.host, self.url.port)
                )
            else:
                context = self.context if self.url.transport == "tls" else None
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(self.url.host, self.url.port, ssl=context), self.timeout
                )
        except (OSError, TimeoutError) as exc:
            raise TurnError(f"cannot reach {self.url.host}:{self.url.port} over {self.url.transport}: {exc}") from None

    async def exchange(self, tid: bytes, data: bytes) -> StunMessage:
        if self.udp is not None and self.protocol is not None:
            wait = 0.5
            for _ in range(4):  # RFC 8489 §6.2.1 retransmissions, shortened
                self.udp.sendto(data)
                try:
                    while True:
                        reply = await asyncio.wait_for(self.protocol.queue.get(), wait)
                        message = _parse(reply)
                        if message is not None and message.transaction_id == tid:
                            return message
                except TimeoutError:
                    wait *= 2
            raise TurnError(f"no answer from {self.url.host}:{self.url.port} over UDP (blocked?)")
        assert self.reader is not None and self.writer is not None
        self.writer.write(data)
        try:
            while True:  # RFC 8656 §4: over TCP, messages follow each other, delimited by their length
                header = await asyncio.wait_for(self.reader.readexactly(20), self.timeout)
                body = await asyncio.wait_for(
                    self.reader.readexactly(struct.unpack("!H", header[2:4])[0]), self.timeout
                )
                message = _parse(header + body)
                if message is not None and message.transaction_id == tid:
                    return message
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            raise TurnError(
                f"no answer from {self.url.host}:{self.url.port} over {self.url.transport}: {exc}"
            ) from None

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.writer is not None:
            self.writer.close()


def _parse(data: bytes) -> StunMessage | None:
    try:
        return StunMessage.parse(data)
    except ParseError:
        return None


async def allocate(
    url: TurnUrl, username: str, password: str, timeout: float = 5.0, context: ssl.SSLContext | None = None
) -> tuple[str, int]:
    """Allocate a relay (long-term credentials, RFC 8489 §9.2) and release it; returns the relay address."""
    channel = _Channel(url, timeout, context)
    await channel.open()
    try:
        tid, data = _request(ALLOCATE, [(REQUESTED_TRANSPORT, UDP_TRANSPORT)], None)
        challenge = await channel.exchange(tid, data)
        if challenge.klass == CLASS_SUCCESS:
            raise TurnError("the TURN server allocated without authentication: it accepts anyone")
        realm, nonce = challenge.get(REALM), challenge.get(NONCE)
        if challenge.error_code != 401 or realm is None or nonce is None:
            raise TurnError(f"unexpected answer to an unauthenticated Allocate (error {challenge.error_code})")
        key = hashlib.md5(f"{username}:{realm.decode()}:{password}".encode()).digest()
        auth = [(USERNAME, username.encode()), (REALM, realm), (NONCE, nonce)]
        tid, data = _request(ALLOCATE, [(REQUESTED_TRANSPORT, UDP_TRANSPORT), *auth], key)
        reply = await channel.exchange(tid, data)
        if reply.klass == CLASS_ERROR:
            code = reply.error_code
            why = "the credentials were refused (does ROOMCAST_TURN_SECRET match coturn's static-auth-secret?)"
            raise TurnError(why if code == 401 else f"Allocate refused with error {code}")
        relayed = reply.get(XOR_RELAYED_ADDRESS)
        if relayed is None:
            raise TurnError("the Allocate answer has no relayed address")
        relay = decode_xor_address(relayed, reply.transaction_id)
        with contextlib.suppress(TurnError):  # release the relay now rather than after its lifetime
            tid, data = _request(REFRESH, [(LIFETIME, b"\x00\x00\x00\x00"), *auth], key)
            await channel.exchange(tid, data)
        return relay
    finally:
        channel.close()
