"""The controlling side of ICE against an ICE-lite server (RFC 8445 §2.5, §7.2; consent RFC 7675).

A lite server offers one host candidate per transport and never checks back, so the client sends
Binding requests with USE-CANDIDATE (aggressive nomination) to it, retransmitting until answered, and
then a consent check every few seconds for as long as the session lasts. Checks *from* the peer are
answered too (§7.3): some lite implementations (libnice, hence Janus) send triggered checks and nominate
only once we answer them.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter, deque
from dataclasses import dataclass

from roomcast.proto.common import Addr, Transmit
from roomcast.wire import ParseError
from roomcast.wire.stun import (
    BINDING,
    CLASS_ERROR,
    CLASS_REQUEST,
    CLASS_SUCCESS,
    StunMessage,
    binding_request,
    binding_success,
    check_integrity,
)

RETRANSMIT = 0.1
CONSENT_INTERVAL = 5.0
GIVE_UP = 15.0


@dataclass(frozen=True, slots=True)
class Nominated:
    remote: Addr


@dataclass(frozen=True, slots=True)
class IceFailed:
    reason: str


class IceControllingAgent:
    def __init__(self, local_ufrag: str, local_pwd: str, remote_ufrag: str, remote_pwd: str, remote: Addr) -> None:
        self.local_ufrag = local_ufrag
        self.local_pwd = local_pwd
        self.remote_ufrag = remote_ufrag
        self.remote_pwd = remote_pwd
        self.remote = remote
        self.nominated = False
        self.failed = False
        self.counters: Counter[str] = Counter()
        self._tie_breaker = int.from_bytes(os.urandom(8), "big")
        self._pending: bytes | None = None
        self._next: float | None = None
        self._started: float | None = None
        self._last_success = 0.0
        self._transmits: deque[Transmit] = deque()
        self._events: deque[Nominated | IceFailed] = deque()

    def start(self, now: float) -> None:
        self._started = now
        self._check(now)

    def _check(self, now: float) -> None:
        self._pending = secrets.token_bytes(12)
        request = binding_request(
            self._pending,
            f"{self.remote_ufrag}:{self.local_ufrag}",
            self.remote_pwd,
            priority=0x7E0000FF,
            controlling=True,
            tie_breaker=self._tie_breaker,
            use_candidate=True,
        )
        self._transmits.append(Transmit(self.remote, request))
        self._next = now + (RETRANSMIT if not self.nominated else CONSENT_INTERVAL)

    def handle_stun(self, data: bytes, remote: Addr, now: float) -> None:
        try:
            message = StunMessage.parse(data)
        except ParseError:
            return
        if message.klass == CLASS_REQUEST:
            self._answer(message, data, remote)
            return
        if message.transaction_id != self._pending or remote != self.remote:
            self.counters["unexpected_response"] += 1
            return
        if message.klass not in (CLASS_SUCCESS, CLASS_ERROR):
            self.counters["unexpected_response"] += 1
            return
        if not check_integrity(data, self.remote_pwd.encode()):
            # RFC 8489 §9.1.4: over UDP a response without valid MESSAGE-INTEGRITY is discarded as if never
            # received, an error response too: else one forged packet with a seen transaction id ends
            # the session. The retransmission timer carries on (and gives up after GIVE_UP).
            self.counters["bad_integrity_response"] += 1
            return
        if message.klass == CLASS_ERROR:
            self._fail(f"check refused with error {message.error_code}")
            return
        self._pending = None
        self._last_success = now
        self._next = now + CONSENT_INTERVAL
        if not self.nominated:
            self.nominated = True
            self._events.append(Nominated(remote))

    def _answer(self, message: StunMessage, data: bytes, remote: Addr) -> None:
        if message.method != BINDING or message.username != f"{self.local_ufrag}:{self.remote_ufrag}":
            self.counters["unknown_request"] += 1
            return
        if not check_integrity(data, self.local_pwd.encode()):
            self.counters["bad_integrity"] += 1
            return
        self._transmits.append(Transmit(remote, binding_success(message, remote, self.local_pwd)))

    def handle_timeout(self, now: float) -> None:
        if self.failed or self._next is None or now < self._next:
            return
        reference = self._last_success if self.nominated else (self._started or now)
        if now - reference > (30.0 if self.nominated else GIVE_UP):
            self._fail("no answer to connectivity checks")
            return
        self._check(now)

    def _fail(self, reason: str) -> None:
        self.failed = True
        self._next = None
        self._events.append(IceFailed(reason))

    def poll_transmit(self) -> Transmit | None:
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> Nominated | IceFailed | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        return self._next
