"""The controlling agent answers the peer's own checks (RFC 8445 §7.3), as a full agent must."""

from __future__ import annotations

import os

from roomcast.proto.ice_controlling import IceControllingAgent, IceFailed
from roomcast.wire.stun import CLASS_SUCCESS, StunMessage, binding_error, binding_request, check_integrity

PEER = ("127.0.0.2", 4000)
US = ("127.0.0.1", 5000)


def agent() -> IceControllingAgent:
    a = IceControllingAgent("ours", "our-password-0123456789", "theirs", "their-password-012345", PEER)
    a.start(0.0)
    while a.poll_transmit() is not None:  # our own first check
        pass
    return a


def check(username: str, password: str) -> bytes:
    return binding_request(os.urandom(12), username, password, priority=1, controlling=False, tie_breaker=7)


def test_a_valid_triggered_check_gets_a_success_response_with_the_mapped_address() -> None:
    a = agent()
    request = check("ours:theirs", "our-password-0123456789")
    a.handle_stun(request, US, 0.1)
    transmit = a.poll_transmit()
    assert transmit is not None and transmit.remote == US
    response = StunMessage.parse(transmit.data)
    assert response.klass == CLASS_SUCCESS
    assert response.transaction_id == StunMessage.parse(request).transaction_id
    assert response.xor_mapped_address() == US
    assert check_integrity(transmit.data, b"our-password-0123456789")
    assert not a.nominated  # answering a check nominates nothing: only our own check's success does


def test_checks_with_a_wrong_username_or_password_get_no_answer() -> None:
    a = agent()
    a.handle_stun(check("ours:someone", "our-password-0123456789"), US, 0.1)
    a.handle_stun(check("ours:theirs", "not-our-password-00000"), US, 0.1)
    assert a.poll_transmit() is None
    assert a.counters["unknown_request"] == 1 and a.counters["bad_integrity"] == 1


def test_an_error_response_counts_only_with_integrity() -> None:
    """RFC 8489 §9.1.4 (issue 12 M1, the client side): anyone who saw a transaction id could otherwise
    end the session with one unsigned 487."""
    a = IceControllingAgent("ours", "our-password-0123456789", "theirs", "their-password-012345", PEER)
    a.start(0.0)
    sent = a.poll_transmit()
    assert sent is not None
    request = StunMessage.parse(sent.data)
    a.handle_stun(binding_error(request, 487, "Role Conflict"), PEER, 0.05)
    a.handle_stun(binding_error(request, 487, "Role Conflict", "not-their-password-0"), PEER, 0.05)
    assert (a.failed, a.poll_event(), a.counters["bad_integrity_response"]) == (False, None, 2)
    a.handle_stun(binding_error(request, 487, "Role Conflict", "their-password-012345"), PEER, 0.06)
    assert a.failed and isinstance(a.poll_event(), IceFailed)
