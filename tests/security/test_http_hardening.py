"""Issue 12, HTTP side: secret strength (M8), request bodies (M9), JSON-only admin POSTs, Host check and dev
mode off loopback, /metrics auth, delegated admin tokens (M4), tokens kept out of the logs (M6).
Real ``roomcast serve`` processes, real sockets."""

from __future__ import annotations

import base64
import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from roomcast.rooms.tokens import Grants, mint, verify
from tests.signaling.wsclient import Client, dev_token
from tests.support.server import ServerProcess, free_port

AUTH = ("devkey", "devsecret")
BASIC = "Basic " + base64.b64encode(b"devkey:devsecret").decode()
STRONG = "s" * 40


def serve_exit(args: list[str], env: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, str]:
    """Run ``roomcast serve`` expecting it to refuse to start; (exit code, output). A server that starts is
    killed after ``timeout`` and reported as exit -1."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_API")}
    full_env.update(env or {})
    command = [sys.executable, "-m", "roomcast", "serve", "--port", str(free_port()), "--media-port", "0", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -1, out
    return proc.returncode, out


# ---------------------------------------------------------------- M8, dev mode off loopback


@pytest.mark.parametrize("secret", ["a", "x" * 31])
def test_short_api_secret_is_refused_at_start(secret: str) -> None:
    code, out = serve_exit([], env={"ROOMCAST_API_KEY": "prodkey", "ROOMCAST_API_SECRET": secret})
    assert code == 2, out
    assert "at least 32" in out and "ROOMCAST_API_SECRET" in out


def test_dev_mode_off_loopback_needs_dev_flag(artifacts: Path) -> None:
    code, out = serve_exit(["--host", "0.0.0.0"])
    assert code == 2, out
    assert "--dev" in out and "mint" in out
    opted_in = ServerProcess(artifacts, args=["--host", "0.0.0.0", "--dev"])  # explicit: it starts
    try:
        assert httpx.get(opted_in.base + "/healthz").status_code == 200
    finally:
        assert opted_in.stop() == 0
    keyed = ServerProcess(
        artifacts, args=["--host", "0.0.0.0"], env={"ROOMCAST_API_KEY": "k", "ROOMCAST_API_SECRET": STRONG}
    )
    assert keyed.stop() == 0  # with a key pair, any address is fine


# ---------------------------------------------------------------- Host check (DNS rebinding)


def raw_upgrade(port: int, host: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"GET /rtc?access_token={dev_token('h', 'x')} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return s.recv(4096)


def test_dev_mode_serves_only_loopback_host_names(server: ServerProcess) -> None:
    url = server.base + "/api/dev-token?room=r&identity=x"
    rebound = httpx.get(url, headers={"Host": f"attacker.example:{server.port}"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "invalid_host"
    assert "token" not in rebound.text
    assert raw_upgrade(server.port, "attacker.example").startswith(b"HTTP/1.1 403")
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}", "192.168.1.5"):
        assert httpx.get(url, headers={"Host": host}).status_code == 200, host
    assert raw_upgrade(server.port, f"127.0.0.1:{server.port}").startswith(b"HTTP/1.1 101")


def test_configured_allowed_hosts(artifacts: Path) -> None:
    env = {"ROOMCAST_API_KEY": "k", "ROOMCAST_API_SECRET": STRONG}
    proc = ServerProcess(artifacts, env=env, args=["--allowed-hosts", "rtc.example.com,*.example.net,127.0.0.1"])
    try:
        for host, status in [("rtc.example.com", 200), ("a.b.example.net:443", 200), ("example.org", 400)]:
            assert httpx.get(proc.base + "/healthz", headers={"Host": host}).status_code == status, host
    finally:
        assert proc.stop() == 0


# ---------------------------------------------------------------- admin API: JSON only, bounded bodies


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_admin_posts_need_a_json_content_type(server: ServerProcess, content_type: str | None) -> None:
    name = "csrf-" + uuid.uuid4().hex[:8]
    headers = {"Content-Type": content_type} if content_type else {}
    res = httpx.post(server.base + "/api/rooms", content=f'{{"name": "{name}"}}', headers=headers, auth=AUTH)
    assert res.status_code == 415 and res.json()["error"]["code"] == "unsupported_media_type"
    assert httpx.get(f"{server.base}/api/rooms/{name}", auth=AUTH).status_code == 404  # nothing was created
    ok = httpx.post(server.base + "/api/rooms", json={"name": name}, auth=AUTH)  # application/json still works
    assert ok.status_code == 201


def _upload(port: int, size: int, chunked: bool, result: dict[str, object]) -> None:
    """POST ``size`` bytes to /api/tokens while a reader thread collects the response."""
    sock = socket.create_connection(("127.0.0.1", port))
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    response = bytearray()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                response.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    piece, sent = b"[" * (1 << 20), 0
    frame = (b"%x\r\n" % len(piece)) + piece + b"\r\n" if chunked else piece
    try:
        while sent < size:
            sock.sendall(frame)
            sent += len(piece)
    except OSError:
        pass  # the server closed the connection: what we want
    if sent >= size:
        sock.shutdown(socket.SHUT_WR)  # all sent (the unfixed server): let it answer
    reader.join(timeout=30)
    sock.close()
    result.update(sent=sent, response=bytes(response))


@pytest.fixture
def fresh_server(artifacts: Path) -> Iterator[ServerProcess]:
    """Its own process, so that its peak RSS (VmHWM) is this test's, not the session's."""
    proc = ServerProcess(artifacts)
    yield proc
    assert proc.stop() == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_admin_bodies_are_refused_at_once_with_bounded_memory(fresh_server: ServerProcess, chunked: bool) -> None:
    server, size, uploads = fresh_server, 200 << 20, 2
    peak_before = server.status_kb("VmHWM")
    results: list[dict[str, object]] = [{} for _ in range(uploads)]
    threads = [threading.Thread(target=_upload, args=(server.port, size, chunked, r)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        response = bytes(r["response"])  # type: ignore[arg-type]
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b'"code":"body_too_large"' in response
        assert int(r["sent"]) < size  # type: ignore[call-overload]  # cut off, not read to the end
    growth_mb = (server.status_kb("VmHWM") - peak_before) / 1024
    assert growth_mb < 40, f"peak RSS grew by {growth_mb:.0f} MB"
    assert server.alive()


def test_a_trickled_admin_body_times_out(artifacts: Path) -> None:
    proc = ServerProcess(artifacts, args=["--header-timeout", "2"])
    try:
        with socket.create_connection(("127.0.0.1", proc.port), timeout=15) as sock:
            sock.sendall(
                f"POST /api/rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n"
                'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na'.encode()
            )
            answer = bytearray()
            while chunk := sock.recv(4096):  # the server answers, then closes
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b'"code":"body_timeout"' in answer, bytes(answer)
    finally:
        assert proc.stop() == 0


# ---------------------------------------------------------------- /metrics


def test_metrics_open_by_default_and_bearer_protected_when_configured(server: ServerProcess, artifacts: Path) -> None:
    assert httpx.get(server.base + "/metrics").status_code == 200  # documented default
    proc = ServerProcess(artifacts, env={"ROOMCAST_METRICS_TOKEN": "m" * 32})
    try:
        assert httpx.get(proc.base + "/metrics").status_code == 401
        assert httpx.get(proc.base + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(proc.base + "/metrics", auth=AUTH).status_code == 401
        res = httpx.get(proc.base + "/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert res.status_code == 200 and "roomcast_rooms" in res.text
    finally:
        assert proc.stop() == 0


# ---------------------------------------------------------------- M4: delegated (Bearer) admin tokens


def _bearer(room: str, ttl: float = 3600, identity: str = "ops", **grants: bool) -> dict[str, str]:
    token = mint("devkey", "devsecret", identity=identity, grants=Grants(room=room, room_admin=True, **grants),
                 now=time.time(), ttl=ttl)  # fmt: skip
    return {"Authorization": "Bearer " + token}


def test_room_admin_cannot_mint_lasting_hidden_or_broader_tokens(server: ServerProcess) -> None:
    room = "delegate-" + uuid.uuid4().hex[:6]
    url = server.base + "/api/tokens"
    admin = _bearer(room, ttl=3600, can_publish=False)
    refused = [
        {"room": room, "identity": "eve", "ttl": "20d", "can_publish": False},
        {"room": room, "identity": "eve", "hidden": True, "can_publish": False},
        {"room": room, "identity": "eve"},  # can_publish defaults to true: the caller itself lacks it
    ]
    for body in refused:
        res = httpx.post(url, json=body, headers=admin)
        assert res.status_code == 403 and res.json()["error"]["code"] == "permission_denied", body
    res = httpx.post(url, json={"room": room, "identity": "bob", "ttl": "6h", "can_publish": False}, headers=admin)
    assert res.status_code == 200
    minted = verify(res.json()["token"], {"devkey": "devsecret"}, now=time.time())
    assert minted.expires_at <= time.time() + 3600 + 1  # not past the caller's own expiry
    assert not minted.grants.hidden and not minted.grants.can_publish
    owner = httpx.post(url, json={"room": room, "identity": "rec", "ttl": "20d", "hidden": True}, auth=AUTH)
    assert owner.status_code == 200  # the key pair's owner is not capped


async def test_kicked_room_admin_token_stops_working_on_rest(server: ServerProcess) -> None:
    room = "kick-admin-" + uuid.uuid4().hex[:6]
    headers = _bearer(room, identity="mod")
    client = await Client.open(server.ws_base, headers["Authorization"].removeprefix("Bearer "))
    await client.send({"type": "join"})
    assert (await client.recv())["type"] == "joined"
    assert httpx.get(f"{server.base}/api/rooms/{room}", headers=headers).status_code == 200
    assert httpx.delete(f"{server.base}/api/rooms/{room}/participants/mod", auth=AUTH).status_code == 204
    res = httpx.get(f"{server.base}/api/rooms/{room}", headers=headers)
    assert res.status_code == 401 and res.json()["error"]["code"] == "token_revoked"
    minted = httpx.post(server.base + "/api/tokens", json={"room": room, "identity": "mod2"}, headers=headers)
    assert minted.status_code == 401


# ---------------------------------------------------------------- M6: tokens in logs


def _jwt_signature(token: str) -> str:
    return token.rsplit(".", 1)[1]


async def test_tokens_are_redacted_from_the_server_log_in_every_encoding(artifacts: Path) -> None:
    proc = ServerProcess(artifacts)
    try:
        plain, bob = dev_token("logs", "alice"), dev_token("logs", "bob")
        encoded = bob.replace(".", "%2E").replace("e", "%65", 2)
        double = dev_token("logs", "carol").replace(".", "%252E")
        httpx.get(f"{proc.base}/call?room=logs&identity=alice&token={plain}")
        httpx.get(f"{proc.base}/call?room=logs&token={encoded}")
        httpx.get(f"{proc.base}/call?x={double}")
        ws_token = dev_token("logs", "dave")
        for name in ("access%5Ftoken", "access_token"):  # the server decodes the name; the old filter did not
            async with websockets.connect(f"{proc.ws_base}/rtc?{name}={ws_token}") as ws:
                await ws.send('{"type": "join", "v": 1}')
                assert '"joined"' in str(await ws.recv())
    finally:
        assert proc.stop() == 0
    log = proc.log()
    for token in (plain, bob, double, ws_token):
        assert _jwt_signature(token.replace("%252E", ".")) not in log
    assert log.count("[redacted]") >= 5
    assert "/call?room=logs&identity=alice&token=[redacted]" in log


def test_our_own_loggers_are_redacted_too() -> None:
    from roomcast.app.logs import install_redaction, redact  # here: the module is the fix

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("roomcast.test_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install_redaction(("roomcast.test_redaction",))
        token = dev_token("r", "x")
        logger.warning("refused %s", token.replace("_", "%5F"))
        logger.warning("bearer %s in text", token)
    finally:
        logger.removeHandler(handler)
    assert _jwt_signature(dev_token("r", "x"))[:10] not in stream.getvalue()
    assert stream.getvalue().count("[redacted]") == 2
    assert (
        redact("GET /healthz 127.0.0.1:7880 roomcast.app.asgi v0.1.0")
        == "GET /healthz 127.0.0.1:7880 roomcast.app.asgi v0.1.0"
    )
