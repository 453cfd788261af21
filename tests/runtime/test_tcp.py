"""The ICE-TCP listener on its own (real loopback sockets, stand-in connections): what binds a stream, what
an unbound one may send, and that closing a stream in any state leaves no route behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from roomcast.proto.common import Addr, Transmit
from roomcast.runtime.tcp import MediaEndpoint, TcpEndpoint, TcpLimits
from roomcast.runtime.udp import UdpEndpoint
from roomcast.wire.stun import binding_request
from roomcast.wire.tcp_framing import encode_frame


class StandIn:
    """A connection that validates every STUN check (or raises on any input, when told to)."""

    def __init__(self, ufrag: str, explode: bool = False) -> None:
        self.local_ufrag = ufrag
        self.closed = False
        self.explode = explode
        self.validated: set[Addr] = set()
        self.inputs: list[bytes] = []
        self.out: list[Transmit] = []
        self.direct_send: object = None

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        if self.explode:
            raise RuntimeError("a bug in this connection")
        self.inputs.append(data)
        if data[0] < 4:
            self.validated.add(remote)
            self.out.append(Transmit(remote, b"\x01\x01" + data[2:]))  # a "response" back on the same path

    def handle_timeout(self, now: float) -> None: ...

    def poll_transmit(self) -> Transmit | None:
        return self.out.pop(0) if self.out else None

    def poll_timeout(self) -> float | None:
        return None

    def is_validated(self, remote: Addr) -> bool:
        return remote in self.validated


def check(ufrag: str) -> bytes:
    return binding_request(b"\x02" * 12, f"{ufrag}:peer", "pw" * 12, priority=1, controlling=True, tie_breaker=1)


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[MediaEndpoint, int]]:
    udp = await UdpEndpoint.bind("127.0.0.1", 0)
    tcp = TcpEndpoint(udp, TcpLimits(handshake_timeout=5))
    await tcp.listen("127.0.0.1", 0)
    endpoint = MediaEndpoint(udp, tcp)
    try:
        yield endpoint, tcp.port
    finally:
        endpoint.close()


async def wait_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 5)  # everything until the server closes


async def test_a_validated_check_binds_the_stream_and_answers_through_it() -> None:
    async with listener() as (endpoint, port):
        conn = StandIn("abcd")
        endpoint.add(conn, lambda: None)  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(check("abcd")))
        prefix = await asyncio.wait_for(reader.readexactly(2), 5)
        answer = await reader.readexactly(int.from_bytes(prefix, "big"))
        assert answer[:2] == b"\x01\x01"  # framed, on the stream, not a UDP datagram
        (stream,) = endpoint.tcp.streams
        assert stream.conn is conn and endpoint.udp.streams[conn]  # type: ignore[index]
        writer.write(encode_frame(b"\x80" + b"\x00" * 20))  # after binding: anything goes to the connection
        for _ in range(100):
            if len(conn.inputs) == 2:
                break
            await asyncio.sleep(0.01)  # polling the condition, bounded (1 s)
        assert conn.inputs[1][0] == 0x80
        endpoint.remove(conn)  # type: ignore[arg-type]
        assert await wait_closed(reader) == b""
        assert not endpoint.tcp.streams and not endpoint.udp.streams and not endpoint.tcp._bound


@pytest.mark.parametrize(
    ("first", "counter"),
    [(b"\x17\xfe\xfd" + b"\x00" * 30, "tcp_not_stun"), (None, "tcp_unknown_ufrag")],
)
async def test_an_unbound_stream_may_send_only_stun_for_a_known_ufrag(first: bytes | None, counter: str) -> None:
    async with listener() as (endpoint, port):
        endpoint.add(StandIn("abcd"), lambda: None)  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(first or check("zzzz")))
        if first is not None:  # DTLS before any check: closed at once
            assert await wait_closed(reader) == b""
        else:  # an unknown ufrag: counted, the stream may still try (a few times, then closed)
            for _ in range(10):
                writer.write(encode_frame(check("zzzz")))
            assert await wait_closed(reader) == b""
            assert endpoint.tcp.drops["tcp_unvalidated"] == 1
        assert endpoint.tcp.drops[counter] >= 1
        assert not endpoint.tcp.streams and not endpoint.udp.streams


async def test_a_connection_failing_on_its_first_check_leaves_no_route() -> None:
    """A stream is routed to its connection during the first check; if that connection raises, the stream
    closes and the route must go with it (it once stayed in ``UdpEndpoint.streams``)."""
    async with listener() as (endpoint, port):
        conn = StandIn("abcd", explode=True)
        endpoint.add(conn, lambda: None)  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(check("abcd")))
        assert await wait_closed(reader) == b""
        assert endpoint.tcp.drops["tcp_exception"] == 1
        assert endpoint.udp.streams == {} and endpoint.tcp._bound == {}
        assert conn.direct_send == endpoint.udp._direct_send  # the UDP path is back as it was
