"""Issue 12 H4: connection exhaustion on the HTTP port (idle, slowloris and oversized-upgrade sockets).

The server runs with a low file-descriptor limit (256) so that exhausting it is cheap, and a per-IP cap of
40. Attackers bind to 127.0.0.2..., the victims (``/healthz``, a WebSocket join, a canary echo call in
Chromium) use 127.0.0.1. Oracles: excess sockets refused at once, the victims unaffected during the
attack, every attacker socket closed by the server within the header timeout, the fd limit raised."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.test_media_garbage import metric
from tests.signaling.wsclient import Client
from tests.support.browser_fixtures import NewPage
from tests.support.canary import Canaries
from tests.support.server import ServerProcess

HEADER_TIMEOUT = 3.0
PER_IP = 40
FD_LIMIT = 256
UPGRADE = (
    "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
OVERSIZED = [
    f"GET /rtc?access_token={'a' * 9000} HTTP/1.1\r\n{UPGRADE}\r\n".encode(),  # URL over websockets' 8 KiB
    f"GET /rtc HTTP/1.1\r\n{UPGRADE}X-Pad: {'b' * 9000}\r\n\r\n".encode(),  # one header over 8 KiB
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"c" * 40_000,  # a head that never ends
]

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
def tight_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        artifacts,
        args=["--header-timeout", str(HEADER_TIMEOUT), "--max-sockets-per-ip", str(PER_IP)],
        nofile=(FD_LIMIT, FD_LIMIT),
    )
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()[-3000:]


async def open_from(server: ServerProcess, source: str, count: int, first: bytes = b"") -> list[Conn]:
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
        if first:
            writer.write(first)
        conns.append((reader, writer))
    return conns


async def closed_by_server(conn: Conn, within: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it is still open after ``within``."""
    reader, _ = conn
    received = bytearray()
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass  # aborted by the server (RST): closed all the same
    return bytes(received)


async def trickle(conns: list[Conn], stop: asyncio.Event) -> None:
    """Slowloris: one more header byte every 0.5 s, on each connection."""
    while not stop.is_set():
        for _, writer in conns:
            with contextlib.suppress(ConnectionError):
                writer.write(b"X")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def assert_victims_served(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(server.base + "/healthz", timeout=5)).json()["status"] == "ok"
    ws, joined = await asyncio.wait_for(Client.joined(server.ws_base, "victim-" + uuid.uuid4().hex[:6], "v"), 10)
    assert joined["type"] == "joined"
    await ws.close()


async def wait_until_released(server: ServerProcess) -> None:
    for _ in range(100):  # the server notices closed sockets asynchronously: bounded poll of its own gauge
        if metric(server, "roomcast_http_sockets") <= 2:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{metric(server, 'roomcast_http_sockets')} HTTP sockets still open")


async def test_one_ip_over_its_cap_is_refused_and_its_idle_sockets_are_closed(tight_server: ServerProcess) -> None:
    server = tight_server
    idle = await open_from(server, "127.0.0.2", PER_IP)
    slow = await open_from(server, "127.0.0.3", PER_IP, first=b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    stop = asyncio.Event()
    trickling = asyncio.create_task(trickle(slow, stop))
    try:
        excess = await open_from(server, "127.0.0.2", 10)
        for conn in excess:  # refused at once, with a status line, not left hanging
            answer = await closed_by_server(conn, within=HEADER_TIMEOUT - 1)
            assert answer is not None and answer.startswith(b"HTTP/1.1 429"), answer
        await assert_victims_served(server)
        assert metric(server, "roomcast_http_connections_refused_total", "refused_per_ip") >= 10
        # every idle and slowloris socket is closed by the server once its head is overdue
        results = await asyncio.gather(*(closed_by_server(c, within=HEADER_TIMEOUT + 5) for c in idle + slow))
        assert all(r is not None for r in results), f"{results.count(None)} sockets still open"
    finally:
        stop.set()
        await trickling
        for _, writer in idle + slow:
            writer.close()
    assert metric(server, "roomcast_http_connections_refused_total", "header_timeout") >= 2 * PER_IP
    await wait_until_released(server)


async def test_oversized_upgrades_and_heads_are_answered_and_closed(tight_server: ServerProcess) -> None:
    conns = [(await open_from(tight_server, "127.0.0.4", 1, first=data))[0] for data in OVERSIZED]
    answers = [await closed_by_server(conn, within=HEADER_TIMEOUT - 1) for conn in conns]  # before any timeout
    assert [a[:12] if a else a for a in answers] == [b"HTTP/1.1 414", b"HTTP/1.1 431", b"HTTP/1.1 431"]
    await assert_victims_served(tight_server)
    await wait_until_released(tight_server)


@pytest.mark.browser
async def test_many_ips_cannot_exhaust_descriptors_and_the_canary_call_keeps_flowing(
    tight_server: ServerProcess, new_page: NewPage, canaries: Canaries
) -> None:
    server = tight_server
    canary = await canaries.browser(server, new_page)
    attack_from = canary.mark()
    # 8 addresses x 40 sockets = 320: more than the process has descriptors (256); each within its per-IP cap
    attack: list[Conn] = []
    for i in range(8):
        first = b"" if i % 2 else b"GET / HTTP/1.1\r\nHost: x\r\n"  # idle and half-sent heads
        attack += await open_from(server, f"127.0.0.{10 + i}", PER_IP, first=first)
    try:
        await assert_victims_served(server)  # newcomers evict the oldest idle sockets instead of failing
        limit = metric(server, "roomcast_http_sockets_limit")
        assert 0 < limit < FD_LIMIT  # derived from the descriptor limit, with room for everything else
        assert metric(server, "roomcast_http_sockets") <= limit
        canary.assert_flowed(since=attack_from, max_gap=1.0)  # O3 while the sockets are held
        await canary.assert_alive(60)  # about 2 s more of echoed video
        results = await asyncio.gather(*(closed_by_server(c, within=HEADER_TIMEOUT + 5) for c in attack))
        assert all(r is not None for r in results), f"{results.count(None)} sockets still open"
    finally:
        for _, writer in attack:
            writer.close()
    assert metric(server, "roomcast_http_connections_refused_total", "evicted_idle") >= 1
    await wait_until_released(server)
    assert server.alive()


def test_the_descriptor_limit_is_raised_to_the_hard_limit(artifacts: Path) -> None:
    proc = ServerProcess(artifacts, nofile=(256, 4096))
    try:
        limits = Path(f"/proc/{proc.proc.pid}/limits").read_text()
        assert re.search(r"^Max open files\s+4096\s+4096", limits, re.M), limits
    finally:
        assert proc.stop() == 0
