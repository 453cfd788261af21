import base64
import json

import jwt
import pytest

from roomcast.rooms.tokens import MAX_TOKEN_LIFETIME, Grants, TokenError, mint, parse_duration, verify

KEYS = {"key1": "a-secret-that-is-long-enough-for-hs256-0123"}
NOW = 1_800_000_000.0


def token(**kw: object) -> str:
    args: dict = {"identity": "alice", "grants": Grants(room="r1"), "now": NOW}
    args.update(kw)
    return mint("key1", KEYS["key1"], **args)


def test_valid_token_round_trips_grants() -> None:
    t = token(grants=Grants(room="r1", can_publish=False, room_admin=True), name="Alice")
    got = verify(t, KEYS, now=NOW + 1)
    assert (got.identity, got.name, got.grants.room) == ("alice", "Alice", "r1")
    assert got.grants.can_publish is False and got.grants.room_admin is True
    assert got.expires_at == pytest.approx(NOW + 6 * 3600, abs=1)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: token(now=NOW - 7 * 3600), "token_expired"),
        (
            lambda: mint(
                "key1",
                "wrong-secret-wrong-secret-wrong-secret!",
                identity="a",
                grants=Grants(room="r"),
                now=NOW,
            ),
            "invalid_signature",
        ),
        (
            lambda: mint("other", KEYS["key1"], identity="a", grants=Grants(room="r"), now=NOW),
            "invalid_token",
        ),
        (lambda: "", "missing_token"),
        (lambda: "not.a.jwt", "invalid_token"),
        (lambda: jwt.encode({"iss": "key1", "sub": "a"}, KEYS["key1"], algorithm="HS256"), "invalid_token"),
        (
            lambda: jwt.encode({"iss": "key1", "sub": "a", "exp": NOW + 60}, KEYS["key1"], algorithm="HS512"),
            "invalid_token",
        ),
        (
            lambda: jwt.encode({"iss": "key1", "sub": "a b", "exp": NOW + 60}, KEYS["key1"], algorithm="HS256"),
            "invalid_token",
        ),
        (
            lambda: jwt.encode(
                {"iss": "key1", "sub": "a", "exp": NOW + 60, "grants": {"canPublish": "yes"}},
                KEYS["key1"],
                algorithm="HS256",
            ),
            "invalid_token",
        ),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(make, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenError) as info:
        verify(make(), KEYS, now=NOW)
    assert info.value.code == code


@pytest.mark.parametrize("exp", [1e300, NOW + 100 * 365 * 86400, float("nan"), True])
def test_absurd_expiry_is_refused(exp: float) -> None:
    """M4: ``exp: 1e300`` (or NaN, or a boolean) was accepted; a token lives at most MAX_TOKEN_LIFETIME."""
    raw = jwt.encode({"iss": "key1", "sub": "a", "exp": exp}, KEYS["key1"], algorithm="HS256")
    with pytest.raises(TokenError) as info:
        verify(raw, KEYS, now=NOW)
    assert info.value.code == "invalid_token"


def test_mint_refuses_a_lifetime_past_the_cap() -> None:
    with pytest.raises(ValueError):
        mint("key1", KEYS["key1"], identity="a", grants=Grants(room="r"), now=NOW, ttl=MAX_TOKEN_LIFETIME + 1)


def test_issue_time_is_carried_for_revocation() -> None:
    assert verify(token(), KEYS, now=NOW + 1).issued_at == pytest.approx(NOW, abs=0.01)
    no_iat = jwt.encode({"iss": "key1", "sub": "a", "exp": NOW + 60}, KEYS["key1"], algorithm="HS256")
    assert verify(no_iat, KEYS, now=NOW).issued_at == float("-inf")


def test_alg_none_is_refused() -> None:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    forged = b64({"alg": "none", "typ": "JWT"}) + "." + b64({"iss": "key1", "sub": "a", "exp": NOW + 60}) + "."
    with pytest.raises(TokenError) as info:
        verify(forged, KEYS, now=NOW)
    assert info.value.code == "invalid_token"


def test_durations() -> None:
    assert parse_duration("6h") == 21600
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    with pytest.raises(ValueError):
        parse_duration("-1h")
    with pytest.raises(ValueError):
        parse_duration("soon")
