"""TLS, connection limits, handshake timeouts, STUN rate limits and leak checks (RELIABILITY O4/O5)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roomcast.proto.common import Addr, Transmit
from roomcast.runtime.udp import UdpEndpoint
from roomcast.sdk import connect
from roomcast.wire.stun import binding_request
from tests.signaling.wsclient import Client, dev_token
from tests.support.server import ServerProcess


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    proc = ServerProcess(
        artifacts,
        args=["--tls-cert", str(cert), "--tls-key", str(key)],
        tls=True,
        env={"ROOMCAST_MAX_CONNECTIONS_PER_IP": "3", "ROOMCAST_JOIN_TIMEOUT": "1"},
    )
    yield proc, cert
    assert proc.stop() == 0


async def test_https_and_wss_with_a_self_signed_certificate(tls_server: tuple[ServerProcess, Path]) -> None:
    server, cert = tls_server
    assert (
        httpx.get(server.base + "/healthz", verify=ssl.create_default_context(cafile=str(cert))).json()["status"]
        == "ok"
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base.replace("https", "http") + "/healthz", timeout=2)
    context = ssl.create_default_context(cafile=str(cert))
    async with websockets.connect(f"{server.ws_base}/rtc?access_token={dev_token('tls', 'alice')}", ssl=context) as ws:
        await ws.send(json.dumps({"type": "join", "v": 1}))
        assert json.loads(await ws.recv())["type"] == "joined"


async def test_connections_per_ip_are_limited(tls_server: tuple[ServerProcess, Path]) -> None:
    server, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    url = f"{server.ws_base}/rtc?access_token={dev_token('limit', 'x')}"
    held = [await websockets.connect(url, ssl=context) for _ in range(3)]
    extra = await websockets.connect(url, ssl=context)
    refused = json.loads(await extra.recv())
    assert refused["code"] == "too_many_connections"
    with pytest.raises(websockets.ConnectionClosed) as info:
        await extra.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    for ws in held:
        await ws.close()


async def test_idle_unjoined_socket_is_closed(tls_server: tuple[ServerProcess, Path]) -> None:
    server, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    async with websockets.connect(
        f"{server.ws_base}/rtc?access_token={dev_token('idle', 'lurker')}", ssl=context
    ) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["code"] == "join_timeout"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


class _Conn:
    """Minimal connection: counts the checks that reached it past the endpoint's rate limit."""

    local_ufrag = "known"
    closed = False

    def __init__(self) -> None:
        self.seen = 0
        self.valid: set[Addr] = set()

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.seen += 1

    def handle_timeout(self, now: float) -> None: ...

    def poll_transmit(self) -> Transmit | None:
        return None

    def poll_timeout(self) -> float | None:
        return None

    def is_validated(self, remote: Addr) -> bool:
        return remote in self.valid


async def test_stun_from_new_addresses_is_rate_limited_per_source_ip() -> None:
    clock = [100.0]
    endpoint = UdpEndpoint(clock=lambda: clock[0], new_address_rate=50)
    conn = _Conn()
    endpoint.add(conn, lambda: None)
    check = binding_request(b"\x01" * 12, "known:peer", "wrong", priority=1, controlling=True, tie_breaker=1)
    for port in range(1000):  # a flood from one IP, new source port each time
        endpoint.datagram_received(check, ("127.0.0.9", 10000 + port))
    assert conn.seen == 100 and endpoint.drops["stun_rate_limited"] == 900
    endpoint.datagram_received(check, ("127.0.0.10", 1))  # another address is not affected
    assert conn.seen == 101
    clock[0] += 1.0  # one second later: 50 more
    for port in range(100):
        endpoint.datagram_received(check, ("127.0.0.9", 30000 + port))
    assert conn.seen == 151
    # honest clients behind the same address: their checks validate and are refunded
    clock[0] += 10.0
    for port in range(1000):
        conn.valid.add(("127.0.0.11", port))
        endpoint.datagram_received(check, ("127.0.0.11", port))
    assert conn.seen == 1151 and endpoint.drops["stun_rate_limited"] == 950


def metric(server: ServerProcess, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)", httpx.get(server.base + "/metrics").text, re.M)
    return float(found.group(1)) if found else -1.0


@pytest.fixture(scope="module")
def quiet_server(artifacts: Path) -> Iterator[ServerProcess]:
    """Its own server, so other tests' participants cannot mask or fake a leak."""
    proc = ServerProcess(artifacts)
    yield proc
    assert proc.stop() == 0


async def test_nothing_leaks_after_everyone_leaves(quiet_server: ServerProcess) -> None:
    server = quiet_server
    room = "leak-check"
    clients = [await connect(server.ws_base, dev_token(room, f"p{i}")) for i in range(4)]
    for client in clients:
        await client.publish(["video", "audio"])
    signaling, _ = await Client.joined(server.ws_base, room, "watcher")
    assert metric(server, "roomcast_tracks") >= 8
    assert metric(server, "roomcast_media_transports") >= 4
    for client in clients:
        await client.close()
    await signaling.close()
    for _ in range(50):  # the server notices closed sockets asynchronously; bounded wait for the state
        if metric(server, "roomcast_media_transports") == 0 and metric(server, "roomcast_tracks") == 0:
            break
        await asyncio.sleep(0.1)
    assert metric(server, "roomcast_media_transports") == 0
    assert metric(server, "roomcast_tracks") == 0
    rooms = httpx.get(server.base + "/api/rooms", auth=("devkey", "devsecret")).json()["rooms"]
    assert room not in [r["name"] for r in rooms]
