"""The association's bounds on a fake clock (issue 12 C1): send buffer, channel acceptance, no per-send
scans (asserted on structure: what the send path iterates, never how long it takes)."""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter, OrderedDict, deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.proto.common import Addr
from roomcast.proto.sctp import ChannelClosed, ChannelOpened, ChannelRefused, SctpAssociation, SendBufferFull
from roomcast.proto.sctp_send import SctpSender
from roomcast.proto.sctp_state import Outgoing
from roomcast.wire import dcep
from roomcast.wire.sctp import SACK, Packet, Sack, tsn_gt
from tests.proto.test_sctp import A, Ep, connected
from tests.support.simnet import SimNetwork

LABELS = {"_roomcast": 1, "_roomcast_lossy": 1}


def deaf(net: SimNetwork) -> None:
    """The client stops acknowledging: every packet of its that carries a SACK is dropped."""

    def drop(src: Addr, dst: Addr, data: bytes, now: float) -> bool:
        return src == A and any(c.type == SACK for c in Packet.parse(data).chunks)

    net.drop_if = drop


class CountingDeque(deque[Outgoing]):
    """A queue that counts full iterations (a linear scan), not the O(1) ends a FIFO uses."""

    scans = 0

    def __iter__(self) -> Any:
        CountingDeque.scans += 1
        return super().__iter__()


class CountingDict(OrderedDict[int, Outgoing]):
    scans = 0
    lookups = 0

    def __iter__(self) -> Any:
        CountingDict.scans += 1
        return super().__iter__()

    def values(self) -> Any:
        CountingDict.scans += 1
        return super().values()

    def items(self) -> Any:
        CountingDict.scans += 1
        return super().items()

    def get(self, key: int, default: Any = None) -> Any:
        CountingDict.lookups += 1
        return super().get(key, default)


def instrument(assoc: SctpAssociation) -> None:
    assoc.tx.queue = CountingDeque(assoc.tx.queue)
    assoc.tx.outstanding = CountingDict(assoc.tx.outstanding)
    CountingDeque.scans = CountingDict.scans = CountingDict.lookups = 0


def with_channel(**server_options: Any) -> tuple[SimNetwork, Ep, Ep]:
    net, client, server = connected(server_options=server_options)
    client.assoc.open_channel(0, "_roomcast", now=net.now)
    assert net.run_until(lambda: 0 in server.assoc.channels, [client, server], net.now + 5)
    return net, client, server


def test_send_buffer_bound_refuses_without_queueing_and_recovers() -> None:
    net, client, server = with_channel(max_buffered=100_000, max_chunks=1000)
    deaf(net)
    message = b"m" * 9_000
    sent = 0
    with pytest.raises(SendBufferFull, match="send buffer full"):
        for _ in range(1000):
            server.assoc.send(0, message, net.now)
            sent += 1
            net.run_for(0.05, [client, server])  # the client receives, but acknowledges nothing
    assert sent == 100_000 // len(message)  # everything up to the bound was accepted ...
    held = server.assoc.queued_bytes
    assert held <= 100_000 and server.assoc.peak_queued_bytes == held
    ssn = server.assoc.channels[0].next_ssn
    with pytest.raises(SendBufferFull):
        server.assoc.send(0, message, net.now)
    assert server.assoc.queued_bytes == held and server.assoc.channels[0].next_ssn == ssn  # ... the rest: nothing
    assert server.assoc.counters["send_buffer_full"] == 2

    net.drop_if = None  # acknowledgements flow again: the buffer drains and sending works
    assert net.run_until(lambda: server.assoc.queued_bytes == 0, [client, server], net.now + 120)
    server.assoc.send(0, b"after", net.now)
    assert net.run_until(lambda: client.messages(0)[-1:] == [b"after"], [client, server], net.now + 10)
    assert client.messages(0)[:-1] == [message] * sent  # reliable and in order: no gap from the refusals


def test_chunk_bound_caps_many_tiny_messages() -> None:
    net, _client, server = with_channel(max_buffered=10**9, max_chunks=500)
    deaf(net)
    with pytest.raises(SendBufferFull, match="500 chunks"):
        for _ in range(10_000):
            server.assoc.send(0, b"x", net.now)
    assert len(server.assoc.tx.queue) + len(server.assoc.tx.outstanding) <= 500


def test_sending_behind_a_stalled_window_never_scans_the_queue() -> None:
    net, client, server = with_channel()
    deaf(net)
    server.assoc.channels[0].max_lifetime_ms = 100  # a timed partially reliable channel (RFC 3758)
    instrument(server.assoc)
    for i in range(3000):
        server.assoc.send(0, b"%d" % i * 100, net.now)
    assert len(server.assoc.tx.queue) > 2000  # most of it waits behind the window ...
    assert CountingDeque.scans == 0 and CountingDict.scans == 0  # ... and no send looked at all of it

    net.now += 1.0  # every message's lifetime is over; the front of the queue is dropped as it is reached
    net.drop_if = None
    server.assoc.send(0, b"fresh", net.now)  # one send: skips only the expired chunks at the front
    assert net.run_until(lambda: b"fresh" in client.messages(0), [client, server], net.now + 30)
    assert server.assoc.counters["abandoned"] > 0
    assert len([m for m in client.messages(0) if m != b"fresh"]) < 3000  # the expired ones were skipped


def test_hostile_sack_gap_blocks_cost_at_most_one_lookup_per_outstanding_chunk() -> None:
    net, _client, server = with_channel()
    deaf(net)
    for _ in range(20):
        server.assoc.send(0, b"y" * 1000, net.now)
    instrument(server.assoc)
    outstanding = len(server.assoc.tx.outstanding)
    first = next(iter(server.assoc.tx.outstanding.values()))
    unsent = sum(len(o.chunk.user_data) for o in server.assoc.tx.queue)
    cum = server.assoc.tx.cum_ack
    hostile = Sack(cum, 1 << 20, tuple((2, 65535) for _ in range(250)), ()).chunk()
    server.assoc.handle_packet(Packet(5000, 5000, server.assoc.local_vtag, (hostile,)).serialize(), net.now)
    # 250 blocks of 65,535 TSNs each: 16 million look-ups if walked as sent, at most one per chunk here
    assert outstanding > 1 and CountingDict.lookups <= 2 * outstanding + 2
    # every outstanding chunk but the first (cum + 1, outside the blocks) was acknowledged by them
    assert server.assoc.buffered_amount() == len(first.chunk.user_data) + unsent


def test_only_the_expected_channels_are_accepted_the_rest_refused_and_reset() -> None:
    net, client, server = connected(server_options={"channel_limits": LABELS, "max_channels": len(LABELS)})
    ends = [client, server]
    client.assoc.open_channel(0, "_roomcast", now=net.now)
    client.assoc.open_channel(2, "_roomcast", now=net.now)  # a second one of the same label
    client.assoc.open_channel(4, "surprise", now=net.now)  # a label the server does not serve
    client.assoc.open_channel(6, "_roomcast_lossy", ordered=False, max_retransmits=0, now=net.now)
    assert net.run_until(
        lambda: sum(isinstance(e, ChannelRefused) for e in server.events) == 2 and 6 in server.assoc.channels,
        ends,
        net.now + 5,
    )
    opened = [(e.stream_id, e.label) for e in server.events if isinstance(e, ChannelOpened)]
    refused = {e.stream_id: e.reason for e in server.events if isinstance(e, ChannelRefused)}
    assert opened == [(0, "_roomcast"), (6, "_roomcast_lossy")]
    assert refused == {2: "at most 1 channel(s) labelled '_roomcast'", 4: "unexpected label"}
    assert sorted(server.assoc.channels) == [0, 6] and server.assoc.counters["channel_refused"] == 2
    # the refused streams were reset: the opener's channels close (RFC 8831 §6.7)
    assert net.run_until(lambda: not ({2, 4} & set(client.assoc.channels)), ends, net.now + 5)
    assert {e.stream_id for e in client.events if isinstance(e, ChannelClosed)} >= {2, 4}

    # an OPEN on a stream already open (in sequence, as a hostile peer sends it): ignored
    again = dcep.ChannelOpen(dcep.RELIABLE, 0, 0, "_roomcast").serialize()
    client.assoc._enqueue(0, again, dcep.PPID_DCEP, ordered=True, max_retransmits=None, lifetime=None)
    client.assoc._flush(net.now)
    assert net.run_until(lambda: server.assoc.counters["channel_refused"] == 3, ends, net.now + 5)
    assert 0 in server.assoc.channels and sum(isinstance(e, ChannelOpened) for e in server.events) == 2
    client.assoc.send(0, b"still here", net.now)
    assert net.run_until(lambda: server.messages(0) == [b"still here"], ends, net.now + 5)

    client.assoc.close_channel(0)  # closing frees the label's slot: it may be opened again
    assert net.run_until(lambda: 0 not in server.assoc.channels, ends, net.now + 5)
    client.assoc.open_channel(8, "_roomcast", now=net.now)
    assert net.run_until(lambda: 8 in server.assoc.channels, ends, net.now + 5)


def test_max_channels_caps_any_label() -> None:
    net, client, server = connected(server_options={"max_channels": 3})
    for stream in range(0, 10, 2):
        client.assoc.open_channel(stream, f"c{stream}", now=net.now)
    assert net.run_until(lambda: server.assoc.counters["channel_refused"] == 2, [client, server], net.now + 5)
    assert sorted(server.assoc.channels) == [0, 2, 4]


def check_totals(tx: SctpSender) -> None:
    """The incremental totals equal what a full scan of the queue and the outstanding chunks finds."""
    held = [*tx.queue, *tx.outstanding.values()]
    live = [o for o in held if not (o.acked or o.abandoned)]
    flying = [o for o in live if o.sent_at is not None]
    assert tx.queued_bytes == sum(len(o.chunk.user_data) for o in held)
    assert tx.buffered_amount() == sum(len(o.chunk.user_data) for o in live)
    for stream in (0, 1, 2):
        assert tx.buffered_amount(stream) == sum(len(o.chunk.user_data) for o in live if o.chunk.stream_id == stream)
    assert (tx._flight, tx._live) == (sum(len(o.chunk.user_data) for o in flying), len(flying))
    tsns = list(tx.outstanding)
    assert all(tsn_gt(b, a) for a, b in itertools.pairwise(tsns))  # TSN order, which the SACK walk relies on
    assert all(o.sent_at is None for o in tx.queue)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), st.integers(1, 4000)),
        st.tuples(
            st.just("sack"),
            st.integers(0, 12),
            st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=4),
        ),
        st.tuples(st.just("time"), st.floats(0.0, 3.0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_sender_totals_stay_exact_under_any_sacks_losses_and_timeouts(ops: list[tuple[Any, ...]]) -> None:
    aborted: list[str] = []
    tx = SctpSender(lambda chunks: None, aborted.append, Counter(), 0xFFFFFFF0, max_buffered=50_000, max_chunks=80)
    tx.peer_rwnd = 1 << 20
    now = 0.0
    # stream 0 reliable, 1 no retransmissions (lossy), 2 a 0.5 s lifetime; TSNs wrap past 2**32 early on
    options = {0: (None, False), 1: (0, True), 2: (None, False)}
    for op in ops:
        if op[0] == "send":
            rtx, unordered = options[op[1]]
            expires = now + 0.5 if op[1] == 2 else None
            with contextlib.suppress(SendBufferFull):
                tx.enqueue(op[1], 0, 53, b"d" * op[2], ordered=not unordered, max_retransmits=rtx, expires_at=expires)
        elif op[0] == "sack":
            gaps = tuple((min(a, b), max(a, b)) for a, b in op[2])
            tx.on_sack(Sack((tx.cum_ack + op[1]) & 0xFFFFFFFF, 1 << 20, gaps, ()), now)
        else:
            now += op[1]
            if tx.t3 is not None and now >= tx.t3:
                tx.on_timeout(now)
        if aborted:
            tx.clear()
            return
        tx.flush(now)
        check_totals(tx)
