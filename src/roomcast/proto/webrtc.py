"""One WebRTC transport: ICE-lite + DTLS + SRTP over a single 5-tuple, demultiplexed per RFC 7983.

It owns no socket and no clock. Media leaves it through two callbacks (``on_rtp``/``on_rtcp``, called
with decrypted packets) instead of event objects, because they run once per packet on the hot path;
everything rarer is an event from :meth:`poll_event`.
"""

from __future__ import annotations

import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.dtls import (
    ApplicationData,
    DtlsCertificate,
    DtlsClosed,
    DtlsConnection,
    DtlsFailed,
    HandshakeComplete,
)
from roomcast.proto.ice_controlling import IceControllingAgent, IceFailed, Nominated
from roomcast.proto.ice_lite import ConsentExpired, IceLiteAgent, RestartCompleted, Selected, Validated
from roomcast.proto.sctp import SctpAssociation, SctpEvent
from roomcast.proto.srtp import SrtpContext, SrtpError
from roomcast.wire.twcc import transport_seq_at

SRTP_OVERHEAD = 16  # authentication tag (or GCM tag): what the bandwidth estimate counts on top of RTP
NO_TWCC = [-1]  # the cell of a transport outside any router: never an offset
# RTCP a peer may send us, in bytes per second and burst: about ten times what an honest subscriber of
# many tracks sends under loss (reports, REMB, transport-cc every 50 ms, NACK lists); the excess is
# counted (rtcp_rate_limited) and dropped before SRTCP authentication or parsing (RELIABILITY O5, B3).
RTCP_RATE, RTCP_BURST = 32 * 1024, 64 * 1024
# libsrtp adds a stream for every SSRC that authenticates and finds it by walking a list: 20,000 SSRCs
# from one authenticated peer made each of its packets cost 110 µs instead of 1.3 µs, and memory grew
# without bound. A transport carries at most max-tracks x simulcast layers x (media + RTX) SSRCs, plus
# the RTCP senders'; packets on any SSRC past this many are dropped unread (srtp_ssrc_limit).
MAX_INBOUND_SSRCS = 256


class TwccStamper(Protocol):
    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int: ...


@dataclass(frozen=True, slots=True)
class TransportConnected:
    """DTLS finished and SRTP keys are installed: media can flow."""

    remote: Addr
    srtp_profile: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class TransportDataIn:
    """DTLS application data (SCTP for data channels)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TransportSctp:
    """Something happened on the data channel association (see :mod:`roomcast.proto.sctp`)."""

    event: SctpEvent


@dataclass(frozen=True, slots=True)
class TransportIceRestarted:
    """An ICE restart completed on ``remote``: the owner stops routing ``retired_ufrag`` (and old addresses)."""

    retired_ufrag: str
    remote: Addr


TransportEvent = TransportConnected | TransportFailed | TransportDataIn | TransportSctp | TransportIceRestarted

PacketHandler = Callable[[bytes], None]
BatchRewritten = Callable[[SrtpContext, bytes | bytearray, int, int, int, int, int, int, Addr], bool]
"""``(srtp, packet, b1, seq, ts, ssrc, twcc_at, twcc, remote)``: the runtime protects ``packet`` rewritten as
:meth:`SrtpContext.protect_rewritten` would and queues it for ``remote`` (True), or declines (False)."""


def _ignore(_: bytes) -> None:
    return None


def new_ice_credentials() -> tuple[str, str]:
    """RFC 8839 §5.4: ufrag ≥ 24 bits and pwd ≥ 128 bits of randomness, ice-chars only."""
    return secrets.token_hex(4), secrets.token_hex(16)


class WebRtcTransport:
    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        remote_ufrag: str,
        remote_pwd: str,
        remote_fingerprints: list[tuple[str, str]],
        dtls_role: str = "server",
        local_ufrag: str | None = None,
        local_pwd: str | None = None,
        consent_timeout: float = 30.0,
        server: Addr | None = None,
        sctp: SctpAssociation | None = None,
    ) -> None:
        """Server side (ICE-lite) by default; with ``server`` given, the client side: ICE controlling
        towards that candidate (our SDK, load bots, tests)."""
        if local_ufrag is None or local_pwd is None:
            local_ufrag, local_pwd = new_ice_credentials()
        self.local_ufrag = local_ufrag
        self.local_pwd = local_pwd
        self.ice: IceLiteAgent | IceControllingAgent
        if server is None:
            self.ice = IceLiteAgent(local_ufrag, local_pwd, remote_ufrag, remote_pwd, consent_timeout=consent_timeout)
        else:
            self.ice = IceControllingAgent(local_ufrag, local_pwd, remote_ufrag, remote_pwd, server)
        self.dtls = DtlsConnection(certificate, role=dtls_role, remote_fingerprints=remote_fingerprints)  # type: ignore[arg-type]
        self.remote: Addr | None = None
        self.srtp: SrtpContext | None = None
        self.closed = False
        self.connected = False
        self.on_rtp: PacketHandler = _ignore
        self.decrypt = True  # False: hand RTP over still encrypted (its header is clear), e.g. to count packets
        # Set by the runtime: send a datagram at once. Media forwarded from *another* connection's input
        # then leaves immediately instead of waiting for this connection's next poll (hot path).
        self.direct_send: Callable[[bytes, Addr], None] | None = None
        # Set by the runtime when it batches sends (``sendmmsg``): it protects and queues a forwarded packet
        # itself and returns True, or returns False and the packet takes the path below.
        self.batch_rewritten: BatchRewritten | None = None
        self.on_rtcp: PacketHandler = _ignore
        self.counters: Counter[str] = Counter()
        self.sctp = sctp  # data channels ride on DTLS application data (RFC 8261)
        self._validated: set[Addr] = set()
        self._transmits: deque[Transmit] = deque()
        self._events: deque[TransportEvent] = deque()
        self._dtls_started = False
        self.now = 0.0  # time of the latest input, for handlers that run inside it (e.g. throttles)
        # Transport-wide congestion control of what we send (a subscriber): the estimator's stamper and the
        # extension id this peer negotiated. ``twcc_at`` is a cell shared with the router: the offset of the
        # transport-wide sequence number in the packet being forwarded right now (-1: none), found once per
        # incoming packet, so each receiver's transport rewrites it in place with its own sequence.
        self.twcc: TwccStamper | None = None
        self.twcc_id = 0
        self.twcc_at: list[int] = NO_TWCC
        self._rtcp_tokens = float(RTCP_BURST)
        self._in_ssrcs: set[bytes] = set()  # SSRCs that authenticated (each one a libsrtp stream)
        self._rtcp_at: float | None = None

    # ------------------------------------------------------------------ input

    def start(self, now: float) -> None:
        """Client side: begin connectivity checks (the server side just waits for them)."""
        if isinstance(self.ice, IceControllingAgent):
            self.ice.start(now)
            self._drain_ice(now)

    def restart_ice(self, local_ufrag: str, local_pwd: str, remote_ufrag: str, remote_pwd: str) -> str | None:
        """ICE restart (RFC 8445 §9) on the server side, with the new local credentials of the answer.

        Only ICE starts over: DTLS, the SRTP keys and SCTP stay (an ICE restart is not a DTLS restart,
        RFC 8842 §4). Returns a local ufrag that stopped being accepted right now (see
        :meth:`IceLiteAgent.restart`); the previous one is retired by :class:`TransportIceRestarted`."""
        if not isinstance(self.ice, IceLiteAgent):
            raise TypeError("only the ICE-lite (server) side answers an ICE restart")
        dropped = self.ice.restart(local_ufrag, local_pwd, remote_ufrag, remote_pwd)
        self.local_ufrag, self.local_pwd = local_ufrag, local_pwd
        return dropped

    def is_validated(self, remote: Addr) -> bool:
        """``remote`` proved the ICE password (an integrity-checked, successful check): DTLS and SRTP are
        accepted from it, and only from such addresses (so a forged alert or CCS cannot reach DTLS)."""
        return remote in self._validated

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        if self.closed or not data:
            return
        self.now = now
        first = data[0]
        if first > 127 and first < 192:
            self._handle_srtp(data, remote)
        elif first < 4:
            self.ice.handle_stun(data, remote, now)
            self._drain_ice(now)
        elif 19 < first < 64:
            if remote not in self._validated:
                self.counters["dtls_unvalidated_address"] += 1
                return
            self.dtls.handle_datagram(data, now)
            self._drain_dtls()
        else:
            self.counters["unknown_packet"] += 1

    def _handle_srtp(self, data: bytes, remote: Addr) -> None:
        srtp = self.srtp
        if srtp is None or remote not in self._validated:
            self.counters["media_before_keys"] += 1
            return
        if len(data) < 12:
            self.counters["rtp_too_short"] += 1
            return
        try:
            if 191 < data[1] < 224:  # RFC 5761 §4: RTCP packet types 192-223 share the port
                if not self._rtcp_allowed(len(data)):
                    self.counters["rtcp_rate_limited"] += 1
                    return
                key = data[4:8]  # the sender's SSRC: libsrtp keeps a stream per SSRC, RTP and RTCP alike
                known = key in self._in_ssrcs
                if not known and len(self._in_ssrcs) >= MAX_INBOUND_SSRCS:
                    self.counters["srtp_ssrc_limit"] += 1
                    return
                rtcp = srtp.unprotect_rtcp(data)
                if not known:
                    self._in_ssrcs.add(key)
                self.on_rtcp(rtcp)
            elif self.decrypt:
                key = data[8:12]
                known = key in self._in_ssrcs
                if not known and len(self._in_ssrcs) >= MAX_INBOUND_SSRCS:
                    self.counters["srtp_ssrc_limit"] += 1
                    return
                rtp = srtp.unprotect(data)
                if not known:
                    self._in_ssrcs.add(key)
                self.on_rtp(rtp)
            else:
                self.on_rtp(data)
        except SrtpError:
            self.counters["srtp_unprotect_failed"] += 1

    def _rtcp_allowed(self, size: int) -> bool:
        """A byte budget for the peer's RTCP, checked before any work: one 1 KB NACK of 256 items asks
        4,352 sequence numbers and costs about a millisecond to parse and look up, so an authenticated
        peer could otherwise buy the whole event loop (tests/security/test_authenticated_media.py)."""
        now = self.now
        last = now if self._rtcp_at is None else self._rtcp_at
        tokens = min(float(RTCP_BURST), self._rtcp_tokens + max(0.0, now - last) * RTCP_RATE)
        self._rtcp_at = now
        if tokens < size:
            self._rtcp_tokens = tokens
            return False
        self._rtcp_tokens = tokens - size
        return True

    def handle_timeout(self, now: float) -> None:
        if self.closed:
            return
        self.now = now
        self.ice.handle_timeout(now)
        self._drain_ice(now)
        self.dtls.handle_timeout(now)
        self._drain_dtls()
        if self.sctp is not None:
            self.sctp.handle_timeout(now)
            self._drain_sctp()

    # ------------------------------------------------------------------ output

    def send_rtp(self, packet: bytes | bytearray) -> None:
        if self.srtp is None or self.remote is None or self.closed:
            self.counters["send_before_connected"] += 1
            return
        if self.twcc is not None:  # a retransmission: its source's transport-wide number means nothing here
            at = transport_seq_at(packet, self.twcc_id)
            if at >= 0:
                packet = bytearray(packet)
                tseq = self.twcc.on_packet_sent(len(packet) + SRTP_OVERHEAD, self.now)
                packet[at], packet[at + 1] = tseq >> 8, tseq & 0xFF
        try:
            data = self.srtp.protect(packet)
        except SrtpError:  # never the sender's fault: counted here, not as its input failing
            self.counters["srtp_protect_failed"] += 1
            return
        if self.direct_send is not None:
            self.direct_send(data, self.remote)
        else:
            self._transmits.append(Transmit(self.remote, data))

    def send_rtp_rewritten(self, packet: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int) -> None:
        """:meth:`send_rtp` of ``packet`` with its byte 1, sequence number, timestamp and SSRC replaced
        (the SFU's forwarding path: the rewrite happens inside SRTP's buffer, no copy of our own)."""
        if self.srtp is None or self.remote is None or self.closed:
            self.counters["send_before_connected"] += 1
            return
        at = self.twcc_at[0]
        if at >= 0 and self.twcc is not None:
            twcc = self.twcc_id << 16 | self.twcc.on_packet_sent(len(packet) + SRTP_OVERHEAD, self.now)
        else:
            at = twcc = 0  # twcc_at 0: no transport-wide number to write
        try:
            batch = self.batch_rewritten
            if batch is not None and batch(self.srtp, packet, b1, seq, ts, ssrc, at, twcc, self.remote):
                return
            data = self.srtp.protect_rewritten(packet, b1, seq, ts, ssrc, at, twcc)
        except SrtpError:  # this subscriber misses the packet; the fan-out to the others goes on
            self.counters["srtp_protect_failed"] += 1
            return
        if self.direct_send is not None:
            self.direct_send(data, self.remote)
        else:
            self._transmits.append(Transmit(self.remote, data))

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        if self.srtp is None or self.remote is None or self.closed:
            return
        try:
            data = self.srtp.protect_rtcp(packet)
        except SrtpError:
            self.counters["srtp_protect_failed"] += 1
            return
        if self.direct_send is not None:  # feedback caused by another connection's input leaves at once
            self.direct_send(data, self.remote)
        else:
            self._transmits.append(Transmit(self.remote, data))

    def send_data(self, data: bytes) -> None:
        """DTLS application data (SCTP)."""
        if not self.closed:
            self.dtls.send(data)
            self._drain_dtls()

    def poll_transmit(self) -> Transmit | None:
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> TransportEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        if self.closed:
            return None
        sctp_timeout = self.sctp.poll_timeout() if self.sctp is not None else None
        times = [t for t in (self.ice.poll_timeout(), self.dtls.poll_timeout(), sctp_timeout) if t is not None]
        return min(times) if times else None

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        try:
            self.dtls.close()
            self._drain_dtls()
        except Exception:
            self.counters["close_error"] += 1
        self.closed = True
        self.srtp = None
        # Owners hook closures that reference themselves (and us) into these: drop them so a closed
        # transport and what it reaches are freed by reference counting, not left to the cyclic GC.
        self.on_rtp = self.on_rtcp = _ignore
        self.direct_send = self.batch_rewritten = None

    # ------------------------------------------------------------------ internals

    def _drain_ice(self, now: float) -> None:
        while (item := self.ice.poll_transmit()) is not None:
            self._transmits.append(item)  # an answer proves nothing (a 487 is one too): Validated does
        while (event := self.ice.poll_event()) is not None:
            if isinstance(event, Validated):
                self._validated.add(event.remote)
            elif isinstance(event, Selected | Nominated):
                self.remote = event.remote
                self._validated.add(event.remote)
                if not self._dtls_started:
                    self._dtls_started = True
                    self.dtls.start(now)
                    self._drain_dtls()
            elif isinstance(event, RestartCompleted):
                self._validated = {event.remote}  # addresses of the old generation are forgotten
                self._events.append(TransportIceRestarted(event.retired_ufrag, event.remote))
            elif isinstance(event, ConsentExpired):
                self._fail("ice_consent_expired")
            elif isinstance(event, IceFailed):
                self._fail("ice_failed: " + event.reason)

    def _drain_dtls(self) -> None:
        while (record := self.dtls.poll_transmit()) is not None:
            if self.remote is not None:
                self._transmits.append(Transmit(self.remote, record))
        while (event := self.dtls.poll_event()) is not None:
            if isinstance(event, HandshakeComplete):
                self.srtp = SrtpContext(event.srtp_profile, event.local_key, event.remote_key)
                self.connected = True
                assert self.remote is not None
                self._events.append(TransportConnected(self.remote, event.srtp_profile))
                if self.sctp is not None and self.sctp.role == "client":
                    self.sctp.start(self.now)
                    self._drain_sctp()
            elif isinstance(event, ApplicationData):
                if self.sctp is not None:
                    self.sctp.handle_packet(event.data, self.now)
                    self._drain_sctp()
                else:
                    self._events.append(TransportDataIn(event.data))
            elif isinstance(event, DtlsFailed):
                self._fail("dtls_failed: " + event.reason)
            elif isinstance(event, DtlsClosed):
                self._fail("dtls_closed")

    def _drain_sctp(self) -> None:
        sctp = self.sctp
        if sctp is None:
            return
        while (packet := sctp.poll_transmit()) is not None:
            if self.dtls.state == "connected":
                self.dtls.send(packet)
        while (record := self.dtls.poll_transmit()) is not None:
            if self.remote is not None:
                self._transmits.append(Transmit(self.remote, record))
        while (event := sctp.poll_event()) is not None:
            self._events.append(TransportSctp(event))

    def send_message(self, stream_id: int, data: bytes, *, binary: bool = True) -> None:
        """Send one data channel message (raises ValueError for an unknown stream or an oversized message)."""
        if self.sctp is None or self.closed:
            return
        self.sctp.send(stream_id, data, self.now, binary=binary)
        self._drain_sctp()

    def _fail(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.srtp = None
            self._events.append(TransportFailed(reason))
