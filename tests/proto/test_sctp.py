"""SCTP association client ↔ server over the simulated network: handshake, channels, loss, limits."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.sctp import (
    AssociationAborted,
    AssociationEstablished,
    ChannelClosed,
    ChannelOpened,
    MessageReceived,
    SctpAssociation,
    SctpEvent,
)
from roomcast.wire import dcep
from roomcast.wire.sctp import Packet
from tests.support.simnet import SimNetwork

A: Addr = ("10.0.0.1", 5000)
B: Addr = ("10.0.0.2", 5000)


@dataclass
class Ep:
    address: Addr
    peer: Addr
    assoc: SctpAssociation
    events: list[SctpEvent] = field(default_factory=list)

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.assoc.handle_packet(data, now)
        self._drain()

    def handle_timeout(self, now: float) -> None:
        self.assoc.handle_timeout(now)
        self._drain()

    def poll_transmit(self) -> Transmit | None:
        data = self.assoc.poll_transmit()
        return None if data is None else Transmit(self.peer, data)

    def poll_timeout(self) -> float | None:
        return self.assoc.poll_timeout()

    def _drain(self) -> None:
        while (e := self.assoc.poll_event()) is not None:
            self.events.append(e)

    def messages(self, stream: int | None = None) -> list[bytes]:
        return [
            e.data for e in self.events if isinstance(e, MessageReceived) and (stream is None or e.stream_id == stream)
        ]


def connected(
    loss: float = 0.0, seed: int = 1, server_options: dict[str, Any] | None = None, **link: float
) -> tuple[SimNetwork, Ep, Ep]:
    net = SimNetwork(seed=seed)
    net.link(A, B, loss=loss, delay=0.01, **link)
    client = Ep(A, B, SctpAssociation("client", max_message_size=2 * 1024 * 1024))
    server = Ep(B, A, SctpAssociation("server", max_message_size=2 * 1024 * 1024, **(server_options or {})))
    client.assoc.start(0.0)
    assert net.run_until(
        lambda: (
            any(isinstance(e, AssociationEstablished) for e in server.events)
            and any(isinstance(e, AssociationEstablished) for e in client.events)
        ),
        [client, server],
        30,
    )
    return net, client, server


def test_handshake_channel_open_and_messages_both_ways() -> None:
    net, client, server = connected()
    client.assoc.open_channel(0, "chat", now=net.now)
    net.run_until(lambda: any(isinstance(e, ChannelOpened) for e in server.events), [client, server], 5)
    opened = next(e for e in server.events if isinstance(e, ChannelOpened))
    assert (opened.label, opened.ordered, opened.max_retransmits) == ("chat", True, None)
    client.assoc.send(0, b"hello", net.now, binary=False)
    server.assoc.send(0, b"\x00\x01binary", net.now)
    server.assoc.send(0, b"", net.now)
    net.run_until(lambda: bool(server.messages()) and len(client.messages()) >= 2, [client, server], 5)
    received = next(e for e in server.events if isinstance(e, MessageReceived))
    assert (received.data, received.ppid) == (b"hello", dcep.PPID_STRING)
    assert client.messages() == [b"\x00\x01binary", b""]


def test_one_mebibyte_message_arrives_byte_identical() -> None:
    net, client, server = connected()
    client.assoc.open_channel(0, "bulk", now=net.now)
    payload = os.urandom(1024 * 1024)
    net.run_until(lambda: 0 in server.assoc.channels, [client, server], 5)
    client.assoc.send(0, payload, net.now)
    net.run_until(lambda: bool(server.messages()), [client, server], 30)
    assert hashlib.sha256(server.messages()[0]).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reliable_ordered_messages_survive_twenty_percent_loss(seed: int) -> None:
    net, client, server = connected(loss=0.2, seed=seed, jitter=0.01, duplicate=0.05)
    client.assoc.open_channel(0, "reliable", now=net.now)
    net.run_until(lambda: 0 in server.assoc.channels, [client, server], 30)
    sent = [f"message {i}".encode() * (1 + i % 50) for i in range(300)]
    for message in sent:
        client.assoc.send(0, message, net.now)
    assert net.run_until(lambda: len(server.messages()) == 300, [client, server], 300)
    assert server.messages() == sent  # every one, once, in order
    assert net.lost > 0 and client.assoc.counters["retransmitted"] > 0


def test_lossy_channel_delivers_a_subset_without_blocking_the_reliable_one() -> None:
    net, client, server = connected(loss=0.2, seed=7, jitter=0.005)
    client.assoc.open_channel(0, "reliable", now=net.now)
    client.assoc.open_channel(2, "lossy", ordered=False, max_retransmits=0, now=net.now)
    net.run_until(lambda: {0, 2} <= set(server.assoc.channels), [client, server], 30)
    for i in range(200):
        client.assoc.send(2, f"lossy {i}".encode(), net.now)
        client.assoc.send(0, f"sure {i}".encode(), net.now)
    assert net.run_until(lambda: len(server.messages(0)) == 200, [client, server], 120)
    lossy = server.messages(2)
    assert 0 < len(lossy) < 200  # some were abandoned (FORWARD-TSN), the rest arrived
    assert client.assoc.counters["abandoned"] > 0
    assert server.messages(0) == [f"sure {i}".encode() for i in range(200)]


def test_stream_reset_closes_the_channel_on_both_sides() -> None:
    net, client, server = connected()
    client.assoc.open_channel(4, "temp", now=net.now)
    net.run_until(lambda: 4 in server.assoc.channels, [client, server], 5)
    client.assoc.close_channel(4)
    net.run_until(lambda: any(isinstance(e, ChannelClosed) for e in server.events), [client, server], 5)
    assert 4 not in server.assoc.channels
    assert (
        any(isinstance(e, ChannelClosed) and e.stream_id == 4 for e in client.events) or 4 not in client.assoc.channels
    )


def test_wrong_tag_bad_checksum_and_abort() -> None:
    net, client, server = connected()
    good = client.assoc.poll_transmit()
    assert good is None
    forged = Packet(5000, 5000, 12345, ()).serialize()
    server.assoc.handle_packet(forged, net.now)
    assert server.assoc.counters["bad_vtag"] == 1
    corrupted = bytearray(Packet(5000, 5000, server.assoc.local_vtag, ()).serialize())
    corrupted[10] ^= 0xFF
    server.assoc.handle_packet(bytes(corrupted), net.now)
    assert server.assoc.counters["malformed"] == 1
    from roomcast.wire.sctp import ABORT, Chunk

    server.assoc.handle_packet(
        Packet(5000, 5000, server.assoc.local_vtag, (Chunk(ABORT, 0, b""),)).serialize(), net.now
    )
    server._drain()
    assert isinstance(server.events[-1], AssociationAborted)


def test_oversized_message_is_refused_with_a_reason() -> None:
    net, client, _server = connected()
    client.assoc.open_channel(0, "x", now=net.now)
    with pytest.raises(ValueError, match="max-message-size"):
        client.assoc.send(0, b"x" * (2 * 1024 * 1024 + 1), net.now)
