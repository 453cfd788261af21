"""The media plane as signaling sees it: one UDP endpoint, one DTLS certificate, server endpoints.

Implements :class:`roomcast.signaling.media.MediaBackend`. Today the only server endpoint is the echo
test (``$echo``); SFU rooms plug in here next.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.jsep import AnswerParams, NegotiationError, create_answer
from roomcast.proto.webrtc import TransportConnected, TransportFailed, WebRtcTransport, new_ice_credentials
from roomcast.runtime.udp import UdpEndpoint
from roomcast.sfu.echo import EchoSession
from roomcast.signaling.media import MediaError
from roomcast.wire import ParseError
from roomcast.wire.sdp import SessionDescription

log = logging.getLogger("roomcast.media")

MAX_ENDPOINTS_PER_OWNER = 4


def announced_address(bind_host: str, public_ip: str | None) -> str:
    """The IP put in our ICE candidates: explicit, else the bind address, else the default route's."""
    if public_ip:
        return public_ip
    if bind_host not in ("0.0.0.0", "", "::"):
        return bind_host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by connect() on UDP
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@dataclass(eq=False)
class _Owned:
    transport: WebRtcTransport
    session: EchoSession
    created: float
    connected: bool = False


@dataclass
class MediaService:
    endpoint: UdpEndpoint
    certificate: DtlsCertificate
    candidate_ip: str
    clock: Callable[[], float] = time.monotonic
    owners: dict[str, dict[str, _Owned]] = field(default_factory=dict)
    retired: Counter[str] = field(default_factory=Counter)  # counters of closed connections

    @property
    def candidate_port(self) -> int:
        return self.endpoint.local_address[1]

    # ------------------------------------------------------------------ MediaBackend

    def handle_offer(self, owner: str, target: str, sdp: str) -> str:
        if target != "$echo":
            raise MediaError("unknown_endpoint", f"no server endpoint {target!r}")
        try:
            offer = SessionDescription.parse(sdp)
        except ParseError as exc:
            raise MediaError("invalid_sdp", f"cannot parse the offer: {exc}") from None
        ufrag, pwd = new_ice_credentials()
        params = AnswerParams(
            ice_ufrag=ufrag,
            ice_pwd=pwd,
            fingerprint=self.certificate.fingerprint[1],
            candidates=[(self.candidate_ip, self.candidate_port)],
            mode="echo",
        )
        try:
            negotiated = create_answer(offer, params)
        except NegotiationError as exc:
            raise MediaError(exc.code, exc.message) from None
        self.close_endpoint(owner, target)
        endpoints = self.owners.setdefault(owner, {})
        if len(endpoints) >= MAX_ENDPOINTS_PER_OWNER:
            raise MediaError("too_many_transports", "too many media connections for one participant")
        transport = WebRtcTransport(
            self.certificate,
            remote_ufrag=negotiated.remote_ice_ufrag,
            remote_pwd=negotiated.remote_ice_pwd,
            remote_fingerprints=list(negotiated.remote_fingerprints),
            dtls_role=negotiated.dtls_role,
            local_ufrag=ufrag,
            local_pwd=pwd,
        )
        session = EchoSession(transport, negotiated)
        owned = _Owned(transport, session, self.clock())
        endpoints[target] = owned
        self.endpoint.add(transport, lambda: self._on_activity(owner, target, owned))
        return negotiated.answer.serialize()

    def close_owner(self, owner: str) -> None:
        for target in list(self.owners.get(owner, {})):
            self.close_endpoint(owner, target)
        self.owners.pop(owner, None)

    # ------------------------------------------------------------------ internals

    def close_endpoint(self, owner: str, target: str) -> None:
        owned = self.owners.get(owner, {}).pop(target, None)
        if owned is None:
            return
        owned.transport.close()
        self.endpoint.flush(owned.transport)
        self.endpoint.remove(owned.transport)
        self.retired.update(self._counters_of(owned))

    def _on_activity(self, owner: str, target: str, owned: _Owned) -> None:
        transport = owned.transport
        while (event := transport.poll_event()) is not None:
            if isinstance(event, TransportConnected):
                owned.connected = True
                log.info("media %s/%s connected from %s (%s)", owner, target, event.remote, event.srtp_profile)
            elif isinstance(event, TransportFailed):
                log.info("media %s/%s failed: %s", owner, target, event.reason)
                self.close_endpoint(owner, target)
                return
        owned.session.on_tick(self.clock())

    def close(self) -> None:
        for owner in list(self.owners):
            self.close_owner(owner)
        self.endpoint.close()

    @staticmethod
    def _counters_of(owned: _Owned) -> Counter[str]:
        total: Counter[str] = Counter()
        total.update(owned.transport.counters)
        total.update({"ice_" + k: v for k, v in owned.transport.ice.counters.items()})
        total.update(owned.session.counters)
        return total

    def counters(self) -> Counter[str]:
        """Everything counted by live and closed connections, plus the socket's own drops."""
        total = Counter(self.retired)
        for endpoints in self.owners.values():
            for owned in endpoints.values():
                total.update(self._counters_of(owned))
        total.update({"socket_" + k: v for k, v in self.endpoint.drops.items()})
        return total

    def transports(self) -> int:
        return sum(len(v) for v in self.owners.values())


async def start_media(host: str, port: int, public_ip: str | None) -> MediaService:
    endpoint = await UdpEndpoint.bind(host, port)
    return MediaService(endpoint, DtlsCertificate.generate(), announced_address(host, public_ip))
