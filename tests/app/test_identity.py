"""The page login's rules without a server: role grants, the users file, PKCE, the next-URL check, and the
OIDC relying party's ID token checks against tokens we sign ourselves (wrong key, audience, nonce, expiry)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from roomcast.app.config import ConfigError
from roomcast.app.identity import (
    DUMMY_HASH,
    OidcClient,
    OidcLogin,
    PasswordUsers,
    RoleGrants,
    load_rules,
    load_users,
    s256,
    safe_next,
)


def test_roles_add_grants_to_the_default(tmp_path: Path) -> None:
    path = tmp_path / "roles.toml"
    path.write_text("[roles.default]\ncan_subscribe = true\n[roles.host]\ncan_publish = true\nroom_admin = true\n")
    rules = load_rules(str(path))
    assert rules.grants(()) == RoleGrants(can_subscribe=True)
    assert rules.grants(("host", "unknown")) == RoleGrants(can_publish=True, can_subscribe=True, room_admin=True)
    path.write_text("[roles.host]\ncan_fly = true\n")
    with pytest.raises(ConfigError, match="can_publish"):
        load_rules(str(path))


def test_users_need_argon2_hashes(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text('[users.alice]\npassword = "plaintext"\n')
    with pytest.raises(ConfigError, match="argon2"):
        load_users(str(path))
    path.write_text(f'[users.alice]\npassword = "{PasswordHasher().hash("s3cret-pass")}"\nroles = ["teacher"]\n')
    users = PasswordUsers(load_users(str(path)))
    assert users.verify("alice", "s3cret-pass") == ("teacher",)
    assert users.verify("alice", "wrong") is None
    assert users.verify("nobody", "not-a-password-of-anyone") is None  # the dummy hash's own password
    assert DUMMY_HASH.startswith("$argon2id$")


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("/call?room=a", "/call?room=a"), ("//evil.example/x", "/"), ("https://evil.example", "/"), ("/\\evil", "/"),
     (None, "/")],
)  # fmt: skip
def test_only_local_paths_are_followed_after_a_login(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept


def signed(key: RSAKey, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": "https://idp.example", "aud": "roomcast", "sub": "u1", "nonce": "n1", "exp": now + 60, **claims}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


@pytest.mark.parametrize(
    ("claims", "other_key", "accepted"),
    [({}, False, True), ({}, True, False), ({"aud": "someone-else"}, False, False), ({"nonce": "n2"}, False, False),
     ({"exp": 1}, False, False), ({"iss": "https://other.example"}, False, False),
     # issued "in the future" by a provider whose clock is a little ahead (or while the exchange was slow)
     ({"iat": int(time.time()) + 30}, False, True), ({"iat": int(time.time()) + 600}, False, False)],
)  # fmt: skip
def test_id_token_checks(claims: dict[str, object], other_key: bool, accepted: bool) -> None:
    issuer_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    forger_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    client = OidcClient("https://idp.example", "roomcast", "secret")
    client._keys = KeySet([issuer_key])
    token = signed(forger_key if other_key else issuer_key, preferred_username="carol", roles=["teacher"], **claims)

    login = OidcLogin("n1", "verifier", "/", "http://127.0.0.1/login/oidc/callback", 0.0)
    if accepted:
        claims_out = client._validate(token, login, time.time())
        assert claims_out[0] == "carol" and claims_out[1] == ("teacher",)
    else:
        with pytest.raises(ValueError, match="not valid"):
            client._validate(token, login, time.time())
