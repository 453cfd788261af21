"""DTLS 1.2 (RFC 6347) over memory BIOs (pyOpenSSL), for DTLS-SRTP keys (RFC 5764) and SCTP transport.

Sans-IO: records go in through :meth:`DtlsConnection.handle_datagram` and come out of
:meth:`DtlsConnection.poll_transmit`; the caller owns sockets and clocks. Retransmission runs on the
caller's clock (:meth:`poll_timeout`/:meth:`handle_timeout`), not OpenSSL's: ``DTLSv1_handle_timeout``
only acts once OpenSSL's *wall-clock* timer expired, which would make the machine untestable with fake
time. The peer's certificate must match a fingerprint from its SDP (RFC 8122 §5); on mismatch, bad
input or timeout the connection fails closed: one :class:`DtlsFailed`, no keys, later input ignored.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import secrets
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto  # crypto: certificate dump of the peer

HANDSHAKE_TIMEOUT = 30.0
INITIAL_RTO = 1.0  # RFC 6347 §4.2.4.1: start at 1 s, double on each expiry
MAX_RTO = 8.0  # RFC 6347 caps at 60 s; a media session has given up long before that
MTU = 1200  # what browsers assume for WebRTC; OpenSSL fragments handshake messages to fit
MAX_PLAINTEXT = 16384  # RFC 5246 §6.2.1: one record carries at most 2^14 bytes
DTLS1_2_VERSION = 0xFEFD  # pyOpenSSL exports no DTLS version constants

# RFC 5764 §4.1.2 / RFC 7714 §14.2: name -> (key length, salt length)
SRTP_PROFILES: dict[str, tuple[int, int]] = {
    "SRTP_AEAD_AES_128_GCM": (16, 12),
    "SRTP_AES128_CM_SHA1_80": (16, 14),
}
# RFC 8122 hash function names -> hashlib names, weakest first (§5: use the strongest offered).
_DIGESTS = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}
_STRENGTH = {name: rank for rank, name in enumerate(_DIGESTS)}


def format_fingerprint(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def certificate_fingerprint(der: bytes, algorithm: str = "sha-256") -> str:
    name = _DIGESTS.get(algorithm.lower())
    if name is None:
        raise ValueError(f"unsupported fingerprint algorithm {algorithm!r}")
    return format_fingerprint(hashlib.new(name, der).digest())


@dataclass(frozen=True)
class DtlsCertificate:
    """An ECDSA P-256 self-signed certificate, as browsers use for WebRTC."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, days: int = 30, now: datetime.datetime | None = None) -> DtlsCertificate:
        """A fresh key and certificate valid for ``days`` (backdated a day against clock skew)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
        now = now or datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> tuple[str, str]:
        """``("sha-256", "AB:CD:...")`` for ``a=fingerprint``."""
        return "sha-256", certificate_fingerprint(self.der)


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """SRTP keys for this side: ``local_key`` protects what we send, ``remote_key`` what we receive."""

    srtp_profile: str
    local_key: bytes
    remote_key: bytes


@dataclass(frozen=True, slots=True)
class ApplicationData:
    """One decrypted application record (an SCTP packet in WebRTC, RFC 8261)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DtlsFailed:
    """The connection is dead: no keys were (or will be) exported, further input is ignored."""

    reason: str


@dataclass(frozen=True, slots=True)
class DtlsClosed:
    """The peer sent close_notify (RFC 5246 §7.2.1)."""


DtlsEvent = HandshakeComplete | ApplicationData | DtlsFailed | DtlsClosed
State = Literal["new", "handshaking", "connected", "failed", "closed"]


def split_keying_material(material: bytes, profile: str, role: str) -> tuple[bytes, bytes]:
    """RFC 5764 §4.2: client key | server key | client salt | server salt → (local, remote) key+salt."""
    key_len, salt_len = SRTP_PROFILES[profile]
    client_key = material[:key_len]
    server_key = material[key_len : 2 * key_len]
    client_salt = material[2 * key_len : 2 * key_len + salt_len]
    server_salt = material[2 * key_len + salt_len : 2 * key_len + 2 * salt_len]
    client, server = client_key + client_salt, server_key + server_salt
    return (server, client) if role == "server" else (client, server)


def _well_framed(data: bytes) -> bool:
    """True when ``data`` is a sequence of complete DTLS records (RFC 6347 §4.1) of a known type whose
    plaintext (epoch 0) bodies are framed correctly.

    Checked before OpenSSL sees the datagram: OpenSSL aborts the handshake on malformed plaintext
    records (a short alert, a bad handshake fragment, application data in epoch 0) that RFC 6347
    §4.1.2.7 would have us drop, so one stray or forged packet could otherwise kill a handshake.
    """
    pos, size = 0, len(data)
    while pos < size:
        if pos + 13 > size or not 20 <= data[pos] <= 23 or data[pos + 1] != 0xFE:
            return False
        kind = data[pos]
        end = pos + 13 + int.from_bytes(data[pos + 11 : pos + 13], "big")
        if end > size:
            return False
        if data[pos + 3 : pos + 5] == b"\x00\x00":  # epoch 0: plaintext, so the body can be checked
            body = data[pos + 13 : end]
            bad_alert = kind == 21 and (len(body) != 2 or body[0] not in (1, 2))  # level warning/fatal
            if kind == 23 or (kind == 20 and body != b"\x01") or bad_alert:
                return False
            if kind == 22 and not _handshake_fragments_fit(body):
                return False
        pos = end
    return True


def _handshake_fragments_fit(body: bytes) -> bool:
    """RFC 6347 §4.2.2: 12-byte headers, each fragment within its message and the record."""
    pos = 0
    while pos < len(body):
        if pos + 12 > len(body):
            return False
        length = int.from_bytes(body[pos + 1 : pos + 4], "big")
        offset = int.from_bytes(body[pos + 6 : pos + 9], "big")
        fragment = int.from_bytes(body[pos + 9 : pos + 12], "big")
        pos += 12 + fragment
        if offset + fragment > length or pos > len(body):
            return False
    return True


class DtlsConnection:
    """One DTLS 1.2 association, either role; see the module docstring for the sans-IO contract."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        role: Literal["server", "client"],
        remote_fingerprints: list[tuple[str, str]],
        srtp_profiles: tuple[str, ...] = tuple(SRTP_PROFILES),
    ) -> None:
        unknown = [p for p in srtp_profiles if p not in SRTP_PROFILES]
        if unknown or not srtp_profiles:
            raise ValueError(f"unsupported SRTP profiles {unknown or srtp_profiles!r}")
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        self.role = role
        self.remote_fingerprints = [(a.lower(), v.strip().upper()) for a, v in remote_fingerprints]
        self.srtp_profiles = srtp_profiles
        self.state: State = "new"
        self.dropped = 0  # datagrams discarded before OpenSSL saw them
        self._transmits: deque[bytes] = deque()
        self._pending = b""
        self._events: deque[DtlsEvent] = deque()
        self._deadline: float | None = None
        self._handshake_deadline: float | None = None
        # Our last flight, resent byte for byte on our clock (RFC 6347 §4.2.4). Identical records are
        # fine: a peer that already got one drops the copy as a replay and relies on its own timer.
        self._flight: list[bytes] = []
        self._new_flight = True
        self._rto = INITIAL_RTO
        self._ssl = SSL.Connection(_context(certificate, srtp_profiles))
        # The shared context's verify callback finds us here; weakly, or we, the SSL.Connection and our
        # app data would form a reference cycle that only the cyclic GC frees (with every buffer).
        self._ssl.set_app_data(weakref.ref(self))
        self._ssl.set_ciphertext_mtu(MTU)
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()

    # ------------------------------------------------------------------ input

    def start(self, now: float) -> None:
        """Begin the handshake: a client sends its ClientHello, a server waits for one."""
        if self.state != "new":
            return
        self.state = "handshaking"
        self._handshake_deadline = now + HANDSHAKE_TIMEOUT
        if self.role == "client":
            self._handshake(now)

    def handle_datagram(self, data: bytes, now: float) -> None:
        """Feed one UDP payload (one or more records). Never raises: bad input fails or is dropped."""
        if self.state in ("failed", "closed") or not data:
            return
        try:
            self._handle_datagram(data, now)
        except Exception as exc:  # fail closed on anything OpenSSL or pyOpenSSL did not foresee
            self._fail(f"internal error: {exc!r}")

    def _handle_datagram(self, data: bytes, now: float) -> None:
        if not _well_framed(data):
            self.dropped += 1  # RFC 6347 §4.1.2.7: invalid records are silently discarded
            return
        if self.state == "new":
            self.start(now)
        self._ssl.bio_write(data)
        self._new_flight = True
        if self.state == "connected" and self.role == "server" and self._flight and data[0] in (20, 22):
            # RFC 6347 §4.2.4: the client is resending its last flight, so our final one (CCS, Finished)
            # was lost; only the side that sent the last flight answers, or duplicates would ping-pong.
            self._transmits.extend(self._flight)
        if self.state == "handshaking":
            self._handshake(now)
        if self.state == "connected":
            self._read_application_data()
        self._flush()

    def handle_timeout(self, now: float) -> None:
        """Resend the last flight when its timer expired; fail once the handshake took too long."""
        if self.state != "handshaking":
            return
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._fail("handshake timed out")
            return
        if self._deadline is not None and now >= self._deadline:
            self._transmits.extend(self._flight)
            self._rto = min(MAX_RTO, self._rto * 2)
            self._deadline = now + self._rto

    def send(self, data: bytes) -> None:
        """Send one application record (one datagram; keep it under :data:`MTU` to avoid IP
        fragmentation). ConnectionError before the handshake completed or after close."""
        if self.state != "connected":
            raise ConnectionError("DTLS connection is not established")
        if not data:
            return  # SSL_write of nothing is an error in OpenSSL; an empty record carries nothing anyway
        if len(data) > MAX_PLAINTEXT:
            raise ValueError(f"{len(data)} bytes do not fit one DTLS record (max {MAX_PLAINTEXT})")
        try:
            self._ssl.send(data)
        except SSL.Error as exc:
            self._fail(f"send failed: {exc}")
        self._flush()

    def close(self) -> None:
        """Send close_notify (when connected) and stop; no event is queued for a local close."""
        if self.state == "connected":
            with contextlib.suppress(SSL.Error):
                self._ssl.shutdown()
            self._flush()
        if self.state not in ("failed", "closed"):
            self.state = "closed"
        self._deadline = self._handshake_deadline = None
        self._flight = []

    # ------------------------------------------------------------------ output

    def poll_transmit(self) -> bytes | None:
        """Next datagram to send to the peer (whole records, at most :data:`MTU` bytes when possible)."""
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> DtlsEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        if self.state != "handshaking":
            return None
        times = [t for t in (self._deadline, self._handshake_deadline) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------------ internals

    def _handshake(self, now: float) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            self._flush()
            self._update_deadline(now)
            return
        except SSL.Error as exc:
            self._flush()  # let the alert reach the peer so it fails fast too
            certificate_error = "certificate" in str(exc)
            self._fail(
                "peer certificate does not match the SDP fingerprint"
                if certificate_error
                else f"handshake failed: {exc}"
            )
            return
        self._flush()
        self._on_handshake_done()

    def _on_handshake_done(self) -> None:
        peer = self._ssl.get_peer_certificate()
        if peer is None:
            self._fail("peer sent no certificate")
            return
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, peer)
        if not self._fingerprint_matches(der):  # already checked in _verify; belt and braces
            self._fail("peer certificate does not match the SDP fingerprint")
            return
        selected = self._ssl.get_selected_srtp_profile()
        profile = selected.decode() if selected else ""
        if profile not in SRTP_PROFILES:
            self._fail("no SRTP protection profile negotiated")
            return
        key_len, salt_len = SRTP_PROFILES[profile]
        # RFC 5764 §4.2: label "EXTRACTOR-dtls_srtp", no context.
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        local, remote = split_keying_material(material, profile, self.role)
        self.state = "connected"
        self._deadline = self._handshake_deadline = None
        if self.role == "client":
            self._flight = []  # the server's timer covers a lost flight 5; we never resend once connected
        self._events.append(HandshakeComplete(profile, local, remote))

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        # Self-signed by design: the SDP fingerprint replaces chain validation (RFC 8122 §5, RFC 5763).
        if depth != 0:
            return True
        return self._fingerprint_matches(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))

    def _fingerprint_matches(self, der: bytes) -> bool:
        """RFC 8122 §5: take the strongest hash function offered that we support, and require the
        certificate to match one fingerprint of that set. No usable fingerprint: no match."""
        usable = [(a, v) for a, v in self.remote_fingerprints if a in _DIGESTS]
        if not usable:
            return False
        strongest = max(_STRENGTH[a] for a, _ in usable)
        algorithm = next(a for a, _ in usable if _STRENGTH[a] == strongest)
        ours = certificate_fingerprint(der, algorithm).encode()
        return any(hmac.compare_digest(ours, v.encode()) for a, v in usable if a == algorithm)

    def _read_application_data(self) -> None:
        while self.state == "connected":
            try:
                data = self._ssl.recv(65536)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.state = "closed"
                self._flight = []
                self._events.append(DtlsClosed())
                return
            except SSL.Error as exc:
                # Records with a bad MAC or header are dropped silently inside OpenSSL (RFC 6347
                # §4.1.2.7); an error here is a fatal alert from the peer or a protocol violation.
                self._fail(f"connection error: {exc}")
                return
            if not data:
                return
            self._flight = []  # the peer is past its handshake: our final flight arrived
            self._events.append(ApplicationData(data))

    def _update_deadline(self, now: float) -> None:
        if self._flight and self._deadline is None:
            self._deadline = now + self._rto

    def _flush(self) -> None:
        """Move OpenSSL's output into datagrams of whole records, at most :data:`MTU` bytes each.

        The memory BIO is a byte stream, so record boundaries are recovered from the 13-byte DTLS
        record header (RFC 6347 §4.1) instead of trusting read sizes. Several records may share a
        datagram (§4.1.1), which keeps a flight to few packets.
        """
        while True:
            try:
                chunk = self._ssl.bio_read(65536)
            except SSL.Error:
                break
            if not chunk:
                break
            self._pending += chunk
        pending = self._pending
        sent_before = len(self._transmits)
        datagram = bytearray()
        pos = 0
        while pos + 13 <= len(pending):
            end = pos + 13 + int.from_bytes(pending[pos + 11 : pos + 13], "big")
            if end > len(pending):
                break
            if datagram and len(datagram) + end - pos > MTU:
                self._transmits.append(bytes(datagram))
                datagram = bytearray()
            datagram += pending[pos:end]
            pos = end
        if datagram:
            self._transmits.append(bytes(datagram))
        self._pending = pending[pos:]
        if self.state == "handshaking" and len(self._transmits) > sent_before:
            new = list(self._transmits)[sent_before:]
            if self._new_flight:
                self._flight = new
                self._new_flight = False
                self._rto = INITIAL_RTO
                self._deadline = None
            else:
                self._flight += new

    def _fail(self, reason: str) -> None:
        if self.state in ("failed", "closed"):
            return
        self.state = "failed"
        self._deadline = self._handshake_deadline = None
        self._flight = []
        self._events.append(DtlsFailed(reason))


_CONTEXT_CACHE = 64
_contexts: OrderedDict[tuple[int, tuple[str, ...]], tuple[DtlsCertificate, SSL.Context]] = OrderedDict()


def _context(certificate: DtlsCertificate, srtp_profiles: tuple[str, ...]) -> SSL.Context:
    """One OpenSSL context per certificate and profile list, shared by its connections: a context of
    its own cost each connection about 44 KiB and a few hundred microseconds. A bounded LRU (the server
    has one certificate; each SDK room has its own); an entry holds its certificate, so the ``id`` in
    the key cannot be reused while the entry lives."""
    key = (id(certificate), srtp_profiles)
    hit = _contexts.get(key)
    if hit is not None and hit[0] is certificate:
        _contexts.move_to_end(key)
        return hit[1]
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_min_proto_version(DTLS1_2_VERSION)
    ctx.set_max_proto_version(DTLS1_2_VERSION)
    # No tickets and no session cache: every association is a full handshake (the server always sends
    # the last flight), and a shared context must not collect sessions.
    # NO_QUERY_MTU: a memory BIO has no path MTU; set_ciphertext_mtu on each connection is what counts.
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # The certificate is checked against the SDP fingerprint *during* the handshake, so a mismatch
    # aborts with a bad_certificate alert before any Finished is sent and the peer fails fast.
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_owner)
    ctx.use_certificate(certificate.cert)
    ctx.use_privatekey(certificate.key)
    # RFC 5764 §4.1.1: the server picks from the client's list in *its own* order of preference.
    ctx.set_tlsext_use_srtp(":".join(srtp_profiles).encode())
    _contexts[key] = (certificate, ctx)
    if len(_contexts) > _CONTEXT_CACHE:
        _contexts.popitem(last=False)
    return ctx


def _verify_owner(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    ref = conn.get_app_data()
    owner = ref() if isinstance(ref, weakref.ref) else None
    return isinstance(owner, DtlsConnection) and owner._verify(conn, cert, errno, depth, ok)
