"""Access tokens: HS256 JWTs carrying the grants a participant holds.

Claims: ``iss`` (API key that signed it), ``sub`` (identity), ``exp`` (required), ``nbf``, ``jti``,
``name``, ``metadata`` and ``grants`` (room, canPublish, canSubscribe, canPublishData, roomAdmin, hidden).
Only HS256 is accepted, so ``alg: none`` and algorithm-confusion tokens are refused by construction.
LiveKit-format tokens (their ``video`` grant instead of ``grants``, as ``livekit-api``'s ``AccessToken`` mints
them) signed with our key and secret are accepted too and mapped onto the same :class:`Grants`.
"""

from __future__ import annotations

import math
import re
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from roomcast.errors import CodedError

# The dev pair (devkey/devsecret) is short by design and announced loudly at start; production secrets are
# checked for length in the configuration instead of warning on every token.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

DEFAULT_TTL = 6 * 3600.0
# No token lives longer than this (``exp: 1e300`` or a 100-year admin token is refused): it bounds how long a
# kick must be remembered, since every token issued before the kick has expired by then.
MAX_TOKEN_LIFETIME = 30 * 86400.0
_IDENTITY = re.compile(r"^[A-Za-z0-9_.@:+\-]{1,128}$")
_ROOM = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


class TokenError(CodedError, ValueError):
    """A refused token; ``code`` is the reason sent to the client."""


@dataclass(frozen=True, slots=True)
class Grants:
    """What the bearer may do. ``room`` empty means "any room" (only meaningful for admins)."""

    room: str = ""
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    room_admin: bool = False
    hidden: bool = False

    def to_claims(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "canPublish": self.can_publish,
            "canSubscribe": self.can_subscribe,
            "canPublishData": self.can_publish_data,
            "roomAdmin": self.room_admin,
            "hidden": self.hidden,
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Grants:
        def flag(key: str, default: bool) -> bool:
            value = claims.get(key, default)
            if not isinstance(value, bool):
                raise TokenError("invalid_token", f"grant {key!r} must be a boolean")
            return value

        room = claims.get("room", "")
        if not isinstance(room, str):
            raise TokenError("invalid_token", "grant 'room' must be a string")
        return cls(
            room=room,
            can_publish=flag("canPublish", True),
            can_subscribe=flag("canSubscribe", True),
            can_publish_data=flag("canPublishData", True),
            room_admin=flag("roomAdmin", False),
            hidden=flag("hidden", False),
        )

    @classmethod
    def from_livekit_video(cls, video: Mapping[str, Any]) -> Grants:
        """LiveKit's ``video`` grant. Its unset permissions default to allowed (LiveKit's ``*bool`` nil), and
        a token without ``roomJoin`` is refused here: it only manages rooms on LiveKit (its Twirp API), and
        mapping it onto a join-any-room grant would widen it."""
        if video.get("roomJoin") is not True:
            raise TokenError("missing_grant", "LiveKit token lacks the video.roomJoin grant")
        claims = {key: video.get(key) for key in ("room", "canPublish", "canSubscribe", "canPublishData", "hidden")}
        claims["roomAdmin"] = video.get("roomAdmin", False)
        grants = cls.from_claims({k: v for k, v in claims.items() if v is not None})
        if not grants.room:
            raise TokenError("missing_grant", "LiveKit token's video grant names no room")
        return grants


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified token."""

    api_key: str
    identity: str
    name: str
    grants: Grants
    expires_at: float
    token_id: str
    metadata: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    issued_at: float = float("-inf")  # ``iat`` (else ``nbf``); unknown issue times count as "long ago"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``2d`` → seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 15m, 6h, 2d")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * scale


def validate_identity(identity: str) -> str:
    if not _IDENTITY.match(identity):
        raise ValueError("identity must be 1-128 characters of letters, digits and _ . @ : + -")
    return identity


def validate_room(room: str) -> str:
    if not _ROOM.match(room):
        raise ValueError("room name must be 1-128 characters of letters, digits and _ . -")
    return room


def mint(
    api_key: str,
    api_secret: str,
    *,
    identity: str,
    grants: Grants,
    now: float,
    ttl: float = DEFAULT_TTL,
    name: str | None = None,
    metadata: str | None = None,
) -> str:
    """Sign a token. ``now`` is an argument so tests can mint already-expired tokens."""
    if not 0 < ttl <= MAX_TOKEN_LIFETIME:
        raise ValueError(f"token lifetime must be between 0 and {MAX_TOKEN_LIFETIME / 86400:g} days")
    validate_identity(identity)
    if grants.room:
        validate_room(grants.room)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "iat": round(now, 3),
        "nbf": int(now) - 10,
        "exp": int(now + ttl),
        "jti": secrets.token_urlsafe(12),
        "name": name or identity,
        "grants": grants.to_claims(),
    }
    if metadata is not None:
        claims["metadata"] = metadata
    return jwt.encode(claims, api_secret, algorithm="HS256")


def verified_claims(token: str, keys: Mapping[str, str], *, now: float, leeway: float = 5.0) -> dict[str, Any]:
    """The claims of a token whose signature, ``exp``, ``nbf`` and ``iat`` check out (with ``_issued_at``);
    raise :class:`TokenError` with a reason otherwise. What the claims grant is the caller's to read."""
    if not token:
        raise TokenError("missing_token", "no access token given")
    if len(token) > 8192:
        raise TokenError("invalid_token", "token too long")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"malformed token: {exc}") from None
    if header.get("alg") != "HS256":
        raise TokenError("invalid_token", f"algorithm {header.get('alg')!r} not allowed, use HS256")
    api_key = unverified.get("iss")
    if not isinstance(api_key, str) or api_key not in keys:
        raise TokenError("invalid_token", "token signed with an unknown API key")
    try:
        claims = jwt.decode(
            token,
            keys[api_key],
            algorithms=["HS256"],
            options={
                "require": ["exp", "sub", "iss"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenError("invalid_signature", "token signature does not match the API secret") from None
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"invalid token: {exc}") from None
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise TokenError("invalid_token", "claim 'exp' must be a finite number")
    if now > exp + leeway:
        raise TokenError("token_expired", "token has expired")
    if exp > now + MAX_TOKEN_LIFETIME + leeway:
        days = MAX_TOKEN_LIFETIME / 86400
        raise TokenError("invalid_token", f"token lifetime over {days:g} days: mint a shorter one")
    nbf = claims.get("nbf")
    if isinstance(nbf, bool) or (nbf is not None and not isinstance(nbf, int | float)):
        raise TokenError("invalid_token", "claim 'nbf' must be a number")
    if nbf is not None and now + leeway < nbf:
        raise TokenError("token_not_yet_valid", "token is not valid yet")
    iat = claims.get("iat")
    if isinstance(iat, bool) or (iat is not None and not isinstance(iat, int | float)):
        raise TokenError("invalid_token", "claim 'iat' must be a number")
    claims["_issued_at"] = float(iat) if iat is not None else float(nbf) if nbf is not None else float("-inf")
    return dict(claims)


def verify(token: str, keys: Mapping[str, str], *, now: float, leeway: float = 5.0) -> AccessToken:
    """Check signature, expiry and shape; raise :class:`TokenError` with a reason otherwise."""
    claims = verified_claims(token, keys, now=now, leeway=leeway)
    api_key, exp, issued_at = claims["iss"], claims["exp"], claims["_issued_at"]
    identity = claims["sub"]
    if not isinstance(identity, str) or not _IDENTITY.match(identity):
        raise TokenError("invalid_token", "claim 'sub' is not a valid identity")
    raw_grants = claims.get("grants", {})
    if not isinstance(raw_grants, dict):
        raise TokenError("invalid_token", "claim 'grants' must be an object")
    video = claims.get("video")
    if "grants" not in claims and video is not None and not isinstance(video, dict):
        raise TokenError("invalid_token", "claim 'video' must be an object")
    name = claims.get("name", identity)
    metadata = claims.get("metadata")
    return AccessToken(
        api_key=api_key,
        identity=identity,
        name=name if isinstance(name, str) and name else identity,
        grants=Grants.from_livekit_video(video) if "grants" not in claims and video else Grants.from_claims(raw_grants),
        expires_at=float(exp),
        token_id=str(claims.get("jti", "")),
        metadata=metadata if isinstance(metadata, str) else None,
        issued_at=issued_at,
    )
