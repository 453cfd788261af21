"""Who may use the built-in pages: password users (``--users FILE``, argon2 hashes) or OpenID Connect.

With either configured, the lobby, call and app pages need a login; the server then mints room tokens for
the logged-in user (``GET /api/session-token``) with grants from configured roles, and ``/api/dev-token``
is off. A page may ask for fewer grants than its roles allow (a viewer page: no publishing), never more.

    # users.toml (``roomcast hash-password`` prints a hash)
    [users.alice]
    password = "$argon2id$v=19$m=65536,t=3,p=4$..."
    roles = ["teacher"]

    [roles.default]            # everyone logged in (the default: publish, subscribe, data)
    can_publish = false
    [roles.teacher]            # any matching role adds its grants
    can_publish = true
    room_admin = true

OpenID Connect (``--oidc-issuer``, ``--oidc-client-id``, ``ROOMCAST_OIDC_CLIENT_SECRET``): the
authorization code flow with PKCE (RFC 7636) and a nonce; the ID token's signature (the issuer's JWKS),
``iss``, ``aud``, ``exp`` and ``nonce`` are checked with joserfc (the authlib project's JOSE library). The
identity is ``preferred_username``, else ``email``, else ``sub``; roles come from the claim
``oidc_roles_claim`` (default ``roles``). Role rules come from ``--roles FILE`` (and the users file's ``[roles]``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import tomllib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roomcast.app.config import ConfigError

if TYPE_CHECKING:  # argon2, joserfc and httpx load only when a login is configured (start-up time)
    from joserfc.jwk import KeySet

SESSION_TTL = 12 * 3600.0
CLOCK_LEEWAY = 60  # seconds the provider's clock may be off ours (iat, exp)
PENDING_TTL = 600.0  # an OIDC login must come back within this
MAX_SESSIONS = 10_000
# verified against for unknown user names, so they take as long as a wrong password (same argon2 parameters)
DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$rnT/Tn3KfbVe9t5lk4hTxw$gOljkrnzu6xdaJgANDm4A8RC3xg0e7Wy3DQU9RgfC3g"
GRANT_NAMES = ("can_publish", "can_subscribe", "can_publish_data", "room_admin", "hidden")


@dataclass(frozen=True, slots=True)
class RoleGrants:
    can_publish: bool = False
    can_subscribe: bool = False
    can_publish_data: bool = False
    room_admin: bool = False
    hidden: bool = False

    def union(self, other: RoleGrants) -> RoleGrants:
        return RoleGrants(*(getattr(self, n) or getattr(other, n) for n in GRANT_NAMES))


EVERYONE = RoleGrants(can_publish=True, can_subscribe=True, can_publish_data=True)


@dataclass(frozen=True, slots=True)
class Rules:
    """Grants by role; ``default`` for everyone, each role of the user adds its own."""

    default: RoleGrants = EVERYONE
    roles: dict[str, RoleGrants] = field(default_factory=dict)

    def grants(self, roles: tuple[str, ...]) -> RoleGrants:
        out = self.default
        for role in roles:
            if role in self.roles:
                out = out.union(self.roles[role])
        return out


def _grants(table: object, where: str) -> RoleGrants:
    if not isinstance(table, dict) or any(k not in GRANT_NAMES or not isinstance(v, bool) for k, v in table.items()):
        raise ConfigError(f"{where}: a role is a table of {', '.join(GRANT_NAMES)} = true/false")
    return RoleGrants(**table)


def _toml(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def load_rules(*paths: str) -> Rules:
    default, roles = EVERYONE, {}
    for path in (p for p in paths if p):
        table = _toml(path).get("roles", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [roles] must be a table")
        for name, grants in table.items():
            if name == "default":
                default = _grants(grants, f"{path} [roles.default]")
            else:
                roles[name] = _grants(grants, f"{path} [roles.{name}]")
    return Rules(default, roles)


@dataclass(frozen=True, slots=True)
class User:
    password_hash: str
    roles: tuple[str, ...] = ()


def load_users(path: str) -> dict[str, User]:
    table = _toml(path).get("users", {})
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: no [users.NAME] tables")
    users = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not str(entry.get("password", "")).startswith("$argon2"):
            raise ConfigError(f"{path} [users.{name}]: password must be an argon2 hash (roomcast hash-password)")
        roles = entry.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{path} [users.{name}]: roles must be a list of names")
        users[name] = User(entry["password"], tuple(roles))
    return users


class PasswordUsers:
    def __init__(self, users: dict[str, User]) -> None:
        from argon2 import PasswordHasher

        self.users = users
        self.hasher = PasswordHasher()
        self._dummy = DUMMY_HASH  # unknown names cost as much as wrong passwords (no hashing at start-up)

    def verify(self, name: str, password: str) -> tuple[str, ...] | None:
        """The user's roles when ``password`` is theirs, else None."""
        from argon2.exceptions import InvalidHashError, VerificationError

        user = self.users.get(name)
        try:
            self.hasher.verify(user.password_hash if user else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        return user.roles if user is not None else None


@dataclass(frozen=True, slots=True)
class OidcLogin:
    """One authorization request waiting for its callback."""

    nonce: str
    verifier: str
    next: str
    redirect_uri: str
    expires: float


class OidcClient:
    """The relying party: discovery, the authorization URL, the code exchange and the ID token's checks."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, roles_claim: str = "roles") -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.roles_claim = roles_claim
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            import httpx
            from joserfc.jwk import KeySet

            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(self.issuer + "/.well-known/openid-configuration")
                response.raise_for_status()
                metadata = response.json()
                if metadata.get("issuer", "").rstrip("/") != self.issuer:
                    raise ValueError(f"the provider says it is {metadata.get('issuer')!r}, not {self.issuer!r}")
                keys = await client.get(metadata["jwks_uri"])
                keys.raise_for_status()
            self._keys = KeySet.import_key_set(keys.json())
            self._metadata = metadata
        return self._metadata

    async def authorization_url(self, state: str, login: OidcLogin) -> str:
        metadata = await self.metadata()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": login.redirect_uri,
            "scope": "openid profile email",
            "state": state,
            "nonce": login.nonce,
            "code_challenge": s256(login.verifier),
            "code_challenge_method": "S256",
        }
        return str(metadata["authorization_endpoint"]) + "?" + urllib.parse.urlencode(query)

    async def exchange(self, code: str, login: OidcLogin, clock: Callable[[], float]) -> tuple[str, tuple[str, ...]]:
        """The identity and roles of the user the provider sent back (after every check on its ID token)."""
        import httpx

        metadata = await self.metadata()
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": login.redirect_uri,
                    "code_verifier": login.verifier,
                },
                auth=(self.client_id, self.client_secret),
            )
        if response.status_code != 200:
            raise ValueError(f"the token endpoint answered {response.status_code}")
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise ValueError("no ID token in the token response")
        return self._validate(id_token, login, clock())  # the time it arrived, not when we asked for it

    def _validate(self, id_token: str, login: OidcLogin, now: float) -> tuple[str, tuple[str, ...]]:
        """OpenID Connect Core §3.1.3.7: signed by the issuer's key, for us, this login's nonce, not expired."""
        from joserfc import jwt
        from joserfc.errors import JoseError

        if self._keys is None:
            raise ValueError("the ID token is not valid: the provider's keys are unknown")
        try:
            token = jwt.decode(id_token, self._keys)
            jwt.JWTClaimsRegistry(
                now=lambda: int(now),
                leeway=CLOCK_LEEWAY,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                nonce={"essential": True, "value": login.nonce},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise ValueError(f"the ID token is not valid: {exc}") from None
        claims = token.claims
        identity = next((str(claims[k]) for k in ("preferred_username", "email", "sub") if _usable(claims.get(k))), "")
        roles = claims.get(self.roles_claim) or []
        return identity, tuple(str(r) for r in roles) if isinstance(roles, list) else ()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(code_verifier)), no padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _usable(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128 and all(c.isprintable() for c in value)


@dataclass(frozen=True, slots=True)
class PageSession:
    identity: str
    roles: tuple[str, ...]
    expires: float


@dataclass
class Sessions:
    """Server-side page sessions (a random id in a cookie) and pending OIDC logins; both bounded."""

    clock: Callable[[], float] = time.time
    sessions: dict[str, PageSession] = field(default_factory=dict)
    pending: dict[str, OidcLogin] = field(default_factory=dict)

    def open(self, identity: str, roles: tuple[str, ...]) -> str:
        now = self.clock()
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions = {k: s for k, s in self.sessions.items() if s.expires > now}
            if len(self.sessions) >= MAX_SESSIONS:  # still full: the oldest tenth goes
                for sid in sorted(self.sessions, key=lambda k: self.sessions[k].expires)[: MAX_SESSIONS // 10]:
                    del self.sessions[sid]
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = PageSession(identity, roles, now + SESSION_TTL)
        return sid

    def get(self, sid: str) -> PageSession | None:
        session = self.sessions.get(sid)
        if session is not None and session.expires <= self.clock():
            del self.sessions[sid]
            return None
        return session

    def wait(self, login: OidcLogin) -> str:
        now = self.clock()
        if len(self.pending) > 1000:
            self.pending = {k: p for k, p in self.pending.items() if p.expires > now}
        state = secrets.token_urlsafe(24)
        self.pending[state] = replace(login, expires=now + PENDING_TTL)
        return state

    def came_back(self, state: str) -> OidcLogin | None:
        login = self.pending.pop(state, None)
        return login if login is not None and login.expires > self.clock() else None


def safe_next(value: str | None) -> str:
    """Where to go after the login: a path on this server only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def hash_password_main(argv: list[str]) -> int:
    """``roomcast hash-password``: a password from stdin (or asked twice on a terminal) → its argon2 hash."""
    import getpass
    import sys

    if argv:
        print("usage: roomcast hash-password  (reads the password from stdin or the terminal)", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("roomcast hash-password: the two differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("roomcast hash-password: use at least 8 characters", file=sys.stderr)
        return 1
    from argon2 import PasswordHasher

    print(PasswordHasher().hash(password))
    return 0
