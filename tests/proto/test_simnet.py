"""The simulated network itself: the other proto tests are only as good as its impairments and clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from roomcast.proto.common import Addr, Transmit
from tests.support.simnet import SimNetwork

A: Addr = ("10.0.0.1", 1000)
B: Addr = ("10.0.0.2", 2000)


@dataclass
class Recorder:
    """Records what arrives; sends ``count`` numbered datagrams to ``peer`` every ``interval`` seconds."""

    address: Addr
    peer: Addr = B
    count: int = 0
    interval: float = 0.001
    size: int = 100
    got: list[tuple[float, int, Addr]] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    _sent: int = 0
    _next: float = 0.0
    _out: list[Transmit] = field(default_factory=list)

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.got.append((now, int.from_bytes(data[:4], "big"), remote))

    def handle_timeout(self, now: float) -> None:
        self.timeouts.append(now)
        if self._sent < self.count and now >= self._next:
            self._out.append(Transmit(self.peer, self._sent.to_bytes(4, "big") + bytes(self.size - 4)))
            self._sent += 1
            self._next = now + self.interval

    def poll_transmit(self) -> Transmit | None:
        return self._out.pop(0) if self._out else None

    def poll_timeout(self) -> float | None:
        return self._next if self._sent < self.count else None


@dataclass
class Echo:
    """Answers every datagram with the same bytes and queues one event per datagram."""

    address: Addr
    out: list[Transmit] = field(default_factory=list)
    pending_events: list[str] = field(default_factory=list)

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.out.append(Transmit(remote, data))
        self.pending_events.append(f"echo {len(data)}")

    def handle_timeout(self, now: float) -> None:
        pass

    def poll_transmit(self) -> Transmit | None:
        return self.out.pop(0) if self.out else None

    def poll_timeout(self) -> float | None:
        return None

    def poll_event(self) -> str | None:
        return self.pending_events.pop(0) if self.pending_events else None


def stream(
    seed: int,
    count: int = 1000,
    *,
    loss: float = 0,
    delay: float = 0.01,
    jitter: float = 0,
    duplicate: float = 0,
) -> tuple[SimNetwork, Recorder]:
    net = SimNetwork(seed=seed)
    net.link(A, B, loss=loss, delay=delay, jitter=jitter, duplicate=duplicate)
    sender, receiver = Recorder(A, count=count), Recorder(B)
    net.run_until(lambda: False, [sender, receiver], max_time=60)
    return net, receiver


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    _, first = stream(7, loss=0.1, delay=0.02, jitter=0.01, duplicate=0.05)
    _, again = stream(7, loss=0.1, delay=0.02, jitter=0.01, duplicate=0.05)
    _, other = stream(8, loss=0.1, delay=0.02, jitter=0.01, duplicate=0.05)
    assert first.got == again.got
    assert first.got != other.got


def test_clean_link_delivers_everything_in_order_after_exactly_the_delay() -> None:
    net, receiver = stream(1, count=100, delay=0.05)
    assert [seq for _, seq, _ in receiver.got] == list(range(100))
    assert [round(t - 0.05 - seq * 0.001, 9) for t, seq, _ in receiver.got] == [0.0] * 100
    assert {remote for _, _, remote in receiver.got} == {A}
    assert (net.sent, net.delivered, net.lost) == (100, 100, 0)


def test_loss_rate_is_close_to_configured() -> None:
    net, receiver = stream(2, count=5000, loss=0.2)
    assert 0.17 < net.lost / net.sent < 0.23
    assert len(receiver.got) == net.delivered == 5000 - net.lost


def test_jitter_reorders_and_duplication_duplicates() -> None:
    net, receiver = stream(3, count=1000, delay=0.02, jitter=0.01, duplicate=0.1)
    seqs = [seq for _, seq, _ in receiver.got]
    assert seqs != sorted(seqs)  # 10 ms of jitter over 1 ms spacing must reorder
    assert sorted(set(seqs)) == list(range(1000))
    assert len(seqs) - 1000 == net.duplicated and 60 < net.duplicated < 140
    assert all(0.02 <= t - seq * 0.001 <= 0.03 + 1e-9 for t, seq, _ in receiver.got)


def test_bandwidth_cap_serialises_and_tail_drops() -> None:
    # 1000 datagrams of 1000 bytes offered at 8 Mbit/s into a 4 Mbit/s bottleneck.
    net = SimNetwork(seed=4)
    net.link(A, B, delay=0.01, bandwidth=4_000_000)
    sender, receiver = Recorder(A, count=1000, size=1000), Recorder(B)
    net.run_until(lambda: False, [sender, receiver], max_time=60)
    assert len(receiver.got) == 1000
    assert receiver.got[-1][0] == pytest.approx(0.01 + 1000 * 0.002)  # the queue drains at 2 ms each
    net = SimNetwork(seed=4)
    net.link(A, B, delay=0.01, bandwidth=4_000_000, queue_bytes=20_000)
    sender, receiver = Recorder(A, count=1000, size=1000), Recorder(B)
    net.run_until(lambda: False, [sender, receiver], max_time=60)
    assert net.queue_dropped == net.lost > 400
    worst = max(t - seq * 0.001 for t, seq, _ in receiver.got)
    assert worst <= 0.01 + 0.042 + 1e-9  # a 20 kB queue is 40 ms, plus 2 ms on the wire


def test_link_down_is_a_blackhole_until_healed() -> None:
    net = SimNetwork(seed=5)
    net.link(A, B, up=False)
    sender, receiver = Recorder(A, count=2000), Recorder(B)
    net.run_until(lambda: net.now >= 1.0, [sender, receiver], max_time=60)
    assert receiver.got == []
    net.set_up(A, B, True)
    net.run_until(lambda: False, [sender, receiver], max_time=60)
    assert len(receiver.got) == net.delivered and 900 < len(receiver.got) < 1100


def test_drop_if_hook_sees_every_datagram_and_can_drop_one() -> None:
    seen: list[tuple[Addr, Addr, int, float]] = []

    def drop(src: Addr, dst: Addr, data: bytes, now: float) -> bool:
        seen.append((src, dst, len(data), now))
        return int.from_bytes(data[:4], "big") == 3

    net = SimNetwork(seed=6, drop_if=drop)
    net.link(A, B)
    sender, receiver = Recorder(A, count=10), Recorder(B)
    net.run_until(lambda: False, [sender, receiver], max_time=5)
    assert [seq for _, seq, _ in receiver.got] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert len(seen) == 10 and net.lost == 1


def test_clock_jumps_straight_to_timers_and_stops_at_max_time() -> None:
    net = SimNetwork()
    ticker = Recorder(A, count=3, interval=10.0)
    assert not net.run_until(lambda: False, [ticker], max_time=100)
    assert ticker.timeouts == [0.0, 10.0, 20.0]
    assert net.steps == 6 and net.now == 100  # 3 timers + 3 deliveries; idle time passes in one jump


def test_events_are_drained_into_the_network_and_run_until_stops_early() -> None:
    net = SimNetwork()
    net.link(A, B, delay=0.1)
    sender, echo = Recorder(A, count=5, interval=1.0), Echo(B)
    assert net.run_until(lambda: len(net.events_at(B)) == 2, [sender, echo], max_time=100)
    assert net.events_at(B) == ["echo 100", "echo 100"]
    assert net.events[B][1][0] == pytest.approx(1.1)
    assert [round(t, 6) for t, _, _ in sender.got] == [0.2]  # the second echo is still in flight
    assert net.in_flight == 1
    net.run_for(10, [sender, echo])
    assert len(sender.got) == 5 and net.now == pytest.approx(11.1)


def test_send_accepts_an_explicit_time_for_injected_datagrams() -> None:
    net = SimNetwork()
    net.link(A, B, delay=0.5)
    receiver = Recorder(B)
    net.send(A, B, (7).to_bytes(4, "big"), now=2.0)
    net.run_until(lambda: bool(receiver.got), [receiver], max_time=10)
    assert receiver.got == [(2.5, 7, A)]


def test_a_livelock_raises_instead_of_hanging() -> None:
    @dataclass
    class Stuck(Recorder):
        def poll_timeout(self) -> float | None:
            return 1.0  # never moves on

    net = SimNetwork(max_steps=1000)
    with pytest.raises(RuntimeError, match="livelock"):
        net.run_until(lambda: False, [Stuck(A)], max_time=5)
