"""ICE-lite, DTLS and SRTP machines over the simulated network: deterministic, fake time, no sleeps."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.dtls import DtlsCertificate, DtlsConnection, DtlsFailed, HandshakeComplete, split_keying_material
from roomcast.proto.ice_lite import ConsentExpired, IceLiteAgent, Selected, Validated
from roomcast.proto.srtp import SrtpContext, SrtpError
from roomcast.wire.stun import StunMessage, binding_request, check_integrity
from tests.support.simnet import SimNetwork

SERVER: Addr = ("10.0.0.1", 7882)
CLIENT: Addr = ("10.0.0.2", 50000)


@dataclass
class DtlsEndpoint:
    """Adapter: a DtlsConnection knows no addresses; this one always talks to ``peer``."""

    address: Addr
    peer: Addr
    conn: DtlsConnection
    events: list[object] = field(default_factory=list)

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.conn.handle_datagram(data, now)
        self._events()

    def handle_timeout(self, now: float) -> None:
        self.conn.handle_timeout(now)
        self._events()

    def poll_transmit(self) -> Transmit | None:
        data = self.conn.poll_transmit()
        return None if data is None else Transmit(self.peer, data)

    def poll_timeout(self) -> float | None:
        return self.conn.poll_timeout()

    def _events(self) -> None:
        while (event := self.conn.poll_event()) is not None:
            self.events.append(event)


def pair(server_fp_override: str | None = None) -> tuple[DtlsEndpoint, DtlsEndpoint]:
    s_cert, c_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    client_sees = ("sha-256", server_fp_override) if server_fp_override else s_cert.fingerprint
    server = DtlsEndpoint(
        SERVER, CLIENT, DtlsConnection(s_cert, role="server", remote_fingerprints=[c_cert.fingerprint])
    )
    client = DtlsEndpoint(CLIENT, SERVER, DtlsConnection(c_cert, role="client", remote_fingerprints=[client_sees]))
    return server, client


def done(*eps: DtlsEndpoint) -> bool:
    return all(any(isinstance(e, HandshakeComplete | DtlsFailed) for e in ep.events) for ep in eps)


@pytest.mark.parametrize(("loss", "seed"), [(0.0, 1), (0.2, 2), (0.2, 3), (0.3, 4)])
def test_dtls_handshake_completes_under_loss_with_matching_keys(loss: float, seed: int) -> None:
    net = SimNetwork(seed=seed)
    net.link(SERVER, CLIENT, loss=loss, delay=0.02, jitter=0.01, duplicate=0.05)
    server, client = pair()
    client.conn.start(0.0)
    server.conn.start(0.0)
    assert net.run_until(lambda: done(server, client), [server, client], max_time=60)
    s_done = next(e for e in server.events if isinstance(e, HandshakeComplete))
    c_done = next(e for e in client.events if isinstance(e, HandshakeComplete))
    assert s_done.srtp_profile == c_done.srtp_profile == "SRTP_AEAD_AES_128_GCM"
    assert s_done.local_key == c_done.remote_key and s_done.remote_key == c_done.local_key
    if loss:
        assert net.lost > 0  # the retransmission timer did real work


def test_wrong_fingerprint_fails_closed_without_keys() -> None:
    net = SimNetwork(seed=5)
    net.link(SERVER, CLIENT)
    server, client = pair(server_fp_override="AA:" * 31 + "AA")
    client.conn.start(0.0)
    net.run_until(lambda: any(isinstance(e, DtlsFailed) for e in client.events), [server, client], max_time=10)
    assert [type(e) for e in client.events] == [DtlsFailed]
    assert "fingerprint" in client.events[0].reason  # type: ignore[attr-defined]
    assert client.conn.state == "failed"


def test_handshake_times_out_on_a_dead_link() -> None:
    net = SimNetwork(seed=6)
    link = net.link(SERVER, CLIENT)
    link.up = False
    net.links[(SERVER, CLIENT)].up = False
    server, client = pair()
    client.conn.start(0.0)
    assert net.run_until(lambda: bool(client.events), [server, client], max_time=100)
    assert isinstance(client.events[0], DtlsFailed) and net.now >= 30


def test_garbage_records_never_raise() -> None:
    server, _ = pair()
    for junk in (b"\x16\xfe\xfd" + b"\x00" * 10, b"\x17" * 50, b"\x14\xfe\xff\x00", bytes(range(20, 64)) * 3):
        server.conn.handle_datagram(junk, 0.0)
    assert server.conn.state in ("handshaking", "failed")


def test_key_split_follows_rfc5764() -> None:
    material = bytes(range(60))
    local, remote = split_keying_material(material, "SRTP_AES128_CM_SHA1_80", "server")
    assert remote == bytes(range(16)) + bytes(range(32, 46))  # client key + client salt
    assert local == bytes(range(16, 32)) + bytes(range(46, 60))


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x1234) + b"\xab" * 200


@pytest.mark.parametrize("profile", ["SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"])
def test_srtp_round_trip_tamper_and_replay(profile: str) -> None:
    key_len = 28 if "GCM" in profile else 30
    a = SrtpContext(profile, b"\x01" * key_len, b"\x02" * key_len)
    b = SrtpContext(profile, b"\x02" * key_len, b"\x01" * key_len)
    protected = a.protect(rtp(1))
    assert b.unprotect(protected) == rtp(1)
    with pytest.raises(SrtpError):
        b.unprotect(protected)  # replay
    tampered = bytearray(a.protect(rtp(2)))
    tampered[20] ^= 1
    with pytest.raises(SrtpError):
        b.unprotect(bytes(tampered))
    assert a.protect(rtp(3)) == a.protect(rtp(3))  # a retransmission may be protected again
    rtcp = struct.pack("!BBHI", 0x81, 206, 2, 1) + struct.pack("!I", 0x1234)
    assert b.unprotect_rtcp(a.protect_rtcp(rtcp)) == rtcp


def check(
    agent: IceLiteAgent, remote: Addr, now: float, *, use: bool = False, pwd: str = "serverpassword1234567890"
) -> bytes | None:
    req = binding_request(b"\x05" * 12, "srv:cli", pwd, priority=10, controlling=True, tie_breaker=3, use_candidate=use)
    agent.handle_stun(req, remote, now)
    out = agent.poll_transmit()
    return None if out is None else out.data


def test_ice_lite_answers_nominates_and_expires_consent() -> None:
    agent = IceLiteAgent("srv", "serverpassword1234567890", "cli", "clientpwd", consent_timeout=30)
    response = check(agent, CLIENT, 0.0)
    assert response is not None and check_integrity(response, b"serverpassword1234567890")
    assert StunMessage.parse(response).xor_mapped_address() == CLIENT
    assert agent.poll_event() == Validated(CLIENT)  # a success, so the address is proven
    assert agent.poll_event() is None and agent.selected is None
    check(agent, CLIENT, 1.0, use=True)
    assert agent.poll_event() == Selected(CLIENT)
    check(agent, CLIENT, 20.0)
    assert agent.poll_timeout() == 50.0
    agent.handle_timeout(49.9)
    assert agent.poll_event() is None
    agent.handle_timeout(50.0)
    assert agent.poll_event() == ConsentExpired(CLIENT)


def test_ice_lite_drops_bad_integrity_and_unknown_ufrag() -> None:
    agent = IceLiteAgent("srv", "serverpassword1234567890", "cli", "clientpwd")
    assert check(agent, CLIENT, 0.0, use=True, pwd="wrongpassword") is None
    assert agent.counters["bad_integrity"] == 1 and agent.selected is None
    other = binding_request(b"\x06" * 12, "nobody:cli", "x", priority=1, controlling=True, tie_breaker=1)
    agent.handle_stun(other, CLIENT, 0.0)
    assert agent.counters["unknown_ufrag"] == 1 and agent.poll_transmit() is None
    agent.handle_stun(b"\x00\x01\x00\x00garbage", CLIENT, 0.0)
    assert agent.counters["malformed"] == 1


def test_ice_lite_follows_a_new_nomination() -> None:
    agent = IceLiteAgent("srv", "serverpassword1234567890", "cli", "clientpwd")
    check(agent, CLIENT, 0.0, use=True)
    moved: Addr = ("10.0.0.3", 40000)
    check(agent, moved, 1.0, use=True)
    assert [agent.poll_event() for _ in range(4)] == [
        Validated(CLIENT),
        Selected(CLIENT),
        Validated(moved),
        Selected(moved),
    ]
