"""REST admin API and CLI against a real server process."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomcast.rooms.tokens import Grants, mint, verify
from tests.signaling.wsclient import Client, dev_token
from tests.support.server import ServerProcess

AUTH = ("devkey", "devsecret")


def admin_token(room: str = "", secret: str = "devsecret", admin: bool = True) -> str:
    return mint("devkey", secret, identity="ops", grants=Grants(room=room, room_admin=admin), now=time.time())


def test_healthz_and_pages(server: ServerProcess) -> None:
    assert httpx.get(server.base + "/healthz").json()["status"] == "ok"
    for path in ("/", "/call", "/chat", "/sdk/roomcast.js", "/static/style.css"):
        res = httpx.get(server.base + path)
        assert res.status_code == 200, path
    assert "Roomcast.connect" in httpx.get(server.base + "/call").text
    assert "global.Roomcast" in httpx.get(server.base + "/sdk/roomcast.js").text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic ZGV2a2V5Ondyb25n"},  # devkey:wrong
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Bearer " + admin_token(secret="forged-secret")},
    ],
)
def test_unauthenticated_admin_calls_get_401(server: ServerProcess, headers: dict[str, str]) -> None:
    res = httpx.get(server.base + "/api/rooms", headers=headers)
    assert res.status_code == 401
    assert res.json()["error"]["code"]


def test_non_admin_token_gets_403(server: ServerProcess) -> None:
    res = httpx.get(server.base + "/api/rooms", headers={"Authorization": "Bearer " + admin_token(admin=False)})
    assert res.status_code == 403


def test_room_lifecycle_with_key_pair(server: ServerProcess) -> None:
    name = "api-" + uuid.uuid4().hex[:8]
    created = httpx.post(server.base + "/api/rooms", json={"name": name, "max_participants": 3}, auth=AUTH)
    assert created.status_code == 201 and created.json()["max_participants"] == 3
    assert httpx.post(server.base + "/api/rooms", json={"name": name}, auth=AUTH).status_code == 409
    assert name in [r["name"] for r in httpx.get(server.base + "/api/rooms", auth=AUTH).json()["rooms"]]
    assert httpx.get(f"{server.base}/api/rooms/{name}", auth=AUTH).json()["num_participants"] == 0
    assert httpx.delete(f"{server.base}/api/rooms/{name}", auth=AUTH).status_code == 204
    assert httpx.get(f"{server.base}/api/rooms/{name}", auth=AUTH).status_code == 404


@pytest.mark.parametrize(
    "body", [{"name": "bad name!"}, {"name": "x", "max_participants": 0}, {"nom": "x"}, {"name": 5}, "[[["]
)
def test_bad_create_requests_get_400(server: ServerProcess, body: object) -> None:
    kwargs = (
        {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    )
    res = httpx.post(server.base + "/api/rooms", auth=AUTH, **kwargs)  # type: ignore[arg-type]
    assert res.status_code == 400
    assert res.json()["error"]["code"] in {"invalid_room", "invalid_request"}


async def test_room_scoped_admin_token(server: ServerProcess) -> None:
    mine = "mine-" + uuid.uuid4().hex[:6]
    theirs = "theirs-" + uuid.uuid4().hex[:6]
    headers = {"Authorization": "Bearer " + admin_token(room=mine)}
    client, _ = await Client.joined(server.ws_base, mine, "alice")
    listed = httpx.get(f"{server.base}/api/rooms/{mine}/participants", headers=headers)
    assert [p["identity"] for p in listed.json()["participants"]] == ["alice"]
    assert httpx.get(f"{server.base}/api/rooms/{theirs}", headers=headers).status_code == 403
    assert httpx.post(server.base + "/api/rooms", json={"name": theirs}, headers=headers).status_code == 403
    assert httpx.get(server.base + "/api/rooms", headers=headers).json()["rooms"][0]["name"] == mine
    assert httpx.delete(f"{server.base}/api/rooms/{mine}", headers=headers).status_code == 204
    err = await client.recv_type("error")
    assert (err["code"], err["fatal"]) == ("room_deleted", True)


def test_mint_token_endpoint_and_dev_token(server: ServerProcess) -> None:
    res = httpx.post(
        server.base + "/api/tokens", json={"room": "r1", "identity": "bob", "can_publish": False}, auth=AUTH
    )
    token = verify(res.json()["token"], {"devkey": "devsecret"}, now=time.time())
    assert token.grants.room == "r1" and token.grants.can_publish is False
    dev = httpx.get(server.base + "/api/dev-token", params={"room": "r1", "identity": "carol"})
    assert verify(dev.json()["token"], {"devkey": "devsecret"}, now=time.time()).identity == "carol"
    assert httpx.get(server.base + "/api/dev-token", params={"room": "r1", "identity": "a b"}).status_code == 400
    assert httpx.get(server.base + "/api/dev-token", params={"identity": "x"}).status_code == 400


@pytest.fixture(scope="module")
def keyed_server(artifacts: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(artifacts, env={"ROOMCAST_API_KEY": "prodkey", "ROOMCAST_API_SECRET": "s" * 40})
    yield proc
    assert proc.stop() == 0


async def test_configured_keys_disable_dev_mode(keyed_server: ServerProcess) -> None:
    assert httpx.get(keyed_server.base + "/api/dev-token", params={"room": "r", "identity": "x"}).status_code == 404
    assert httpx.get(keyed_server.base + "/api/rooms", auth=AUTH).status_code == 401
    assert httpx.get(keyed_server.base + "/api/rooms", auth=("prodkey", "s" * 40)).status_code == 200
    client = await Client.open(keyed_server.ws_base, dev_token("r", "alice"))
    assert (await client.recv())["code"] == "invalid_token"  # signed by the dev key, unknown here


def test_cli_token_prints_a_verifiable_jwt() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "roomcast",
            "token",
            "--room",
            "r9",
            "--identity",
            "dora",
            "--no-can-publish",
            "--room-admin",
            "--ttl",
            "15m",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    token = verify(out.stdout.strip(), {"devkey": "devsecret"}, now=time.time())
    assert (token.grants.room, token.identity, token.grants.can_publish, token.grants.room_admin) == (
        "r9",
        "dora",
        False,
        True,
    )
    assert 14 * 60 < token.expires_at - time.time() <= 15 * 60
    assert "dev credentials" in out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "roomcast", "token", "--room", "r", "--identity", "x", "--ttl", "never"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid duration" in bad.stderr
