"""ICE-lite agent (RFC 8445 §2.5, §7.3): the controlled side that only answers checks.

A lite agent never sends checks; it answers Binding requests that carry the right USERNAME and
MESSAGE-INTEGRITY, and the full agent on the other side nominates a pair with USE-CANDIDATE. Integrity
comes first on every path (role conflict, nomination, restart, consent): the ufrags are public, so a
request without the password gets no answer of any kind and changes no state. Only a success response
validates an address (:class:`Validated`). Consent
freshness (RFC 7675 §5.1) is judged by the same checks: no valid check from the selected address for
``consent_timeout`` seconds and the connection is dead.

ICE restart (RFC 8445 §9, RFC 8839 §4.4.1.1.1): a re-offer with new remote credentials gets new local
ones. Until the peer nominates a pair with the new credentials, checks with the previous ones are still
answered (media keeps flowing on the old pair meanwhile); after that nomination only the new ones are.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from roomcast.proto.common import Addr, Transmit
from roomcast.wire import ParseError
from roomcast.wire.stun import (
    BINDING,
    CLASS_REQUEST,
    FINGERPRINT,
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
class Validated:
    """A Binding request from ``remote`` passed MESSAGE-INTEGRITY and was answered with a success: the
    peer proved it holds the password there, so DTLS and SRTP from ``remote`` may be accepted. The only
    way an address becomes valid (an answer is not proof: a 487 is an answer too)."""

    remote: Addr


@dataclass(frozen=True, slots=True)
class Selected:
    """The controlling agent nominated ``remote``; media goes there from now on."""

    remote: Addr


@dataclass(frozen=True, slots=True)
class ConsentExpired:
    remote: Addr


@dataclass(frozen=True, slots=True)
class RestartCompleted:
    """The peer nominated ``remote`` with the new credentials: ``retired_ufrag`` is no longer accepted."""

    retired_ufrag: str
    remote: Addr


IceEvent = Validated | Selected | ConsentExpired | RestartCompleted


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
        self.validated: set[Addr] = set()  # addresses that passed a check (see Validated)
        self.counters: Counter[str] = Counter()
        self._last_check: float | None = None
        self._expired = False
        self._transmits: deque[Transmit] = deque()
        self._events: deque[IceEvent] = deque()
        # (local ufrag, local pwd, remote ufrag) in use before a restart, until the restart completes
        self._previous: tuple[str, str, str | None] | None = None

    def set_remote_credentials(self, ufrag: str, pwd: str) -> None:
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    @property
    def restarting(self) -> bool:
        return self._previous is not None

    def restart(self, local_ufrag: str, local_pwd: str, remote_ufrag: str, remote_pwd: str) -> str | None:
        """Install new credentials on both sides (RFC 8445 §9); the selected pair and consent carry on.

        Returns a local ufrag that stopped being accepted right now: a restart that replaces one that
        never completed drops the pending credentials (the previous, working ones stay until completion),
        so at most two sets are ever live."""
        dropped: str | None = None
        if self._previous is None:
            self._previous = (self.local_ufrag, self.local_pwd, self.remote_ufrag)
        else:
            dropped = self.local_ufrag
        self.local_ufrag, self.local_pwd = local_ufrag, local_pwd
        self.remote_ufrag, self.remote_pwd = remote_ufrag, remote_pwd
        self.counters["restarts"] += 1
        return dropped

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
        pwd = self.local_pwd
        current = local == self.local_ufrag and (self.remote_ufrag is None or remote_ufrag == self.remote_ufrag)
        if not current:
            previous = self._previous
            if previous is None or local != previous[0] or (previous[2] is not None and remote_ufrag != previous[2]):
                self.counters["unknown_ufrag"] += 1
                return
            pwd = previous[1]  # a check on the pair in use before the restart: still answered
        # Integrity before anything else (RFC 8445 §7.3, RFC 8489 §9.1.3): the ufrags travel in clear
        # SDP and USERNAME, so nothing but the password proves the sender. A bad MESSAGE-INTEGRITY is
        # silently discarded (RFC 8489 allows a 401 instead): no answer, no oracle, nothing validated.
        if not check_integrity(data, pwd.encode()):
            self.counters["bad_integrity"] += 1
            return
        if message.has(FINGERPRINT) and not check_fingerprint(data):
            self.counters["bad_fingerprint"] += 1
            return
        if message.has(ICE_CONTROLLED) and not message.has(ICE_CONTROLLING):
            # §7.3.1.1: both sides controlled; a lite agent cannot take the controlling role, so it keeps
            # its role and answers 487. An error response validates nothing: no address, no consent, no
            # nomination (§7.2.5.2.4 has the peer switch roles and check again).
            self.counters["role_conflict"] += 1
            self._transmits.append(Transmit(remote, binding_error(message, 487, "Role Conflict", pwd)))
            return
        self.counters["checks"] += 1
        self._transmits.append(Transmit(remote, binding_success(message, remote, pwd)))
        if remote not in self.validated:
            self.validated.add(remote)
            self._events.append(Validated(remote))
        nominated = message.has(USE_CANDIDATE)
        if remote == self.selected:
            self._last_check = now
        elif nominated:
            self.selected = remote
            self._last_check = now
            self._expired = False
            self._events.append(Selected(remote))
        if current and nominated and self._previous is not None:
            retired = self._previous[0]
            self._previous = None
            self.validated = {remote}  # addresses of the old generation must prove themselves again
            self.counters["restarts_completed"] += 1
            self._events.append(RestartCompleted(retired, remote))

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
