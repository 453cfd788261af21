"""A login in front of the built-in pages (issue 18 item 5): password users (argon2) and OpenID Connect
against a local provider (oidc-provider-mock, a real OIDC server on a thread of this process). Without a
session the pages redirect to /login and dev tokens are off; after it, /call joins as the logged-in user
with the grants of that user's roles."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from oidc_provider_mock import User, run_server_in_thread

from roomcast.rooms.tokens import verify
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # the mock's authlib
API_KEY, API_SECRET = "login-test", secrets.token_urlsafe(32)
KEYS = {"ROOMCAST_API_KEY": API_KEY, "ROOMCAST_API_SECRET": API_SECRET}
PASSWORD = "correct horse battery"
ROLES = """
[roles.default]
can_subscribe = true
can_publish_data = true
[roles.teacher]
can_publish = true
room_admin = true
"""


@pytest.fixture(scope="module")
def password_server(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    hashed = PasswordHasher().hash(PASSWORD)
    users = tmp_path_factory.mktemp("login") / "users.toml"
    users.write_text(
        f'[users.alice]\npassword = "{hashed}"\nroles = ["teacher"]\n'
        f'[users.bob]\npassword = "{hashed}"\nroles = []\n' + ROLES
    )
    proc = ServerProcess(artifacts, env=KEYS, args=["--users", str(users)])
    yield proc
    assert proc.stop() == 0
    assert PASSWORD not in proc.log() and "Traceback" not in proc.log()


def session_token(base: str, cookies: httpx.Cookies, room: str, **params: str) -> httpx.Response:
    return httpx.get(
        base + "/api/session-token", params={"room": room, **params}, cookies=cookies, headers={"X-Roomcast-Page": "1"}
    )


def test_pages_need_a_login_and_dev_tokens_are_off(password_server: ServerProcess) -> None:
    base = password_server.base
    for path in ("/", "/call?room=r1&identity=x", "/classroom?room=r1"):
        page = httpx.get(base + path)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2F"), path
    assert httpx.get(base + "/api/dev-token", params={"room": "r1", "identity": "x"}).status_code == 404
    assert httpx.get(base + "/api/session-token", params={"room": "r1"}).status_code == 401
    assert httpx.post(base + "/login", json={"username": "alice", "password": "nope"}).status_code == 401
    assert httpx.post(base + "/login", json={"username": "mallory", "password": PASSWORD}).status_code == 401


def test_roles_decide_the_grants(password_server: ServerProcess) -> None:
    base = password_server.base
    logins = {u: httpx.post(base + "/login", json={"username": u, "password": PASSWORD}) for u in ("alice", "bob")}
    assert all(r.status_code == 200 for r in logins.values())
    keys = {API_KEY: API_SECRET}
    alice = verify(
        session_token(base, logins["alice"].cookies, "r1", room_admin="true").json()["token"], keys, now=time.time()
    )
    assert (alice.identity, alice.grants.can_publish, alice.grants.room_admin) == ("alice", True, True)
    asked_less = verify(
        session_token(base, logins["alice"].cookies, "r1", can_publish="false").json()["token"], keys, now=time.time()
    )
    assert not asked_less.grants.can_publish and not asked_less.grants.room_admin  # a page may narrow, not widen
    bob = verify(
        session_token(base, logins["bob"].cookies, "r1", room_admin="true").json()["token"], keys, now=time.time()
    )
    assert (bob.identity, bob.grants.can_publish, bob.grants.room_admin) == ("bob", False, False)
    no_header = httpx.get(base + "/api/session-token", params={"room": "r1"}, cookies=logins["bob"].cookies)
    assert no_header.status_code == 403


async def test_password_login_then_the_call_page_joins_as_that_user(
    password_server: ServerProcess, new_page: NewPage
) -> None:
    room = "login-" + uuid.uuid4().hex[:6]
    page = await new_page(f"{password_server.base}/call?room={room}&identity=someone-else")
    await page.wait_for_url("**/login?next=*")
    await page.fill("#username", "alice")
    await page.fill("#password", "wrong password")
    await page.click("#login-button")
    await page.wait_for_function("document.getElementById('login-error').dataset.code === 'invalid_credentials'")
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await page.wait_for_url(f"**/call?room={room}&identity=someone-else")
    await page.wait_for_function("window.callState && window.callState.joined")
    assert await page.evaluate("window.room.identity") == "alice"  # the session's user, not the URL's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_openid_connect_login_against_a_local_provider(artifacts: Path, new_page: NewPage) -> None:
    carol = User(sub="carol-sub", claims={"preferred_username": "carol", "roles": ["teacher"]})
    with run_server_in_thread(port=free_port(), require_nonce=True, user_claims=[carol]) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        env = {**KEYS, "ROOMCAST_OIDC_CLIENT_SECRET": secrets.token_urlsafe(16)}
        args = ["--oidc-issuer", issuer, "--oidc-client-id", "roomcast", "--roles", str(write_roles(artifacts))]
        proc = ServerProcess(artifacts, env=env, args=args)
        try:
            room = "oidc-" + uuid.uuid4().hex[:6]
            page = await new_page(f"{proc.base}/call?room={room}")
            await page.wait_for_url("**/login?next=*")
            await page.click("#oidc-button")
            await page.wait_for_url(f"{issuer}/oauth2/authorize*")  # the provider's own page
            await page.fill("input[name=sub]", "carol-sub")
            await page.click("button[value=allow], button[type=submit]")
            await page.wait_for_url(f"{proc.base}/call?room={room}")
            await page.wait_for_function("window.callState && window.callState.joined")
            assert await page.evaluate("window.room.identity") == "carol"
            grants = await page.evaluate("window.room.grants")
            assert grants and grants.get("canPublish") is True
        finally:
            assert proc.stop() == 0
        assert "Traceback" not in proc.log()


def write_roles(artifacts: Path) -> Path:
    path = artifacts / f"roles-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(ROLES)
    return path


def test_hash_password_prints_a_hash_that_verifies() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roomcast", "hash-password"], input=PASSWORD + "\n", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert PasswordHasher().verify(done.stdout.strip(), PASSWORD)
