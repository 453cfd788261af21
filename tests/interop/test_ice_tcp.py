"""ICE over TCP (RFC 6544, RFC 4571 framing) against a real server: the SDK's echo round trip over the
stream, through a relay that splits frames across reads, and garbage on the TCP port closing only that
connection while another call keeps flowing (docs/security.md B13)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from roomcast.sdk import Publication, Room, RoomcastError, connect
from roomcast.sdk.offer import OfferedTrack, client_offer
from roomcast.wire.sdp import SessionDescription
from tests.signaling.wsclient import Client, dev_token
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def tight(artifacts: Path) -> Iterator[ServerProcess]:
    """A server with small ICE-TCP limits, so each one can be reached in a test."""
    env = {
        "ROOMCAST_MEDIA_TCP_MAX_PER_IP": "6",
        "ROOMCAST_MEDIA_TCP_MAX_HANDSHAKING_PER_IP": "3",
        "ROOMCAST_MEDIA_TCP_HANDSHAKE_TIMEOUT": "1.5",
    }
    proc = ServerProcess(artifacts, env=env)
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-3000:]


class Echo:
    """An SDK participant on ``$echo``: counts the packets that come back, by payload."""

    def __init__(self, room: Room, publication: Publication) -> None:
        self.room = room
        self.publication = publication
        self.back: set[bytes] = set()
        self.sent = 0

    @classmethod
    async def open(cls, server: ServerProcess, relay: tuple[str, int] | None = None) -> Echo:
        room = await connect(server.ws_base, dev_token("tcp-" + uuid.uuid4().hex[:6], "echo"), ice_transport="tcp")
        room.tcp_address = relay
        back: set[bytes] = set()
        publication = await room.echo(["video"], lambda pkt: back.add(pkt[12:]))
        echo = cls(room, publication)
        echo.back = back
        return echo

    async def round(self, count: int, size: int = 1000) -> None:
        """Send ``count`` packets and wait until every one of them came back (TCP loses nothing)."""
        first = self.sent
        for n in range(first, first + count):
            self.publication.send("video", n.to_bytes(4, "big") * (size // 4), n * 3000, marker=True)
            self.publication.conn._pump()
            if n % 10 == 0:
                await asyncio.sleep(0.002)  # a media source's pacing, not a wait for an event
        self.sent += count
        wanted = {n.to_bytes(4, "big") * (size // 4) for n in range(first, first + count)}
        for _ in range(500):
            if wanted <= self.back:
                return
            await asyncio.sleep(0.02)  # polling the condition, bounded (10 s)
        raise AssertionError(f"{len(wanted - self.back)} of {count} packets did not come back")


class SplittingRelay:
    """A TCP relay to the server's ICE-TCP port that cuts what it forwards into random pieces, each sent
    on its own after a pause, so the far side reads frames split anywhere (prefix included)."""

    def __init__(self, target: tuple[str, int], split: float) -> None:
        self.target = target
        self.split = split
        self.pieces = 0
        self.splits = 0  # reads cut into pieces
        self.rng = random.Random(7)
        self.server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return "127.0.0.1", self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.rng.random() < self.split and len(data) > 1:
                    self.splits += 1
                    cuts = sorted(self.rng.sample(range(1, len(data)), min(3, len(data) - 1)))
                    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
                        writer.write(data[start:end])
                        await writer.drain()
                        self.pieces += 1
                        await asyncio.sleep(0.003)  # the gap that makes the far side read each piece alone
                else:
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def dropped(server: ServerProcess, reason: str) -> int:
    text = httpx.get(server.base + "/metrics").text
    found = re.search(rf'roomcast_media_dropped_total{{reason="socket_{reason}"}} (\S+)', text)
    return int(float(found.group(1))) if found else 0


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the server closes the stream (EOF or reset) within ``timeout``."""
    try:
        while await asyncio.wait_for(reader.read(4096), timeout):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def test_answers_announce_a_passive_tcp_candidate_below_udp(server: ServerProcess) -> None:
    client, _ = await Client.joined(server.ws_base, "tcp-sdp-" + uuid.uuid4().hex[:6], "alice")
    offer = client_offer([OfferedTrack("video", "sendonly", "v", 1234, 1235)], "ufrag", "p" * 24, "AB:" * 31 + "AB")
    await client.send({"type": "offer", "v": 1, "to": "$publish", "sdp": offer})
    answer = await client.recv_type("answer")
    media = next(m for m in SessionDescription.parse(answer["sdp"]).media if m.port)
    candidates = [c.split() for c in media.candidates]
    udp = [c for c in candidates if c[2] == "udp"]
    tcp = [c for c in candidates if c[2] == "tcp"]
    assert udp and tcp
    assert all(c[5] == str(server.media_tcp_port) and c[-3:] == ["passive", "generation", "0"] for c in tcp)
    assert max(int(c[3]) for c in tcp) < min(int(c[3]) for c in udp)
    await client.ws.close()


async def test_echo_round_trip_over_ice_tcp(server: ServerProcess) -> None:
    echo = await Echo.open(server)
    await echo.round(200)
    assert echo.publication.conn.__class__.__name__ == "TcpMediaConnection"
    await echo.room.close()


async def test_frames_split_across_reads_still_arrive(server: ServerProcess) -> None:
    relay = SplittingRelay(("127.0.0.1", server.media_tcp_port), split=0.3)
    address = await relay.start()
    echo = await Echo.open(server, relay=address)
    await echo.round(300)
    assert relay.pieces > 50, relay.pieces  # the split path was exercised, both ways
    await echo.room.close()
    await relay.stop()


@contextlib.asynccontextmanager
async def raw(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def test_garbage_and_oversized_frames_close_only_that_connection(tight: ServerProcess) -> None:
    canary = await Echo.open(tight)
    await canary.round(50)
    before_bad, before_stun = dropped(tight, "tcp_bad_framing"), dropped(tight, "tcp_not_stun")
    async with raw(tight.media_tcp_port) as (reader, writer):
        writer.write(b"\xff\xff" + b"x" * 100)  # a 65535-byte frame announced: over the limit
        assert await closed_by_server(reader)
    async with raw(tight.media_tcp_port) as (reader, writer):
        writer.write(b"\x00\x05hello")  # a whole frame, but not STUN
        assert await closed_by_server(reader)
    async with raw(tight.media_tcp_port) as (reader, writer):
        writer.write(b"\x00\x00")  # an empty frame
        assert await closed_by_server(reader)
    await canary.round(100)  # the other call kept flowing on the same port
    assert dropped(tight, "tcp_bad_framing") == before_bad + 2
    assert dropped(tight, "tcp_not_stun") == before_stun + 1
    await canary.room.close()


async def test_silent_connections_time_out_and_per_ip_limits_hold(tight: ServerProcess) -> None:
    calls = [await Echo.open(tight) for _ in range(2)]  # two bound streams: they count per IP, not as handshaking
    async with contextlib.AsyncExitStack() as stack:
        silent = [await stack.enter_async_context(raw(tight.media_tcp_port)) for _ in range(3)]
        async with raw(tight.media_tcp_port) as (reader, _):
            assert await closed_by_server(reader, 2.0)  # a fourth stream still handshaking: refused at once
        for reader, _ in silent:  # the three say nothing: closed after the 1.5 s handshake timeout
            assert await closed_by_server(reader, 5.0)
    assert dropped(tight, "tcp_refused_handshaking") >= 1
    assert dropped(tight, "tcp_handshake_timeout") >= 3
    calls += [await Echo.open(tight) for _ in range(4)]  # bound streams up to the per-IP limit of 6
    with pytest.raises(RoomcastError, match="connection_failed"):
        await Echo.open(tight)  # the seventh from this IP is refused
    assert dropped(tight, "tcp_refused_per_ip") >= 1
    for call in calls:
        await call.round(10)  # every admitted call keeps flowing
        await call.room.close()
