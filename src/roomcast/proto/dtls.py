"""DTLS over memory BIOs (pyOpenSSL), for DTLS-SRTP key exchange (RFC 5764) and SCTP transport.

Sans-IO: records go in through :meth:`DtlsConnection.handle_datagram` and come out of
:meth:`poll_transmit`; OpenSSL's retransmission timer is surfaced through :meth:`poll_timeout`. The
peer's certificate must match a fingerprint from its SDP (RFC 8122 §5); on mismatch the connection
fails closed and no keys are ever exported.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto  # crypto: certificate dump of the peer

HANDSHAKE_TIMEOUT = 30.0
INITIAL_RTO = 1.0
MAX_RTO = 8.0
MTU = 1200

# RFC 5764 §4.1.2 / RFC 7714 §14.2: name -> (key length, salt length)
SRTP_PROFILES: dict[str, tuple[int, int]] = {
    "SRTP_AEAD_AES_128_GCM": (16, 12),
    "SRTP_AES128_CM_SHA1_80": (16, 14),
}
_DIGESTS = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}


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
    def generate(cls, days: int = 30) -> DtlsCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
        now = datetime.datetime.now(datetime.UTC)
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
    data: bytes


@dataclass(frozen=True, slots=True)
class DtlsFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class DtlsClosed:
    pass


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


class DtlsConnection:
    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        role: Literal["server", "client"],
        remote_fingerprints: list[tuple[str, str]],
        srtp_profiles: tuple[str, ...] = tuple(SRTP_PROFILES),
    ) -> None:
        self.role = role
        self.remote_fingerprints = [(a.lower(), v.upper()) for a, v in remote_fingerprints]
        self.srtp_profiles = srtp_profiles
        self.state: State = "new"
        self._transmits: deque[bytes] = deque()
        self._pending = b""
        self._events: deque[DtlsEvent] = deque()
        self._deadline: float | None = None
        self._handshake_deadline: float | None = None
        # Our own flight retransmission (RFC 6347 §4.2.4): OpenSSL's timer reads the wall clock, which
        # would make the machine depend on real time; we resend the last flight on *our* clock instead.
        self._flight: list[bytes] = []
        self._new_flight = True
        self._rto = INITIAL_RTO
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
        # The certificate is checked against the SDP fingerprint *during* the handshake, so a mismatch
        # aborts with a bad_certificate alert before any Finished is sent and the peer fails fast.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        ctx.use_certificate(certificate.cert)
        ctx.use_privatekey(certificate.key)
        ctx.set_tlsext_use_srtp(":".join(srtp_profiles).encode())
        self._ssl = SSL.Connection(ctx)
        self._ssl.set_ciphertext_mtu(MTU)
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()

    # ------------------------------------------------------------------ input

    def start(self, now: float) -> None:
        if self.state != "new":
            return
        self.state = "handshaking"
        self._handshake_deadline = now + HANDSHAKE_TIMEOUT
        if self.role == "client":
            self._handshake(now)

    def handle_datagram(self, data: bytes, now: float) -> None:
        if self.state in ("failed", "closed"):
            return
        if self.state == "new":
            self.start(now)
        try:
            self._ssl.bio_write(data)
        except SSL.Error:
            self._fail("cannot buffer record")
            return
        self._new_flight = True
        if self.state == "connected" and data[0] in (20, 22) and self._flight:
            # The peer is retransmitting its last handshake flight: ours (the final one) was lost.
            # OpenSSL does not resend it by itself once connected (RFC 6347 §4.2.4 says it must).
            self._transmits.extend(self._flight)
        if self.state == "handshaking":
            self._handshake(now)
        if self.state == "connected":
            self._read_application_data()
        self._flush()

    def handle_timeout(self, now: float) -> None:
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
        if self.state != "connected":
            raise ConnectionError("DTLS connection is not established")
        try:
            self._ssl.send(data)
        except SSL.Error as exc:
            self._fail(f"send failed: {exc}")
        self._flush()

    def close(self) -> None:
        if self.state == "connected":
            with contextlib.suppress(SSL.Error):
                self._ssl.shutdown()
            self._flush()
        if self.state not in ("failed", "closed"):
            self.state = "closed"

    # ------------------------------------------------------------------ output

    def poll_transmit(self) -> bytes | None:
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
            self._flush()
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
        if not self._fingerprint_matches(der):
            self._fail("peer certificate does not match the SDP fingerprint")
            return
        selected = self._ssl.get_selected_srtp_profile()
        profile = selected.decode() if selected else ""
        if profile not in SRTP_PROFILES:
            self._fail("no SRTP protection profile negotiated")
            return
        key_len, salt_len = SRTP_PROFILES[profile]
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        local, remote = split_keying_material(material, profile, self.role)
        self.state = "connected"
        self._deadline = self._handshake_deadline = None
        self._events.append(HandshakeComplete(profile, local, remote))

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        if depth != 0:
            return True
        return self._fingerprint_matches(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))

    def _fingerprint_matches(self, der: bytes) -> bool:
        checked = 0
        for algorithm, value in self.remote_fingerprints:
            if algorithm not in _DIGESTS:
                continue
            checked += 1
            if certificate_fingerprint(der, algorithm) != value:
                return False
        return checked > 0

    def _read_application_data(self) -> None:
        while True:
            try:
                data = self._ssl.recv(65536)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.state = "closed"
                self._events.append(DtlsClosed())
                return
            except SSL.Error:
                return  # a bad record is dropped; DTLS tolerates loss and garbage (RFC 6347 §4.1.2.7)
            if not data:
                return
            self._events.append(ApplicationData(data))

    def _update_deadline(self, now: float) -> None:
        if self._flight and self._deadline is None:
            self._deadline = now + self._rto

    def _flush(self) -> None:
        """Move OpenSSL's output into datagrams of whole records, at most :data:`MTU` bytes each.

        The memory BIO is a byte stream, so record boundaries are recovered from the 13-byte DTLS
        record header (RFC 6347 §4.1) instead of trusting read sizes.
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
        self._events.append(DtlsFailed(reason))
