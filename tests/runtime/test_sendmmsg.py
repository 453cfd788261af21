"""The batched send path (one ``sendmmsg`` per input, rewrite + SRTP protect in the native helper) puts exactly
the datagrams of the ``sendto`` path on the wire: same bytes, same destinations, same order per destination;
and when the kernel pushes back (``EAGAIN`` with a short count, a refused datagram, a closed socket) nothing
is lost without being counted.

Real sockets on loopback, real UDP endpoints on asyncio's and uvloop's loops, real ``WebRtcTransport``s and
``Consumer``s on the send side; the subscribers' SRTP keys are set by hand (instead of a DTLS handshake) so
that both runs protect with the same keys and their bytes can be compared. The ``EAGAIN`` case uses a real
bottleneck: an HTB class on ``lo`` holds the datagrams, charged to a small send buffer, until it drains.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.dtls import DtlsCertificate
from roomcast.proto.srtp import SrtpContext
from roomcast.proto.webrtc import WebRtcTransport
from roomcast.runtime import sendmmsg
from roomcast.runtime.udp import UdpEndpoint
from roomcast.sfu.consumer import Consumer
from roomcast.wire.stun import binding_request
from roomcast.wire.twcc import transport_seq_at
from tests.support.bandwidth_cap import BandwidthCap
from tests.support.lossy_lo import in_private_namespace

pytestmark = pytest.mark.skipif(sendmmsg.native is None, reason="the native helper was not built (no C compiler)")

PROFILE = "SRTP_AEAD_AES_128_GCM"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
CERTIFICATE = DtlsCertificate.generate()
TWCC_ID = 3


class Stamper:
    """Transport-wide sequence numbers, one per packet sent (what the SFU's congestion controller hands out)."""

    def __init__(self) -> None:
        self.next = 100

    def on_packet_sent(self, size: int, now: float, probe_cluster: int = -1) -> int:
        self.next = (self.next + 1) & 0xFFFF
        return self.next


class Publisher:
    """The publisher's connection: each RTP packet it receives is forwarded by every consumer (as the router's
    single-layer producer does), every third one (2, 5, ...) also makes one subscriber send RTCP and retransmit, and
    each answers the publisher with a datagram of its own (poll_transmit), so several send paths interleave."""

    def __init__(self, consumers: list[Consumer], subscribers: list[WebRtcTransport]) -> None:
        self.local_ufrag = "pub"
        self.closed = False
        self.consumers = consumers
        self.subscribers = subscribers
        self.remote: Addr | None = None
        self.bound = asyncio.Event()
        self.twcc_at = [-1]
        self._out: list[Transmit] = []
        self.inputs = 0

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.remote = remote
        self.bound.set()
        if data[0] < 2:  # the STUN check that bound our address
            return
        self.inputs += 1
        seq = struct.unpack_from("!H", data, 2)[0]
        self.twcc_at[0] = transport_seq_at(data, TWCC_ID)  # as the router does: -1 without the extension
        for consumer in self.consumers:
            consumer.forward(data, 0xABC, now)
        self.twcc_at[0] = -1
        if seq % 3 == 2:
            self.subscribers[seq % len(self.subscribers)].send_rtcp(b"\x81\xc9\x00\x01" + struct.pack("!I", seq))
            self.consumers[seq % len(self.consumers)].retransmit([(seq - 1) & 0xFFFF])
        self._out.append(Transmit(remote, b"ack" + data[2:4]))

    def handle_timeout(self, now: float) -> None:
        return None

    def poll_transmit(self) -> Transmit | None:
        return self._out.pop(0) if self._out else None

    def poll_timeout(self) -> float | None:
        return None

    def is_validated(self, remote: Addr) -> bool:
        return True


def check(tid: int) -> bytes:
    """A STUN check naming the publisher's ufrag: what binds its address at the endpoint."""
    return binding_request(bytes([tid]) * 12, "pub:x", "pw", priority=1, controlling=True, tie_breaker=1)


def rtp(seq: int, size: int, twcc: bool) -> bytes:
    """A source packet; with ``twcc``, a one-byte header extension (RFC 8285) holding a transport-cc element."""
    if twcc:
        header = struct.pack("!BBHII", 0x90, 96, seq, seq * 3000, 0xABC)
        header += struct.pack("!HHBHB", 0xBEDE, 1, TWCC_ID << 4 | 1, 0, 0)
    else:
        header = struct.pack("!BBHII", 0x80, 96 | (0x80 if seq % 5 == 0 else 0), seq, seq * 3000, 0xABC)
    return header + bytes((seq + i) & 0xFF for i in range(size - len(header)))


@dataclass
class Outcome:
    received: dict[Addr, list[bytes]]
    endpoint_drops: dict[str, int]
    calls: int
    deferred: int
    inputs: int
    publisher_got: list[bytes] = field(default_factory=list)


def make_subscriber(index: int, remote: Addr, publisher_twcc: list[int]) -> tuple[WebRtcTransport, Consumer]:
    transport = WebRtcTransport(
        CERTIFICATE, remote_ufrag=f"r{index}", remote_pwd="x" * 22, remote_fingerprints=[CERTIFICATE.fingerprint]
    )
    key = bytes([10 + index]) * 28
    transport.srtp = SrtpContext(PROFILE, key, b"\x02" * 28)  # instead of the DTLS handshake: fixed keys
    transport.remote = remote
    transport.twcc, transport.twcc_id, transport.twcc_at = Stamper(), TWCC_ID, publisher_twcc
    consumer = Consumer(
        ssrc=0x5000 + index,
        kind="video",
        clock_rate=90000,
        send=transport.send_rtp,
        send_rewritten=transport.send_rtp_rewritten,
        pt_map={96: 100 + index % 2},
        send_rtcp=transport.send_rtcp,
    )
    return transport, consumer


async def scenario(
    batched: bool,
    *,
    receivers: int,
    per_receiver: int,
    packets: int,
    size: int = 1200,
    sndbuf: int | None = None,
    cap_kbit: int | None = None,
    extra: Callable[[UdpEndpoint, Publisher, int], None] | None = None,
    settle: float = 0.3,
    host: str = "127.0.0.1",
) -> Outcome:
    """``packets`` publisher packets, each forwarded to ``receivers * per_receiver`` consumers; returns what
    every receiver socket got, in arrival order."""
    endpoint = await UdpEndpoint.bind(host, 0, batched=batched)
    assert endpoint.batched is batched
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sinks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(receivers)]
    publisher_sock = socket.socket(family, socket.SOCK_DGRAM)
    cap = BandwidthCap() if cap_kbit is not None else None
    try:
        for sink in sinks:
            sink.bind((host, 0))
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            sink.setblocking(False)
        publisher_sock.bind((host, 0))
        publisher_sock.setblocking(False)
        if sndbuf is not None:
            endpoint.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)  # type: ignore[union-attr]
        if cap is not None:
            cap.cap(sinks[0].getsockname()[1], cap_kbit, queue_bytes=4_000_000)
        twcc_cell = [-1]
        addresses = [sink.getsockname()[:2] for sink in sinks]
        pairs = [make_subscriber(i, addresses[i % receivers], twcc_cell) for i in range(receivers * per_receiver)]
        publisher = Publisher([c for _, c in pairs], [t for t, _ in pairs])
        publisher.twcc_at = twcc_cell
        endpoint.add(publisher, lambda: None)  # type: ignore[arg-type]
        for transport, _ in pairs:
            endpoint.add(transport, lambda: None)
        server = endpoint.local_address
        publisher_sock.sendto(check(1), server)
        await asyncio.wait_for(publisher.bound.wait(), 5)
        for seq in range(packets):
            publisher_sock.sendto(rtp(seq, size, twcc=seq % 2 == 1), server)
            if extra is not None:
                extra(endpoint, publisher, seq)
            await asyncio.sleep(0.002)  # one input per loop turn, as a paced publisher sends
        received: dict[Addr, list[bytes]] = {s.getsockname()[:2]: [] for s in sinks}
        expected = packets * len(pairs) + sum(1 for seq in range(packets) if seq % 3 == 2) * 2
        got: list[bytes] = []
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            progressed = False
            for sink in sinks:
                while True:
                    try:
                        data, _ = sink.recvfrom(70000)
                    except BlockingIOError:
                        break
                    received[sink.getsockname()[:2]].append(data)
                    progressed = True
            while True:
                try:
                    got.append(publisher_sock.recv(2000))
                except BlockingIOError:
                    break
            if progressed:
                quiet_since = time.monotonic()
            total = sum(len(v) for v in received.values())
            if total >= expected and len(got) >= publisher.inputs:
                break
            if time.monotonic() - quiet_since > settle:
                break  # nothing more is coming (e.g. a datagram was refused)
            await asyncio.sleep(0.01)
        batch = endpoint.batch
        return Outcome(
            received,
            dict(endpoint.drops),
            batch.calls if batch is not None else 0,
            batch.deferred if batch is not None else 0,
            publisher.inputs,
            got,
        )
    finally:
        if cap is not None:
            cap.lift()
        endpoint.close()
        for sink in sinks:
            sink.close()
        publisher_sock.close()


def run(loop: str, coro_factory: Callable[[], object]) -> Outcome:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coro_factory())  # type: ignore[arg-type, no-any-return]


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_batched_fan_out_puts_the_same_datagrams_on_the_wire_as_sendto(loop: str) -> None:
    args = {"receivers": 4, "per_receiver": 6, "packets": 30}
    batched = run(loop, lambda: scenario(True, **args))  # type: ignore[arg-type]
    plain = run(loop, lambda: scenario(False, **args))  # type: ignore[arg-type]
    consumers = 4 * 6
    expected = 30 * consumers + 10 * 2  # forwarded copies, plus an RTCP packet and a retransmission every 3rd input
    assert sum(len(v) for v in plain.received.values()) == expected, plain.endpoint_drops
    lengths = [[sorted(map(len, v)) for v in outcome.received.values()] for outcome in (batched, plain)]
    assert lengths[0] == lengths[1]
    # byte for byte, per destination, in order (ports differ between the runs: compare by receiver index)
    assert list(batched.received.values()) == list(plain.received.values())
    assert batched.publisher_got == plain.publisher_got and len(plain.publisher_got) == 30
    # one sendmmsg per input that sent anything (the 30 packets, not the STUN check), none without the batch
    assert batched.calls == 30 and plain.calls == 0
    assert batched.inputs == plain.inputs == 30
    assert batched.endpoint_drops == plain.endpoint_drops == {}
    # what the receiver gets is the rewritten packet: decrypt one per receiver with its subscriber's key
    for r, datagrams in enumerate(plain.received.values()):
        rx = SrtpContext(PROFILE, b"\x02" * 28, bytes([10 + r]) * 28)
        clear = rx.unprotect(datagrams[0])
        assert struct.unpack_from("!I", clear, 8)[0] == 0x5000 + r and clear[1] & 0x7F == 100 + r % 2
        assert clear[12:] == rtp(0, 1200, twcc=False)[12:]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_an_ipv6_socket_batches_the_same_datagrams_as_sendto() -> None:
    args = {"receivers": 2, "per_receiver": 3, "packets": 6, "host": "::1"}
    batched = run("uvloop", lambda: scenario(True, **args))  # type: ignore[arg-type]
    plain = run("uvloop", lambda: scenario(False, **args))  # type: ignore[arg-type]
    assert sum(len(v) for v in plain.received.values()) == 6 * 6 + 2 * 2
    assert list(batched.received.values()) == list(plain.received.values())
    assert batched.calls == 6 and batched.endpoint_drops == plain.endpoint_drops == {}


def test_a_twcc_stamped_packet_is_rewritten_identically_by_both_paths() -> None:
    """The native path writes the transport-wide sequence number into the extension element itself."""
    args = {"receivers": 1, "per_receiver": 1, "packets": 4}
    batched = run("uvloop", lambda: scenario(True, **args))  # type: ignore[arg-type]
    plain = run("uvloop", lambda: scenario(False, **args))  # type: ignore[arg-type]
    assert list(batched.received.values()) == list(plain.received.values())
    def receiver() -> SrtpContext:  # a fresh one per datagram: a retransmission repeats its packet index
        return SrtpContext(PROFILE, b"\x02" * 28, b"\x0a" * 28)

    clear = [receiver().unprotect(d) for d in next(iter(plain.received.values())) if d[1] < 192]
    stamped = [p for p in clear if p[0] & 0x10]
    assert len(stamped) == 3 and all(p[12:17] == b"\xbe\xde\x00\x01" + bytes([TWCC_ID << 4 | 1]) for p in stamped)
    # our stamper's numbers: seq 1, its retransmission (input 2), seq 3
    assert [struct.unpack_from("!H", p, 17)[0] for p in stamped] == [101, 102, 103]


@pytest.mark.skipif(not in_private_namespace(), reason="shapes lo: run inside the private namespace of scripts/test")
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_when_the_socket_would_block_the_rest_waits_in_the_transport_queue_in_order(loop: str) -> None:
    """A slow bottleneck holds the datagrams against a small send buffer: sendmmsg takes some (a short count),
    then EAGAIN; the rest is queued by the transport and arrives, in order, as with sendto."""
    args = {"receivers": 1, "per_receiver": 40, "packets": 3, "sndbuf": 16384, "cap_kbit": 4000}
    batched = run(loop, lambda: scenario(True, **args))  # type: ignore[arg-type]
    plain = run(loop, lambda: scenario(False, **args))  # type: ignore[arg-type]
    assert batched.deferred > 0, "the bottleneck never pushed back: the test proves nothing"
    assert sum(len(v) for v in batched.received.values()) == 3 * 40 + 2
    assert list(batched.received.values()) == list(plain.received.values())
    assert batched.endpoint_drops == plain.endpoint_drops == {}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_datagram_the_kernel_refuses_is_counted_and_the_rest_still_leave(loop: str) -> None:
    """EMSGSIZE for one oversized datagram in the middle of a batch: that one is counted, the others leave."""

    async def with_oversized(batched: bool) -> Outcome:
        def extra(endpoint: UdpEndpoint, publisher: Publisher, seq: int) -> None:
            if seq != 0:
                return
            original = publisher.handle_datagram

            def handle(data: bytes, remote: Addr, now: float) -> None:
                original(data, remote, now)
                if data[0] >= 2 and struct.unpack_from("!H", data, 2)[0] == 1:  # inside the second input
                    sub = publisher.subscribers[0]
                    assert sub.direct_send is not None and sub.remote is not None
                    sub.direct_send(bytes(70_000), sub.remote)  # more than a UDP datagram holds
                    for consumer in publisher.consumers:
                        consumer.forward(rtp(50, 300, twcc=False), 0xABC, now)

            publisher.handle_datagram = handle  # type: ignore[method-assign]

        return await scenario(batched, receivers=2, per_receiver=2, packets=3, extra=extra)

    batched = run(loop, lambda: with_oversized(True))
    plain = run(loop, lambda: with_oversized(False))
    assert batched.endpoint_drops == {"send_error": 1}
    assert plain.endpoint_drops == {"socket_error": 1}  # the transport reported it to error_received
    # 3 packets x 4 consumers, an RTCP packet and a retransmission at input 2, the 4 copies queued after it
    assert sum(len(v) for v in batched.received.values()) == 3 * 4 + 2 + 4
    assert list(batched.received.values()) == list(plain.received.values())


def test_datagrams_queued_when_the_socket_closes_are_counted() -> None:
    async def closed_mid_input() -> tuple[int, dict[str, int]]:
        endpoint = await UdpEndpoint.bind("127.0.0.1", 0, batched=True)
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        try:
            twcc_cell = [-1]
            pairs = [make_subscriber(i, sink.getsockname(), twcc_cell) for i in range(5)]
            publisher = Publisher([c for _, c in pairs], [t for t, _ in pairs])
            endpoint.add(publisher, lambda: None)  # type: ignore[arg-type]
            for transport, _ in pairs:
                endpoint.add(transport, lambda: None)
            original = publisher.handle_datagram

            def handle(data: bytes, remote: Addr, now: float) -> None:
                original(data, remote, now)
                assert endpoint.transport is not None
                if data[0] >= 2:
                    endpoint.transport.close()  # the socket goes away while this input's datagrams are queued

            publisher.handle_datagram = handle  # type: ignore[method-assign]
            # the loop's own call for a datagram read just before the close
            endpoint.datagram_received(check(2), ("127.0.0.1", 9))
            endpoint.datagram_received(rtp(4, 1200, twcc=False), ("127.0.0.1", 9))
            sink.setblocking(False)
            await asyncio.sleep(0.05)
            arrived = 0
            try:
                while sink.recv(2000):
                    arrived += 1
            except BlockingIOError:
                pass
            return arrived, dict(endpoint.drops)
        finally:
            endpoint.close()
            sink.close()

    for loop in sorted(LOOPS):
        arrived, drops = run(loop, closed_mid_input)
        # the STUN input answered nothing; the RTP input queued 5 copies and an answer to the publisher
        assert (arrived, drops) == (0, {"send_closed": 6}), loop


def test_any_bytes_like_datagram_is_sent_and_an_address_of_the_wrong_family_is_counted() -> None:
    async def odd_datagrams(batched: bool) -> Outcome:
        def extra(endpoint: UdpEndpoint, publisher: Publisher, seq: int) -> None:
            if seq != 0:
                return
            original = publisher.handle_datagram

            def handle(data: bytes, remote: Addr, now: float) -> None:
                original(data, remote, now)
                sub = publisher.subscribers[0]
                if data[0] >= 2 and sub.direct_send is not None and sub.remote is not None:
                    sub.direct_send(memoryview(b"view" + data[2:4]), sub.remote)  # type: ignore[arg-type]
                    sub.direct_send(b"v6", ("::1", 9))  # an IPv6 destination on an IPv4 socket

            publisher.handle_datagram = handle  # type: ignore[method-assign]

        return await scenario(batched, receivers=1, per_receiver=2, packets=2, extra=extra)

    batched = run("uvloop", lambda: odd_datagrams(True))
    plain = run("uvloop", lambda: odd_datagrams(False))
    views = [d for d in next(iter(batched.received.values())) if d.startswith(b"view")]
    assert views == [b"view\x00\x00", b"view\x00\x01"]  # one per input
    assert batched.endpoint_drops == {"send_error": 2}  # the v6 datagrams; everything else of each input left
    assert sum(len(v) for v in batched.received.values()) == 2 * 2 + 2
    # sendto raises on it instead: the rest of that input is lost, counted as a failed input
    assert plain.endpoint_drops == {"exception": 2}
