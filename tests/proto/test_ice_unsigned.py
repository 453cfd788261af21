"""Issue 12 M1: only an integrity-checked, successful check validates an address (RFC 8445 §7.3).

An attacker who read the ufrags (clear text in SDP and every USERNAME) but not the password sends
role-conflict checks, then DTLS records from the same port. Fake clock, datagrams handed over by hand.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

from roomcast.proto.common import Addr
from roomcast.proto.ice_lite import IceLiteAgent, Selected, Validated
from roomcast.proto.webrtc import TransportFailed, WebRtcTransport
from roomcast.runtime.udp import UdpEndpoint
from roomcast.wire.stun import (
    ICE_CONTROLLED,
    MESSAGE_INTEGRITY,
    StunMessage,
    binding_request,
    check_integrity,
)
from tests.proto.test_ice_restart import CLIENT, NEW_PWD, OLD_PWD, SERVER, events, pump, transport_pair
from tests.support.stun_attack import FRESH_SEQ, dtls_change_cipher_spec, dtls_fatal_alert, unsigned_role_conflict

ATTACKER: Addr = ("10.6.6.6", 40000)


def role_conflict_signed(username: str, pwd: str) -> bytes:
    return binding_request(b"\x0b" * 12, username, pwd, priority=1, controlling=False, tie_breaker=5)


def answers(agent: IceLiteAgent) -> list[bytes]:
    out = []
    while (item := agent.poll_transmit()) is not None:
        out.append(item.data)
    return out


def test_the_agent_checks_integrity_before_it_answers_a_role_conflict() -> None:
    agent = IceLiteAgent("srv", OLD_PWD, "cli", "clientpwd")
    for forged in (False, True):
        for use in (False, True):
            request = unsigned_role_conflict("srv:cli", forged_integrity=forged, use_candidate=use)
            assert StunMessage.parse(request).has(ICE_CONTROLLED)
            assert StunMessage.parse(request).has(MESSAGE_INTEGRITY) is forged
            agent.handle_stun(request, ATTACKER, 0.0)
    agent.handle_stun(role_conflict_signed("srv:cli", "not-the-password"), ATTACKER, 0.0)
    outcome = (answers(agent), events(agent), agent.poll_timeout(), agent.counters["bad_integrity"])
    assert outcome == ([], [], None, 5)  # no answer, nothing validated, no consent timer armed
    assert agent.counters["role_conflict"] == 0
    # with the password the peer gets its 487, signed; still an error: nothing validated, no consent
    agent.handle_stun(role_conflict_signed("srv:cli", OLD_PWD), CLIENT, 1.0)
    [error] = answers(agent)
    assert StunMessage.parse(error).error_code == 487 and check_integrity(error, OLD_PWD.encode())
    assert events(agent) == [] and agent.poll_timeout() is None and agent.counters["role_conflict"] == 1


def test_during_an_ice_restart_both_generations_need_integrity() -> None:
    agent = IceLiteAgent("srv", OLD_PWD, "cli", "clientpwd")
    agent.handle_stun(
        binding_request(
            b"\x01" * 12, "srv:cli", OLD_PWD, priority=1, controlling=True, tie_breaker=1, use_candidate=True
        ),
        CLIENT,
        0.0,
    )
    answers(agent)
    assert events(agent) == [Validated(CLIENT), Selected(CLIENT)]
    agent.restart("srv2", NEW_PWD, "cli2", "clientpwd2")
    for username in ("srv:cli", "srv2:cli2"):  # the pair in use and the new one
        agent.handle_stun(unsigned_role_conflict(username), ATTACKER, 1.0)
        agent.handle_stun(unsigned_role_conflict(username, use_candidate=True), ATTACKER, 1.0)
    assert (answers(agent), events(agent)) == ([], [])
    assert agent.restarting and agent.selected == CLIENT and agent.counters["bad_integrity"] == 4


def start_handshake(server: WebRtcTransport, client: WebRtcTransport) -> None:
    """Run ICE and the client's first DTLS flight; stop when the server has sent its flight (not delivered)."""
    client.start(0.0)
    for _ in range(2):  # the check, its answer: the client nominates and sends its ClientHello
        while (item := client.poll_transmit()) is not None:
            server.handle_datagram(item.data, CLIENT, 0.0)
        while (item := server.poll_transmit()) is not None:
            client.handle_datagram(item.data, SERVER, 0.0)
    assert server.dtls.state == "handshaking" and server.remote == CLIENT


def attack(server: WebRtcTransport, ufrags: str, now: float, ccs: int = 50) -> dict[str, object]:
    """Unsigned role conflicts, then a fatal alert and ``ccs`` tiny CCS records, all from ATTACKER."""
    for _ in range(20):
        server.handle_datagram(unsigned_role_conflict(ufrags), ATTACKER, now)
    server.handle_datagram(dtls_fatal_alert(), ATTACKER, now)
    for seq in range(1, ccs + 1):
        server.handle_datagram(dtls_change_cipher_spec(FRESH_SEQ + seq), ATTACKER, now)
    sent: Counter[Addr] = Counter()  # datagrams by destination: answers to ATTACKER, resent flights to CLIENT
    while (item := server.poll_transmit()) is not None:
        sent[item.remote] += 1
    failed = []
    while (event := server.poll_event()) is not None:
        if isinstance(event, TransportFailed):
            failed.append(event.reason)
    return {"sent": sent, "validated": server.is_validated(ATTACKER), "failed": failed, "dtls": server.dtls.state}


def test_dtls_from_the_attackers_port_mid_handshake_is_ignored_and_the_handshake_completes() -> None:
    server, client = transport_pair()
    start_handshake(server, client)
    outcome = attack(server, "srv:cli", 0.1)
    assert outcome == {"sent": {}, "validated": False, "failed": [], "dtls": "handshaking"}
    assert server.counters["dtls_unvalidated_address"] == 51 and server.ice.counters["bad_integrity"] == 20
    pump(client, CLIENT, server, SERVER, 0.2)  # the real peer finishes: nothing of the attack stuck
    assert server.connected and client.connected


def test_ccs_records_from_the_attackers_port_trigger_no_retransmission() -> None:
    server, client = transport_pair()
    client.start(0.0)
    pump(client, CLIENT, server, SERVER, 0.0)
    assert server.connected and server.dtls._flight  # connected; the final flight is kept for resends
    outcome = attack(server, "srv:cli", 1.0)
    assert outcome == {"sent": {}, "validated": False, "failed": [], "dtls": "connected"}
    # control: the same record from the peer's own address is taken as a resent flight and answered
    server.handle_datagram(dtls_change_cipher_spec(), CLIENT, 1.1)
    resent = server.poll_transmit()
    assert resent is not None and resent.remote == CLIENT


class _Socket:
    """The endpoint's view of a datagram socket: records what it sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Addr]] = []

    def sendto(self, data: bytes, addr: Addr) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> None:
        return None

    def close(self) -> None:
        pass


async def test_the_endpoint_neither_answers_binds_nor_refunds_unsigned_checks() -> None:
    now = [0.0]
    endpoint = UdpEndpoint(clock=lambda: now[0], new_address_rate=50.0)  # burst 100 per source IP
    sock = _Socket()
    endpoint.connection_made(cast(asyncio.DatagramTransport, sock))
    server, client = transport_pair()
    endpoint.add(server, lambda: None)
    for port in range(40000, 40150):  # 150 at once, each from a new port of the attacker's IP
        endpoint.datagram_received(unsigned_role_conflict("srv:cli"), (ATTACKER[0], port))
    endpoint.datagram_received(dtls_fatal_alert(), ATTACKER)
    for seq in range(1, 51):
        endpoint.datagram_received(dtls_change_cipher_spec(FRESH_SEQ + seq), ATTACKER)
    outcome = (sock.sent, endpoint.by_addr, endpoint.drops["stun_rate_limited"], endpoint.drops["unknown_address"])
    assert outcome == ([], {}, 50, 51)  # the burst of 100 was spent and not refunded: 50 refused unparsed
    assert server.ice.counters["bad_integrity"] == 100 and not server.closed
    # the real peer, from another IP, is answered and bound; its handshake runs as if nothing happened
    client.start(0.0)
    for _ in range(20):
        while (item := client.poll_transmit()) is not None:
            endpoint.datagram_received(item.data, CLIENT)
        while sock.sent:
            data, addr = sock.sent.pop(0)
            assert addr == CLIENT
            client.handle_datagram(data, SERVER, 0.0)
    assert server.connected and client.connected and endpoint.by_addr == {CLIENT: server}
    endpoint.remove(server)
    endpoint.close()
