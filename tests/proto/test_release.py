"""Closed connections are freed by reference counting, not left to the cyclic GC with everything they
hold (OpenSSL contexts, SRTP sessions, the RTX rings behind the callbacks their owners installed)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from roomcast.proto.common import Addr
from roomcast.proto.dtls import DtlsCertificate, DtlsConnection
from roomcast.proto.webrtc import WebRtcTransport
from tests.proto.test_ice_dtls_srtp import CLIENT, SERVER, pair
from tests.support.simnet import SimNetwork


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def handshaken_server() -> DtlsConnection:
    net = SimNetwork(seed=1)
    net.link(SERVER, CLIENT, delay=0.01)
    server, client = pair()
    client.conn.start(0.0)
    server.conn.start(0.0)
    assert net.run_until(lambda: bool(server.events and client.events), [server, client], max_time=10)
    return server.conn


def test_a_handshaken_dtls_connection_dies_with_its_last_reference(no_cyclic_gc: None) -> None:
    conn = handshaken_server()
    assert conn.state == "connected"
    ref = weakref.ref(conn)
    conn.close()
    del conn
    assert ref() is None  # the verify callback holds it weakly: no Connection -> Context -> self cycle


class Owner:
    """Stands in for the router: it keeps the transport and installs a closure over itself."""

    def __init__(self, transport: WebRtcTransport) -> None:
        self.transport = transport
        self.ring = [b"packet"] * 1024
        self.sent: list[tuple[bytes, Addr]] = []
        transport.on_rtp = lambda pkt: self.ring.append(pkt)  # closure -> owner -> transport: a cycle
        transport.direct_send = lambda data, addr: self.sent.append((data, addr))


def test_a_closed_transport_drops_the_callbacks_its_owner_installed(no_cyclic_gc: None) -> None:
    certificate = DtlsCertificate.generate()
    transport = WebRtcTransport(
        certificate, remote_ufrag="abcd", remote_pwd="x" * 22, remote_fingerprints=[certificate.fingerprint]
    )
    Owner(transport)
    ref = weakref.ref(transport)
    transport.close()
    del transport
    assert ref() is None
