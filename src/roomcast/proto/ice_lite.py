"""ICE-lite agent (RFC 8445 §2.5, §7.3): the controlled side that only answers checks.

A lite agent never sends checks; it answers Binding requests that carry the right USERNAME and
MESSAGE-INTEGRITY, and the full agent on the other side nominates a pair with USE-CANDIDATE. Consent
freshness (RFC 7675 §5.1) is judged by the same checks: no valid check from the selected address for
``consent_timeout`` seconds and the connection is dead.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from roomcast.proto.common import Addr, Transmit
from roomcast.wire import ParseError
from roomcast.wire.stun import (
    BINDING,
    CLASS_REQUEST,
    ICE_CONTROLLED,
    ICE_CONTROLLING,
    USE_CANDIDATE,
    StunMessage,
    binding_error,
    binding_success,
    check_fingerprint,
    check_integrity,
)


@dataclass(frozen=True, slots=True)
class Selected:
    """The controlling agent nominated ``remote``; media goes there from now on."""

    remote: Addr


@dataclass(frozen=True, slots=True)
class ConsentExpired:
    remote: Addr


IceEvent = Selected | ConsentExpired


class IceLiteAgent:
    def __init__(
        self,
        local_ufrag: str,
        local_pwd: str,
        remote_ufrag: str | None = None,
        remote_pwd: str | None = None,
        *,
        consent_timeout: float = 30.0,
    ) -> None:
        self.local_ufrag = local_ufrag
        self.local_pwd = local_pwd
        self.remote_ufrag = remote_ufrag
        self.remote_pwd = remote_pwd
        self.consent_timeout = consent_timeout
        self.selected: Addr | None = None
        self.counters: Counter[str] = Counter()
        self._last_check: float | None = None
        self._expired = False
        self._transmits: deque[Transmit] = deque()
        self._events: deque[IceEvent] = deque()

    def set_remote_credentials(self, ufrag: str, pwd: str) -> None:
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    def handle_stun(self, data: bytes, remote: Addr, now: float) -> None:
        try:
            message = StunMessage.parse(data)
        except ParseError:
            self.counters["malformed"] += 1
            return
        if message.method != BINDING or message.klass != CLASS_REQUEST:
            self.counters["not_a_binding_request"] += 1  # a lite agent sends no requests: no responses expected
            return
        username = message.username or ""
        local, _, remote_ufrag = username.partition(":")
        if local != self.local_ufrag or (self.remote_ufrag is not None and remote_ufrag != self.remote_ufrag):
            self.counters["unknown_ufrag"] += 1
            return
        if message.has(ICE_CONTROLLED) and not message.has(ICE_CONTROLLING):
            # §7.3.1.1: both sides controlled; a lite agent cannot take the controlling role.
            self.counters["role_conflict"] += 1
            self._transmits.append(Transmit(remote, binding_error(message, 487, "Role Conflict", self.local_pwd)))
            return
        if not check_integrity(data, self.local_pwd.encode()):
            # RFC 8489 §9.1.3: a bad MESSAGE-INTEGRITY gets a 401 or is silently discarded; discarding
            # gives an attacker no oracle and costs us nothing.
            self.counters["bad_integrity"] += 1
            return
        if message.get(0x8028) is not None and not check_fingerprint(data):
            self.counters["bad_fingerprint"] += 1
            return
        self.counters["checks"] += 1
        self._transmits.append(Transmit(remote, binding_success(message, remote, self.local_pwd)))
        if remote == self.selected:
            self._last_check = now
        elif message.has(USE_CANDIDATE):
            self.selected = remote
            self._last_check = now
            self._expired = False
            self._events.append(Selected(remote))

    def handle_timeout(self, now: float) -> None:
        deadline = self.poll_timeout()
        if deadline is not None and now >= deadline and self.selected is not None:
            self._expired = True
            self._events.append(ConsentExpired(self.selected))

    def poll_timeout(self) -> float | None:
        if self._last_check is None or self._expired:
            return None
        return self._last_check + self.consent_timeout

    def poll_transmit(self) -> Transmit | None:
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> IceEvent | None:
        return self._events.popleft() if self._events else None
