"""The data router's rules on a fake clock (issue 12 C1, M3): history once, one channel per label,
receiver backlog on every send, canSubscribe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from roomcast.proto.sctp import ChannelClosed, ChannelOpened, ChannelRefused, MessageReceived
from roomcast.sfu.datachannels import LABEL_LOSSY, LABEL_RELIABLE, RECEIVER_BACKLOG, DataRouter, encode_envelope


@dataclass
class FakeSctp:
    queued_bytes: int = 0
    peak_queued_bytes: int = 0
    max_buffered: int = 1 << 23
    channels: dict[int, Any] = field(default_factory=dict)
    closed: list[int] = field(default_factory=list)

    def close_channel(self, stream_id: int) -> None:
        self.closed.append(stream_id)


@dataclass
class FakeTransport:
    """Records what the router sends; ``grow`` bytes are added to the backlog per message."""

    sctp: FakeSctp = field(default_factory=FakeSctp)
    sent: list[tuple[int, bytes]] = field(default_factory=list)
    grow: int = 0

    def send_message(self, stream_id: int, data: bytes) -> None:
        self.sent.append((stream_id, data))
        self.sctp.queued_bytes += self.grow


def opened(stream: int, label: str = LABEL_RELIABLE) -> ChannelOpened:
    return ChannelOpened(stream, label, "", True, None, None)


def router_with_history(count: int = 3) -> DataRouter:
    router = DataRouter("r", lambda: 0.0)
    router.history.extend(encode_envelope({"f": "old", "t": "chat"}, b"%d" % i) for i in range(count))
    return router


def join(router: DataRouter, owner: str, **grants: Any) -> FakeTransport:
    transport = FakeTransport()
    router.add(owner, owner, transport, grants.pop("can_publish_data", True), **grants)  # type: ignore[arg-type]
    return transport


def test_history_is_replayed_once_per_participant_whatever_it_reopens() -> None:
    router = router_with_history()
    first = join(router, "alice")
    router.on_event("alice", opened(0), 0.0)
    assert [data for _, data in first.sent] == list(router.history)
    router.on_event("alice", ChannelClosed(0), 0.0)
    router.on_event("alice", opened(2), 0.0)  # closed and opened again: no second replay
    second = join(router, "alice")  # a new $data connection of the same participant: none either
    router.on_event("alice", opened(0), 0.0)
    assert len(first.sent) == 3 and second.sent == []
    assert router.counters["data_messages_out"] == 3


def test_a_second_channel_of_a_label_is_closed_and_counted() -> None:
    router = router_with_history()
    alice = join(router, "alice")
    router.on_event("alice", opened(0), 0.0)
    router.on_event("alice", opened(2, LABEL_LOSSY), 0.0)
    for stream, label in ((4, LABEL_RELIABLE), (6, LABEL_LOSSY), (8, "other")):
        router.on_event("alice", opened(stream, label), 0.0)
    router.on_event("alice", ChannelRefused(10, LABEL_RELIABLE, "at most 1"), 0.0)  # refused by the association
    assert alice.sctp.closed == [4, 6, 8] and router.counters["data_dropped_channel_refused"] == 4
    assert len(alice.sent) == 3  # the history went out once, on the first channel


def test_replay_stops_at_the_receiver_backlog_and_counts_the_rest() -> None:
    router = router_with_history(10)
    alice = join(router, "alice")
    alice.grow = RECEIVER_BACKLOG // 4
    router.on_event("alice", opened(0), 0.0)
    assert len(alice.sent) == 5  # 5 x a quarter passes the backlog; the sixth is refused
    assert router.counters["data_dropped_receiver_backlog"] == 1


def test_without_can_subscribe_nothing_of_the_room_arrives_but_its_own_errors_do() -> None:
    router = router_with_history()
    reader = join(router, "reader")
    silent = join(router, "silent", can_subscribe=False)
    router.on_event("reader", opened(0), 0.0)
    router.on_event("silent", opened(0), 0.0)
    assert silent.sent == []  # no history
    router.on_event("reader", MessageReceived(0, 53, encode_envelope({"t": "chat"}, b"live")), 0.0)
    router.on_event("silent", MessageReceived(0, 53, encode_envelope({"t": "chat"}, b"mine")), 0.0)
    assert silent.sent == [] and reader.sent[-1][1].endswith(b"mine")  # it may send, receives nothing
    router.on_event("silent", MessageReceived(0, 53, b"\x00"), 0.0)  # malformed: it is told why
    assert len(silent.sent) == 1 and b"invalid_message" in silent.sent[0][1]
