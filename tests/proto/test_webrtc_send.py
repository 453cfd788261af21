"""A WebRtcTransport pair (our ICE-controlling client and the ICE-lite server) over the simulated network:
large packets flow both ways, and a packet that cannot be protected for sending is counted where it
failed, never as the *input* that caused it failing (issue 21: a forwarding failure inside ``on_rtp``
was counted as ``srtp_unprotect_failed`` on the publisher's transport and ended the fan-out there)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.srtp import MAX_SRTP_PACKET
from roomcast.proto.webrtc import TransportConnected, WebRtcTransport, new_ice_credentials
from tests.support.simnet import SimNetwork

SERVER: Addr = ("10.0.0.1", 7882)
CLIENT: Addr = ("10.0.0.2", 50000)


@dataclass
class Node:
    """A transport with the address the simulated network needs."""

    address: Addr
    transport: WebRtcTransport
    received: list[bytes] = field(default_factory=list)
    connected: bool = False

    def __post_init__(self) -> None:
        self.transport.on_rtp = self.received.append

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.transport.handle_datagram(data, remote, now)
        self._events()

    def handle_timeout(self, now: float) -> None:
        self.transport.handle_timeout(now)
        self._events()

    def poll_transmit(self) -> Transmit | None:
        return self.transport.poll_transmit()

    def poll_timeout(self) -> float | None:
        return self.transport.poll_timeout()

    def _events(self) -> None:
        while (event := self.transport.poll_event()) is not None:
            self.connected |= isinstance(event, TransportConnected)


def connected_pair() -> tuple[SimNetwork, Node, Node]:
    s_cert, c_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    s_ufrag, s_pwd = new_ice_credentials()
    c_ufrag, c_pwd = new_ice_credentials()
    server = WebRtcTransport(
        s_cert, remote_ufrag=c_ufrag, remote_pwd=c_pwd, remote_fingerprints=[c_cert.fingerprint],
        local_ufrag=s_ufrag, local_pwd=s_pwd,
    )  # fmt: skip
    client = WebRtcTransport(
        c_cert, remote_ufrag=s_ufrag, remote_pwd=s_pwd, remote_fingerprints=[s_cert.fingerprint],
        dtls_role="client", local_ufrag=c_ufrag, local_pwd=c_pwd, server=SERVER,
    )  # fmt: skip
    net = SimNetwork(seed=3)
    net.link(SERVER, CLIENT, delay=0.005)
    nodes = Node(SERVER, server), Node(CLIENT, client)
    server.start(0.0)
    client.start(0.0)
    assert net.run_until(lambda: all(n.connected for n in nodes), list(nodes), max_time=10)
    return net, nodes[0], nodes[1]


def rtp(seq: int, size: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x1234) + bytes([seq]) * (size - 12)


def test_a_1400_byte_packet_is_received_and_sent_back() -> None:
    net, server, client = connected_pair()
    server.transport.on_rtp = server.transport.send_rtp  # an echo: forwarding on the receiving call path
    for seq, size in enumerate((200, 1357, 1400, 1472, MAX_SRTP_PACKET - 16), start=1):
        client.transport.send_rtp(rtp(seq, size))
    net.run_until(lambda: len(client.received) == 5, [server, client], max_time=net.now + 1)
    assert [len(p) for p in client.received] == [200, 1357, 1400, 1472, MAX_SRTP_PACKET - 16]
    assert server.transport.counters["srtp_unprotect_failed"] == 0
    assert server.transport.counters["srtp_protect_failed"] == 0


def test_a_packet_that_cannot_be_sent_is_a_send_drop_not_an_input_failure() -> None:
    net, server, client = connected_pair()
    server.transport.on_rtp = lambda packet: server.transport.send_rtp(packet + bytes(MAX_SRTP_PACKET))
    client.transport.send_rtp(rtp(1, 1400))
    client.transport.send_rtp(rtp(2, 1400))
    net.run_until(lambda: server.transport.counters["srtp_protect_failed"] == 2, [server, client], max_time=net.now + 1)
    assert server.transport.counters["srtp_protect_failed"] == 2  # raised into on_rtp's caller before
    assert server.transport.counters["srtp_unprotect_failed"] == 0
    assert client.received == []
