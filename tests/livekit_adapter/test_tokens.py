"""LiveKit-format access tokens, minted by ``livekit-api``'s own ``AccessToken``, verified by rooms/tokens.py."""

from __future__ import annotations

import datetime
import time

import jwt
import pytest
from livekit import api

from roomcast.rooms.tokens import TokenError, verify

KEY, SECRET = "lkkey", "a-livekit-style-secret-long-enough-for-hs256"
KEYS = {KEY: SECRET}


def lk_token(grants: api.VideoGrants, *, identity: str = "bob", ttl: float = 600, secret: str = SECRET) -> str:
    token = api.AccessToken(KEY, secret).with_identity(identity).with_name("Bob").with_grants(grants)
    return token.with_ttl(datetime.timedelta(seconds=ttl)).to_jwt()


def test_video_grant_maps_onto_our_grants() -> None:
    raw = lk_token(api.VideoGrants(room_join=True, room="r1", can_publish=False, room_admin=True, hidden=True))
    got = verify(raw, KEYS, now=time.time())
    assert (got.identity, got.name, got.api_key) == ("bob", "Bob", KEY)
    g = got.grants
    assert (g.room, g.can_publish, g.can_subscribe, g.can_publish_data, g.room_admin, g.hidden) == (
        "r1",
        False,
        True,
        True,
        True,
        True,
    )


def test_unset_permissions_default_to_allowed() -> None:
    claims = {"iss": KEY, "sub": "eve", "exp": int(time.time()) + 60, "video": {"roomJoin": True, "room": "r2"}}
    got = verify(jwt.encode(claims, SECRET, algorithm="HS256"), KEYS, now=time.time())
    assert (got.grants.can_publish, got.grants.can_subscribe, got.grants.can_publish_data) == (True, True, True)
    assert got.grants.room_admin is False and got.grants.hidden is False


@pytest.mark.parametrize(
    "video",
    [
        {"room": "r1", "roomAdmin": True},  # no roomJoin: a management token, not a join
        {"roomJoin": True},  # no room
        {"roomJoin": "yes", "room": "r1"},
    ],
)
def test_tokens_that_cannot_join_are_refused(video: dict[str, object]) -> None:
    claims = {"iss": KEY, "sub": "eve", "exp": int(time.time()) + 60, "video": video}
    with pytest.raises(TokenError) as err:
        verify(jwt.encode(claims, SECRET, algorithm="HS256"), KEYS, now=time.time())
    assert err.value.code == "missing_grant"


def test_wrong_secret_and_expired_are_refused() -> None:
    grants = api.VideoGrants(room_join=True, room="r1")
    with pytest.raises(TokenError) as err:
        verify(lk_token(grants, secret="another-secret-of-sufficient-length-000"), KEYS, now=time.time())
    assert err.value.code == "invalid_signature"
    with pytest.raises(TokenError) as err:
        verify(lk_token(grants, ttl=60), KEYS, now=time.time() + 3600)
    assert err.value.code == "token_expired"


def test_a_video_claim_that_is_not_an_object_is_refused() -> None:
    claims = {"iss": KEY, "sub": "eve", "exp": int(time.time()) + 60, "video": "roomJoin"}
    with pytest.raises(TokenError) as err:
        verify(jwt.encode(claims, SECRET, algorithm="HS256"), KEYS, now=time.time())
    assert err.value.code == "invalid_token"
