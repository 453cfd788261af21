"""TURN REST API credentials (draft-uberti-behave-turn-rest-00 §2.2), as coturn's ``use-auth-secret``.

username = "<unix expiry>:<identity>", password = base64(HMAC-SHA1(shared secret, username)). coturn
recomputes the password from the username and refuses it after the expiry: nothing to store, nothing
static in clients.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

DEFAULT_TTL = 300.0


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    password: str
    expires_at: int


def mint_turn_credentials(secret: str, identity: str, now: float, ttl: float = DEFAULT_TTL) -> TurnCredentials:
    expires = int(now + ttl)
    username = f"{expires}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode(), expires)


def ice_servers(
    host: str, port: int, credentials: TurnCredentials, *, tcp: bool = True, tls_port: int | None = None
) -> list[dict[str, object]]:
    """Browser-style ``iceServers``: STUN, TURN over UDP and TCP, and TURNS when coturn has TLS."""
    urls = [f"turn:{host}:{port}?transport=udp"]
    if tcp:
        urls.append(f"turn:{host}:{port}?transport=tcp")
    if tls_port:
        urls.append(f"turns:{host}:{tls_port}?transport=tcp")
    return [
        {"urls": [f"stun:{host}:{port}"]},
        {"urls": urls, "username": credentials.username, "credential": credentials.password},
    ]
