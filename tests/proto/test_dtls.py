"""DtlsConnection over the simulated network: handshake, SRTP profile choice, loss, fingerprints (B5)."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from roomcast.proto.common import Addr
from roomcast.proto.dtls import (
    HANDSHAKE_TIMEOUT,
    MAX_PLAINTEXT,
    MTU,
    ApplicationData,
    DtlsCertificate,
    DtlsClosed,
    DtlsConnection,
    DtlsFailed,
    HandshakeComplete,
    certificate_fingerprint,
    split_keying_material,
)
from tests.support.simnet import DtlsEndpoint, SimNetwork

SERVER: Addr = ("10.0.0.1", 7882)
CLIENT: Addr = ("10.0.0.2", 50000)
EVIL: Addr = ("10.6.6.6", 666)
GCM, CM = "SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"
Fingerprints = list[tuple[str, str]]
T = TypeVar("T")


def pair(
    *,
    server_profiles: tuple[str, ...] = (GCM, CM),
    client_profiles: tuple[str, ...] = (GCM, CM),
    client_sees: Fingerprints | None = None,
    server_sees: Fingerprints | None = None,
    server_cert: DtlsCertificate | None = None,
) -> tuple[DtlsEndpoint, DtlsEndpoint]:
    """A started server/client pair; ``*_sees`` overrides the fingerprints from the peer's SDP."""
    s_cert, c_cert = server_cert or DtlsCertificate.generate(), DtlsCertificate.generate()
    server = DtlsConnection(
        s_cert,
        role="server",
        remote_fingerprints=server_sees or [c_cert.fingerprint],
        srtp_profiles=server_profiles,
    )
    client = DtlsConnection(
        c_cert,
        role="client",
        remote_fingerprints=client_sees or [s_cert.fingerprint],
        srtp_profiles=client_profiles,
    )
    server.start(0.0)
    client.start(0.0)
    return DtlsEndpoint(SERVER, CLIENT, server), DtlsEndpoint(CLIENT, SERVER, client)


def of_type(net: SimNetwork, addr: Addr, kind: type[T]) -> list[T]:
    return [e for e in net.events_at(addr) if isinstance(e, kind)]


def settled(net: SimNetwork, *addrs: Addr) -> bool:
    return all(of_type(net, a, HandshakeComplete) or of_type(net, a, DtlsFailed) for a in addrs)


def handshake(net: SimNetwork, server: DtlsEndpoint, client: DtlsEndpoint, max_time: float = 60) -> None:
    assert net.run_until(lambda: settled(net, SERVER, CLIENT), [server, client], max_time)


def tracer(log: list[tuple[Addr, bytes]]) -> Callable[[Addr, Addr, bytes, float], bool]:
    """A ``drop_if`` hook that records every datagram and drops none."""

    def trace(src: Addr, dst: Addr, data: bytes, now: float) -> bool:
        log.append((src, data))
        return False

    return trace


def state(ep: DtlsEndpoint) -> str:
    return ep.conn.state


def keys(net: SimNetwork) -> tuple[HandshakeComplete, HandshakeComplete]:
    (s_done,) = of_type(net, SERVER, HandshakeComplete)
    (c_done,) = of_type(net, CLIENT, HandshakeComplete)
    return s_done, c_done


@pytest.mark.parametrize(
    ("server_profiles", "client_profiles", "expected"),
    [
        ((GCM, CM), (GCM, CM), GCM),  # GCM preferred when both offer both
        ((GCM, CM), (CM, GCM), GCM),  # the server's order decides (RFC 5764 §4.1.1)
        ((CM, GCM), (GCM, CM), CM),
        ((GCM, CM), (CM,), CM),
        ((CM,), (GCM, CM), CM),
        ((GCM,), (GCM,), GCM),
    ],
)
def test_handshake_negotiates_the_profile_and_keys_match_crosswise(
    server_profiles: tuple[str, ...], client_profiles: tuple[str, ...], expected: str
) -> None:
    net = SimNetwork(seed=1)
    net.link(SERVER, CLIENT, delay=0.02)
    server, client = pair(server_profiles=server_profiles, client_profiles=client_profiles)
    handshake(net, server, client)
    s_done, c_done = keys(net)
    assert s_done.srtp_profile == c_done.srtp_profile == expected
    assert s_done.local_key == c_done.remote_key and s_done.remote_key == c_done.local_key
    assert len(s_done.local_key) == len(s_done.remote_key) == (28 if expected == GCM else 30)
    assert s_done.local_key != s_done.remote_key
    assert server.conn.state == client.conn.state == "connected"
    assert server.conn.poll_timeout() is None and client.conn.poll_timeout() is None
    assert net.now == pytest.approx(0.08)  # two round trips, no retransmission


def test_no_common_srtp_profile_fails_both_sides_without_keys() -> None:
    net = SimNetwork(seed=1)
    net.link(SERVER, CLIENT)
    server, client = pair(server_profiles=(GCM,), client_profiles=(CM,))
    handshake(net, server, client)
    for addr in (SERVER, CLIENT):
        assert not of_type(net, addr, HandshakeComplete)
        assert "SRTP" in of_type(net, addr, DtlsFailed)[0].reason


@pytest.mark.parametrize("seed", range(1, 9))
def test_handshake_completes_at_20_percent_loss_by_retransmission(seed: int) -> None:
    net = SimNetwork(seed=seed)
    net.link(SERVER, CLIENT, loss=0.2, delay=0.03, jitter=0.02, duplicate=0.05)
    server, client = pair()
    handshake(net, server, client)
    s_done, c_done = keys(net)
    assert s_done.local_key == c_done.remote_key and s_done.remote_key == c_done.local_key
    assert net.now < HANDSHAKE_TIMEOUT


def test_retransmissions_happen_only_when_loss_requires_them() -> None:
    for seed in range(20):  # find a seeded run that lost something, then check the timer did the work
        net = SimNetwork(seed=seed)
        net.link(SERVER, CLIENT, loss=0.2, delay=0.03)
        server, client = pair()
        handshake(net, server, client)
        if net.lost:
            break
    assert net.lost > 0 and keys(net)
    assert net.sent > 4 + net.lost - 1  # every loss was made good by a resend
    assert net.now >= 1.0  # ... which waited for the 1 s timer (RFC 6347 §4.2.4.1)


def test_dead_link_backs_off_exponentially_then_fails_at_the_deadline() -> None:
    sends: list[tuple[Addr, float]] = []

    def blackhole(src: Addr, dst: Addr, data: bytes, now: float) -> bool:
        sends.append((src, now))
        return True

    net = SimNetwork(seed=1, drop_if=blackhole)
    net.link(SERVER, CLIENT)
    server, client = pair()
    assert net.run_until(lambda: settled(net, SERVER, CLIENT), [server, client], max_time=100)
    assert [t for src, t in sends if src == CLIENT] == [0, 1, 3, 7, 15, 23]  # RTO 1, 2, 4, 8, 8 s
    assert [src for src, _ in sends if src == SERVER] == []
    for addr in (SERVER, CLIENT):
        assert net.events[addr] == [(HANDSHAKE_TIMEOUT, DtlsFailed("handshake timed out"))]
    assert server.conn.state == client.conn.state == "failed"
    assert client.conn.poll_timeout() is None


def test_handshake_recovers_after_a_five_second_blackhole() -> None:
    net = SimNetwork(seed=2, drop_if=lambda src, dst, data, now: now < 5.0)
    net.link(SERVER, CLIENT, delay=0.02)
    server, client = pair()
    handshake(net, server, client)
    assert keys(net)
    assert 7.0 <= net.now < 7.2  # the client's fourth resend (at t=7) is the first to get through


def test_lost_final_flight_is_resent_when_the_client_retransmits() -> None:
    dropped: list[float] = []

    def lose_final_flight(src: Addr, dst: Addr, data: bytes, now: float) -> bool:
        if src == SERVER and server.conn.state == "connected" and not dropped:
            dropped.append(now)
            return True
        return False

    net = SimNetwork(seed=3, drop_if=lose_final_flight)
    net.link(SERVER, CLIENT, delay=0.02)
    server, client = pair()
    handshake(net, server, client)
    s_done, c_done = keys(net)
    assert dropped == [pytest.approx(0.06)]
    assert net.events[CLIENT][0][0] == pytest.approx(0.04 + 1.0 + 0.04)  # client timer from flight 5, one RTT
    assert s_done.local_key == c_done.remote_key


def test_duplicated_final_flights_do_not_ping_pong() -> None:
    net = SimNetwork(seed=4)
    net.link(SERVER, CLIENT, delay=0.02, duplicate=1.0)
    server, client = pair()
    handshake(net, server, client)
    net.run_for(60, [server, client])
    assert keys(net) and net.in_flight == 0
    assert net.sent <= 6  # 4 flights plus at most a resent final flight per duplicated flight 5


def big_certificate() -> DtlsCertificate:
    """A certificate of several kB, so flights must be fragmented to fit the MTU (RFC 6347 §4.2.3)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName(f"host-{i:04d}.roomcast.example") for i in range(150)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return DtlsCertificate(key, cert)


@pytest.mark.parametrize("loss", [0.0, 0.15])
def test_flights_larger_than_the_mtu_are_fragmented(loss: float) -> None:
    trace: list[tuple[Addr, bytes]] = []
    net = SimNetwork(seed=5, drop_if=tracer(trace))
    net.link(SERVER, CLIENT, loss=loss, delay=0.02, jitter=0.01)
    cert = big_certificate()
    assert len(cert.der) > 3 * MTU
    server, client = pair(server_cert=cert)
    handshake(net, server, client)
    assert keys(net)
    sizes = [len(data) for _, data in trace]
    assert max(sizes) <= MTU and sum(sizes) > len(cert.der)


def fp(cert: DtlsCertificate, algorithm: str = "sha-256") -> tuple[str, str]:
    return algorithm, certificate_fingerprint(cert.der, algorithm)


SERVER_CERT = DtlsCertificate.generate()
OTHER_CERT = DtlsCertificate.generate()


@pytest.mark.parametrize(
    ("fingerprints", "ok"),
    [
        ([fp(SERVER_CERT, "sha-1")], True),
        ([fp(SERVER_CERT, "sha-384")], True),
        ([fp(SERVER_CERT, "sha-512")], True),
        ([(fp(SERVER_CERT)[0], fp(SERVER_CERT)[1].lower())], True),
        ([fp(OTHER_CERT), fp(SERVER_CERT)], True),  # fingerprints of several candidate certificates
        ([fp(SERVER_CERT), ("sha-256", "AB:" * 31 + "AB")], True),
        ([fp(OTHER_CERT)], False),
        ([fp(SERVER_CERT), fp(OTHER_CERT, "sha-512")], False),  # the strongest hash function decides
        ([fp(SERVER_CERT, "sha-1"), fp(OTHER_CERT)], False),
        ([("md5", "00:11")], False),
        ([("sha-256", "")], False),
    ],
)
def test_remote_certificate_is_checked_against_sdp_fingerprints(fingerprints: Fingerprints, ok: bool) -> None:
    net = SimNetwork(seed=6)
    net.link(SERVER, CLIENT)
    server, client = pair(client_sees=fingerprints, server_cert=SERVER_CERT)
    handshake(net, server, client)
    if ok:
        assert keys(net)
        return
    assert [type(e) for e in net.events_at(CLIENT)] == [DtlsFailed]
    assert "fingerprint" in of_type(net, CLIENT, DtlsFailed)[0].reason
    assert not of_type(net, SERVER, HandshakeComplete)  # our alert reached the server before any Finished


def test_wrong_client_fingerprint_fails_on_the_server_and_later_input_is_ignored() -> None:
    trace: list[tuple[Addr, bytes]] = []
    net = SimNetwork(seed=7, drop_if=tracer(trace))
    net.link(SERVER, CLIENT)
    server, client = pair(server_sees=[fp(OTHER_CERT)])
    handshake(net, server, client)
    assert [type(e) for e in net.events_at(SERVER)] == [DtlsFailed]
    assert "fingerprint" in of_type(net, SERVER, DtlsFailed)[0].reason
    assert not of_type(net, CLIENT, HandshakeComplete)
    assert server.conn.state == client.conn.state == "failed"
    for src, data in trace:  # replay the whole conversation at both: nothing comes out any more
        (server if src == CLIENT else client).conn.handle_datagram(data, 10.0)
    for ep in (server, client):
        ep.conn.handle_timeout(100.0)
        assert ep.conn.poll_event() is None and ep.conn.poll_transmit() is None
        assert ep.conn.poll_timeout() is None


def junk(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    header = bytes([rng.choice([20, 21, 22, 23, 24])]) + rng.choice([b"\xfe\xfd", b"\xfe\xff", b"\x03\x03"])
    if kind == 1:
        return header + rng.randbytes(rng.randrange(0, 100))
    body = rng.randbytes(rng.randrange(0, 200))
    epoch_seq = rng.randbytes(8) if kind == 2 else bytes(8)
    length = len(body) if rng.random() < 0.8 else rng.randrange(65536)
    return header + epoch_seq + length.to_bytes(2, "big") + body


def test_garbage_never_raises_and_does_not_stop_an_honest_handshake() -> None:
    """Random bytes and malformed records are dropped before OpenSSL, which would abort on some."""
    rng = random.Random(8)
    net = SimNetwork(seed=8)
    net.link(SERVER, CLIENT, delay=0.02)
    net.link(EVIL, SERVER, delay=0.001)
    net.link(EVIL, CLIENT, delay=0.001)
    server, client = pair()
    for ep in (server, client):
        ep.conn.handle_datagram(b"", 0.0)
        for _ in range(200):
            ep.conn.handle_datagram(junk(rng), 0.0)
    for i in range(400):  # and more while the handshake is in flight
        net.send(EVIL, SERVER if i % 2 else CLIENT, junk(rng), now=i * 0.0002)
    handshake(net, server, client)
    s_done, c_done = keys(net)
    assert s_done.local_key == c_done.remote_key
    for _ in range(500):  # and after it: records without a valid MAC are dropped
        server.conn.handle_datagram(junk(rng), net.now)
    client.conn.send(b"still here")
    net.run_for(1, [server, client])
    assert of_type(net, SERVER, ApplicationData) == [ApplicationData(b"still here")]
    assert server.conn.state == "connected"
    assert server.conn.dropped > 300 and client.conn.dropped > 100


def test_a_forged_fatal_alert_fails_the_handshake_closed() -> None:
    """Plaintext alerts are unauthenticated during a handshake (any DTLS stack): fail, never keys."""
    net = SimNetwork(seed=10)
    net.link(SERVER, CLIENT, delay=0.02)
    server, client = pair()
    handshake_failure = b"\x15\xfe\xfd" + bytes(8) + b"\x00\x02" + b"\x02\x28"  # level fatal, code 40
    net.send(EVIL, SERVER, handshake_failure, now=0.0)
    net.link(EVIL, SERVER, delay=0.001)
    handshake(net, server, client)
    assert [type(e) for e in net.events_at(SERVER)] == [DtlsFailed]
    assert not of_type(net, CLIENT, HandshakeComplete)


def test_a_datagram_with_one_bad_record_is_dropped_whole() -> None:
    server, client = pair()
    hello = client.conn.poll_transmit()
    assert hello is not None
    truncated = b"\x16\xfe\xfd" + bytes(8) + b"\x00\x40"  # announces 64 bytes, has none
    server.conn.handle_datagram(hello + truncated, 0.0)
    assert server.conn.dropped == 1 and server.conn.poll_transmit() is None
    server.conn.handle_datagram(hello, 0.0)
    assert server.conn.dropped == 1 and server.conn.poll_transmit() is not None  # the ServerHello flight


def test_application_data_both_ways_then_close() -> None:
    net = SimNetwork(seed=9)
    net.link(SERVER, CLIENT, delay=0.01)
    server, client = pair()
    handshake(net, server, client)
    client.conn.send(b"ping")
    server.conn.send(b"P" * 1100)  # an SCTP packet of typical WebRTC size
    server.conn.send(b"")
    net.run_for(1, [server, client])
    assert of_type(net, SERVER, ApplicationData) == [ApplicationData(b"ping")]
    assert of_type(net, CLIENT, ApplicationData) == [ApplicationData(b"P" * 1100)]
    with pytest.raises(ValueError, match="record"):
        client.conn.send(bytes(MAX_PLAINTEXT + 1))
    assert client.conn.state == "connected"  # a caller's mistake does not kill the association
    client.conn.close()
    assert state(client) == "closed" and client.conn.poll_event() is None  # a local close has no event
    net.run_for(1, [server, client])
    assert of_type(net, SERVER, DtlsClosed) == [DtlsClosed()]
    assert state(server) == "closed"
    for ep in (server, client):
        with pytest.raises(ConnectionError):
            ep.conn.send(b"too late")


def test_send_before_the_handshake_raises_and_timers_follow_the_state() -> None:
    server, client = pair()
    with pytest.raises(ConnectionError):
        client.conn.send(b"early")
    assert client.conn.poll_timeout() == 1.0  # ClientHello resend timer
    assert server.conn.poll_timeout() == HANDSHAKE_TIMEOUT  # a server only waits
    assert client.conn.poll_transmit() is not None and server.conn.poll_transmit() is None


def test_constructor_rejects_unknown_profiles_and_roles() -> None:
    cert = DtlsCertificate.generate()
    with pytest.raises(ValueError, match="SRTP"):
        DtlsConnection(cert, role="server", remote_fingerprints=[], srtp_profiles=("SRTP_NULL_NULL",))
    with pytest.raises(ValueError, match="role"):
        DtlsConnection(cert, role="peer", remote_fingerprints=[])  # type: ignore[arg-type]


def test_certificate_is_p256_self_signed_for_30_days() -> None:
    cert = DtlsCertificate.generate()
    assert isinstance(cert.key, ec.EllipticCurvePrivateKey) and cert.key.curve.name == "secp256r1"
    assert cert.cert.issuer == cert.cert.subject
    assert cert.cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=29)
    algorithm, value = cert.fingerprint
    assert algorithm == "sha-256" and len(value) == 32 * 3 - 1 and value == value.upper()


@pytest.mark.parametrize(("profile", "key_len", "salt_len"), [(GCM, 16, 12), (CM, 16, 14)])
def test_key_split_follows_rfc5764_section_4_2(profile: str, key_len: int, salt_len: int) -> None:
    material = bytes(range(2 * (key_len + salt_len)))
    client_key, server_key = material[:key_len], material[key_len : 2 * key_len]
    client_salt = material[2 * key_len : 2 * key_len + salt_len]
    server_salt = material[2 * key_len + salt_len :]
    client = client_key + client_salt
    server = server_key + server_salt
    assert split_keying_material(material, profile, "client") == (client, server)
    assert split_keying_material(material, profile, "server") == (server, client)


def test_connections_sharing_a_certificate_each_check_their_own_peer() -> None:
    """One OpenSSL context serves every connection of a certificate (the server's case): the fingerprint
    check must still be each connection's own, and no session is cached or resumed between them."""
    shared = DtlsCertificate.generate()
    results = []
    contexts = set()
    for honest in (True, False, True):
        net = SimNetwork(seed=7)
        sees = None if honest else [("sha-256", "AB:" * 31 + "AB")]
        server, client = pair(server_cert=shared, server_sees=sees)
        handshake(net, server, client)
        results.append((state(server), state(client)))
        context = server.conn._ssl.get_context()
        assert context.get_session_cache_mode() == SSL.SESS_CACHE_OFF
        contexts.add(id(context))
    assert len(contexts) == 1  # really shared
    assert results[0] == results[2] == ("connected", "connected")
    assert results[1][0] == "failed"  # the server refused this client's certificate: wrong fingerprint
