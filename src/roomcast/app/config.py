"""Server configuration: flags over ``ROOMCAST_*`` environment variables over a TOML file over defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEV_API_KEY = "devkey"
DEV_API_SECRET = "devsecret"
MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash output can be brute-forced offline from one token


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 7880
    media_port: int = 7882
    # ICE over TCP (RFC 6544 passive candidates, runtime/tcp.py) for clients whose UDP is blocked; 0 = off
    media_tcp_port: int = 7881
    media_tcp_public_port: int = 0  # announced instead, when a port forward (say 443 -> 7881) sits in front
    media_tcp_max_per_ip: int = 256  # open ICE-TCP connections per source IP (many users share an office NAT)
    media_tcp_max_handshaking_per_ip: int = 16  # of those, still without a validated STUN check
    media_tcp_max_connections: int = 1024  # open ICE-TCP connections in all
    media_tcp_handshake_timeout: float = 10.0  # a connection without a validated STUN check by then is closed
    media_host: str = ""
    public_ip: str = ""
    api_key: str = ""
    api_secret: str = ""
    max_rooms: int = 1000
    max_participants: int = 50
    auto_create_rooms: bool = True
    default_room_mode: str = "sfu"
    max_incoming_bitrate: int = 0
    max_publishers: int = 0
    max_tracks_per_participant: int = 8
    # transport-cc with browsers (docs/adaptive.md): GCC per subscriber instead of its REMB, feedback to publishers
    transport_cc: bool = False
    join_timeout: float = 10.0
    resume_window: float = 20.0  # a participant whose socket drops keeps its place (and media) this long
    consent_timeout: float = 30.0  # RFC 7675: media transport declared dead after this long without checks
    drain_timeout: float = 5.0  # on SIGTERM, how long open signaling sockets may stay (raise it in production)
    messages_per_second: float = 50.0
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line with the event's fields (app/logs.py)
    # a login in front of the built-in pages (app/identity.py): password users and/or OpenID Connect
    users_file: str = ""  # TOML [users.NAME] password (argon2 hash), roles; [roles.ROLE] grants
    roles_file: str = ""  # TOML [roles.ROLE] grants (also read from users_file)
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""  # env/TOML only
    oidc_roles_claim: str = "roles"
    tls_cert: str = ""
    tls_key: str = ""
    turn_secret: str = ""
    turn_host: str = ""
    turn_port: int = 3478
    turn_tls_port: int = 0
    turn_ttl: float = 300.0
    max_connections_per_ip: int = 200  # signaling sockets per source IP; behind a reverse proxy raise it or 0
    # The HTTP port itself (every TCP connection, before any request is parsed): see app/http_guard.py.
    max_sockets: int = 0  # open sockets in all; 0 = derived from the file-descriptor limit
    max_sockets_per_ip: int = 256  # per source IP (IPv6: per /64); behind a reverse proxy use 0 (no limit)
    header_timeout: float = 10.0  # a request head, or a WebSocket handshake, must arrive within this
    allowed_hosts: str = ""  # comma-separated Host names ("*.example.com", "*"); empty: see app/http_policy.py
    # WHIP/WHEP (docs/whip.md): session POSTs per second per client (burst twice that), sessions on this node,
    # and how long a session may wait for its ICE to connect before it is ended
    whip_posts_per_second: float = 5.0
    max_whip_sessions: int = 1000
    whip_connect_timeout: float = 20.0
    # Cluster (docs/deploy.md): nodes sharing this Redis are one cluster; empty = this process alone.
    redis_url: str = ""
    node_id: str = ""  # this node's name in the cluster registry; empty = a random one
    recordings_dir: str = ""  # where POST /api/rooms/{room}/recordings writes files; empty = recordings off
    webhook_urls: str = ""  # comma-separated; each gets every event (app/webhooks.py, docs/whip.md)
    metrics_token: str = ""  # when set, GET /metrics needs "Authorization: Bearer <it>" (env/TOML only)
    dev_mode: bool = field(default=False)

    @property
    def keys(self) -> dict[str, str]:
        return {self.api_key: self.api_secret}


_ENV_PREFIX = "ROOMCAST_"


def _coerce(name: str, value: Any, kind: Any) -> Any:
    try:
        if kind in ("bool", bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind in ("int", int):
            return int(value)
        if kind in ("float", float):
            return float(value)
        if isinstance(value, list):  # TOML arrays, e.g. allowed_hosts = ["a.example", "b.example"]
            return ",".join(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid value {value!r} for {name}") from None


def load(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Config:
    """Build the configuration; secrets never come from flags (they would show in ``ps``)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Config)}
    path = config_file or env.get(_ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in types or name == "dev_mode":
                raise ConfigError(f"unknown setting {key!r} in {path}")
            values[name] = _coerce(name, value, types[name])
    for name, kind in types.items():
        raw = env.get(_ENV_PREFIX + name.upper())
        if raw is not None and name != "dev_mode":
            values[name] = _coerce(name, raw, kind)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, types[name])
    config = Config(**values)
    if not config.api_key and not config.api_secret:
        config = replace(config, api_key=DEV_API_KEY, api_secret=DEV_API_SECRET, dev_mode=True)
    elif not config.api_key or not config.api_secret:
        raise ConfigError("set both ROOMCAST_API_KEY and ROOMCAST_API_SECRET, or neither for dev mode")
    elif len(config.api_secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"ROOMCAST_API_SECRET is {len(config.api_secret.encode())} bytes; use at least {MIN_SECRET_BYTES} random "
            "bytes (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    for name in ("port", "media_port", "media_tcp_port", "media_tcp_public_port"):
        if not (0 <= getattr(config, name) <= 65535):
            raise ConfigError(f"{name} {getattr(config, name)} out of range")
    if (
        config.media_tcp_max_per_ip < 1
        or config.media_tcp_max_handshaking_per_ip < 1
        or config.media_tcp_max_connections < 1
        or config.media_tcp_handshake_timeout <= 0
    ):
        raise ConfigError("the media_tcp_max_* limits and media_tcp_handshake_timeout must be positive")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    for path in (config.tls_cert, config.tls_key):
        if path and not Path(path).is_file():
            raise ConfigError(f"no such file: {path}")
    if bool(config.turn_secret) != bool(config.turn_host):
        raise ConfigError("TURN needs both ROOMCAST_TURN_SECRET and --turn-host (ROOMCAST_TURN_HOST)")
    if (config.users_file or config.oidc_issuer) and config.dev_mode:
        raise ConfigError(
            "a page login (--users/--oidc-issuer) needs ROOMCAST_API_KEY/ROOMCAST_API_SECRET: with the public dev "
            "key anyone can mint tokens and skip the login"
        )
    if config.oidc_issuer and not (config.oidc_client_id and config.oidc_client_secret):
        raise ConfigError("OpenID Connect needs --oidc-client-id and ROOMCAST_OIDC_CLIENT_SECRET")
    if config.log_format not in ("text", "json"):
        raise ConfigError("log_format must be 'text' or 'json'")
    if config.default_room_mode not in ("sfu", "p2p"):
        raise ConfigError("default_room_mode must be 'sfu' or 'p2p'")
    if config.consent_timeout <= 0 or config.drain_timeout < 0:
        raise ConfigError("consent_timeout must be positive and drain_timeout not negative")
    if config.header_timeout <= 0 or config.max_sockets < 0 or config.max_sockets_per_ip < 0:
        raise ConfigError("header_timeout must be positive, max_sockets and max_sockets_per_ip not negative")
    if config.redis_url and not config.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"redis_url must be redis://host:port/db, rediss://... or unix://path, not {config.redis_url!r}"
        )
    if config.max_participants < 1 or config.max_rooms < 1:
        raise ConfigError("max_participants and max_rooms must be at least 1")
    return config
