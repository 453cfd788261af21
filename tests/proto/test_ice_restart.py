"""ICE restart on the ICE-lite side (RFC 8445 §9): new credentials, same DTLS/SRTP, bounded demux state.

Fake clock, datagrams handed over by hand: no sockets, no sleeps.
"""

from __future__ import annotations

import struct

from roomcast.proto.common import Addr
from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.ice_lite import IceLiteAgent, RestartCompleted, Selected, Validated
from roomcast.proto.webrtc import TransportConnected, TransportIceRestarted, WebRtcTransport
from roomcast.runtime.udp import UdpEndpoint
from roomcast.wire.stun import binding_request, check_integrity

SERVER: Addr = ("10.0.0.1", 7882)
CLIENT: Addr = ("10.0.0.2", 50000)
MOVED: Addr = ("10.0.0.9", 61000)  # the client after a network change
OLD_PWD = "serverpassword1234567890"
NEW_PWD = "newserverpassword0987654321"


def check(agent: IceLiteAgent, username: str, pwd: str, remote: Addr, now: float, *, use: bool = False) -> bytes | None:
    req = binding_request(b"\x07" * 12, username, pwd, priority=10, controlling=True, tie_breaker=3, use_candidate=use)
    agent.handle_stun(req, remote, now)
    out = agent.poll_transmit()
    return None if out is None else out.data


def events(agent: IceLiteAgent) -> list[object]:
    out = []
    while (event := agent.poll_event()) is not None:
        out.append(event)
    return out


def test_restart_accepts_old_until_new_credentials_are_nominated_then_only_new() -> None:
    agent = IceLiteAgent("srv", OLD_PWD, "cli", "clientpwd")
    check(agent, "srv:cli", OLD_PWD, CLIENT, 0.0, use=True)
    assert events(agent) == [Validated(CLIENT), Selected(CLIENT)]
    assert agent.restart("srv2", NEW_PWD, "cli2", "clientpwd2") is None
    assert agent.restarting
    # before the peer nominates with the new credentials, the pair in use keeps working (media flows on)
    old = check(agent, "srv:cli", OLD_PWD, CLIENT, 1.0)
    assert old is not None and check_integrity(old, OLD_PWD.encode())
    # the new credentials are answered, signed with the new password
    new = check(agent, "srv2:cli2", NEW_PWD, MOVED, 2.0)
    assert new is not None and check_integrity(new, NEW_PWD.encode())
    assert events(agent) == [Validated(MOVED)] and agent.restarting  # no USE-CANDIDATE: completes nothing
    check(agent, "srv2:cli2", NEW_PWD, MOVED, 2.1, use=True)
    assert events(agent) == [Selected(MOVED), RestartCompleted("srv", MOVED)]
    assert not agent.restarting and agent.selected == MOVED
    refused = agent.counters["unknown_ufrag"]
    assert check(agent, "srv:cli", OLD_PWD, CLIENT, 3.0, use=True) is None  # the old generation is gone
    assert agent.counters["unknown_ufrag"] == refused + 1 and agent.selected == MOVED
    # a right ufrag with the wrong remote half is refused too
    assert check(agent, "srv2:cli", NEW_PWD, MOVED, 3.0) is None
    assert agent.counters["restarts"] == 1 and agent.counters["restarts_completed"] == 1


def test_restart_on_the_same_address_completes_and_keeps_consent() -> None:
    agent = IceLiteAgent("srv", OLD_PWD, "cli", "clientpwd", consent_timeout=30)
    check(agent, "srv:cli", OLD_PWD, CLIENT, 0.0, use=True)
    events(agent)
    agent.restart("srv2", NEW_PWD, "cli2", "clientpwd2")
    check(agent, "srv2:cli2", NEW_PWD, CLIENT, 10.0, use=True)
    assert events(agent) == [RestartCompleted("srv", CLIENT)]  # same address: no new selection
    assert agent.poll_timeout() == 40.0  # the new check refreshed consent


def test_a_second_restart_before_completion_drops_the_pending_credentials_only() -> None:
    agent = IceLiteAgent("srv", OLD_PWD, "cli", "clientpwd")
    check(agent, "srv:cli", OLD_PWD, CLIENT, 0.0, use=True)
    agent.restart("srv2", NEW_PWD, "cli2", "clientpwd2")
    assert agent.restart("srv3", "thirdpassword1234567890", "cli3", "clientpwd3") == "srv2"
    assert check(agent, "srv2:cli2", NEW_PWD, CLIENT, 1.0) is None  # the pending one is gone
    assert check(agent, "srv:cli", OLD_PWD, CLIENT, 1.0) is not None  # the working one stays
    check(agent, "srv3:cli3", "thirdpassword1234567890", CLIENT, 2.0, use=True)
    assert RestartCompleted("srv", CLIENT) in events(agent)


# ---------------------------------------------------------------- the transport: DTLS and SRTP survive


def pump(a: WebRtcTransport, a_addr: Addr, b: WebRtcTransport, b_addr: Addr, now: float) -> None:
    """Deliver everything both sides want to send until both are quiet."""
    moved = True
    while moved:
        moved = False
        for src, src_addr, dst in ((a, a_addr, b), (b, b_addr, a)):
            while (item := src.poll_transmit()) is not None:
                moved = True
                dst.handle_datagram(item.data, src_addr, now)


def transport_pair() -> tuple[WebRtcTransport, WebRtcTransport]:
    """A server (ICE-lite, DTLS server) and a client transport that know each other, not started."""
    s_cert, c_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    server = WebRtcTransport(
        s_cert,
        remote_ufrag="cli",
        remote_pwd="clientpassword123456789",
        remote_fingerprints=[c_cert.fingerprint],
        local_ufrag="srv",
        local_pwd=OLD_PWD,
    )
    client = WebRtcTransport(
        c_cert,
        remote_ufrag="srv",
        remote_pwd=OLD_PWD,
        remote_fingerprints=[s_cert.fingerprint],
        dtls_role="client",
        local_ufrag="cli",
        local_pwd="clientpassword123456789",
        server=SERVER,
    )
    return server, client


def connected_pair() -> tuple[WebRtcTransport, WebRtcTransport]:
    server, client = transport_pair()
    client.start(0.0)
    pump(client, CLIENT, server, SERVER, 0.0)
    assert server.connected and client.connected
    assert isinstance(server.poll_event(), TransportConnected)
    return server, client


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, 1000 + seq, 0x1234) + b"payload"


def test_restart_moves_media_to_the_new_address_with_the_same_srtp_keys() -> None:
    server, client = connected_pair()
    received: list[bytes] = []
    server.on_rtp = received.append
    assert client.srtp is not None and server.srtp is not None
    srtp_before = server.srtp
    protected_before = client.srtp.protect(rtp(1))  # protected before the restart
    assert server.restart_ice("srv2", NEW_PWD, "cli2", "clientpwd2") is None
    assert server.local_ufrag == "srv2"
    req = binding_request(
        b"\x08" * 12, "srv2:cli2", NEW_PWD, priority=10, controlling=True, tie_breaker=3, use_candidate=True
    )
    server.handle_datagram(req, MOVED, 5.0)
    response = server.poll_transmit()
    assert response is not None and response.remote == MOVED and check_integrity(response.data, NEW_PWD.encode())
    assert server.poll_event() == TransportIceRestarted("srv", MOVED)
    assert server.remote == MOVED and server.srtp is srtp_before and server.connected
    assert server.is_validated(MOVED) and not server.is_validated(CLIENT)  # old addresses forgotten
    server.handle_datagram(protected_before, MOVED, 5.1)
    assert received == [rtp(1)]  # the SRTP context carried over: an old packet still decrypts
    server.handle_datagram(client.srtp.protect(rtp(2)), CLIENT, 5.2)
    assert received == [rtp(1)] and server.counters["media_before_keys"] == 1  # the old path is closed
    server.send_rtp(rtp(3))
    out = server.poll_transmit()
    assert out is not None and out.remote == MOVED
    assert client.srtp.unprotect(out.data) == rtp(3)


def test_the_client_side_cannot_answer_a_restart() -> None:
    _, client = connected_pair()
    try:
        client.restart_ice("a", "b" * 22, "c", "d" * 22)
    except TypeError:
        return
    raise AssertionError("a controlling transport accepted an ICE-lite restart")


# ---------------------------------------------------------------- the endpoint: bounded demux state


async def test_endpoint_routes_both_ufrags_during_a_restart_and_stays_bounded() -> None:
    server, _client = connected_pair()
    endpoint = UdpEndpoint(clock=lambda: 0.0)
    endpoint.add(server, lambda: None)
    old_check = binding_request(b"\x09" * 12, "srv:cli", OLD_PWD, priority=1, controlling=True, tie_breaker=1)
    endpoint.datagram_received(old_check, CLIENT)
    assert endpoint.by_addr == {CLIENT: server}
    remote = CLIENT
    for n in range(1, 21):  # twenty restarts, each one to a new client address
        ufrag, pwd, cli = f"srv{n}", f"serverpassword{n:010d}", f"cli{n}"
        assert server.restart_ice(ufrag, pwd, cli, "clientpwd" * 3) is None
        endpoint.add_ufrag(server, ufrag)
        assert set(endpoint.by_ufrag) == {ufrag, _previous_ufrag(n)}
        remote = (f"10.0.1.{n}", 40000 + n)
        req = binding_request(
            bytes([n]) * 12, f"{ufrag}:{cli}", pwd, priority=1, controlling=True, tie_breaker=1, use_candidate=True
        )
        endpoint.datagram_received(req, remote)
        event = server.poll_event()
        assert event == TransportIceRestarted(_previous_ufrag(n), remote)
        endpoint.retire_ufrag(server, event.retired_ufrag, keep=event.remote)  # what the app does
        assert endpoint.by_ufrag == {ufrag: server} and endpoint.by_addr == {remote: server}
    endpoint.datagram_received(old_check, ("10.0.2.1", 1))  # the first generation, from a new address
    assert endpoint.drops["unknown_ufrag"] == 1 and len(endpoint.by_addr) == 1
    endpoint.remove(server)
    assert endpoint.by_ufrag == {} and endpoint.by_addr == {}
    endpoint.close()


def _previous_ufrag(n: int) -> str:
    return "srv" if n == 1 else f"srv{n - 1}"
