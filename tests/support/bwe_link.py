"""A sender whose bitrate follows a bandwidth estimator, over a bottleneck, on a fake clock.

Why: the estimator's acceptance criteria (issue 14) are about a closed loop: the estimate sets the
encoder's rate, the rate fills the bottleneck's queue, the queue shows in the transport-cc feedback,
the feedback moves the estimate. This runs that loop on :class:`tests.support.simnet.SimNetwork`
(a FIFO drained at the cap rate with a drop-tail limit, then random loss, then propagation delay)
with real bytes on the wire: RTP packets carrying the transport-wide sequence number extension,
and transport-cc RTCP built by :class:`TwccFeedbackGenerator` and parsed by ``parse_compound``.

    link = BweLink(cap=2e6)
    link.run(10)                       # 10 s of fake time
    link.set_cap(300e3); link.run(20)  # absolute: until t = 20 s
    link.average(12, 20)               # time-weighted mean of the target over [12, 20)

The encoder (``MediaSender``) is what a camera encoder does with a target: it approaches it with a
time constant (``lag``), makes 30 frames/s of noisy size, sends each frame as a burst of packets;
audio is 50 packets/s beside it; probe requests are answered with evenly spaced padding packets.
"""

from __future__ import annotations

import math
import random
import struct
from collections import deque
from dataclasses import dataclass, field

from roomcast.proto.bwe.common import BandwidthEstimator
from roomcast.proto.bwe.gcc import GccConfig, GccEstimator
from roomcast.proto.bwe.twcc_receiver import TwccFeedbackGenerator
from roomcast.proto.common import Addr, Transmit
from roomcast.wire import ParseError
from roomcast.wire.rtcp import parse_compound
from roomcast.wire.twcc import read_transport_seq, write_transport_seq
from tests.support.simnet import SimNetwork

TWCC_ID = 5
SENDER: Addr = ("10.0.0.1", 5000)
RECEIVER: Addr = ("10.0.0.2", 5000)
MTU_PAYLOAD = 1200


def rtp_packet(size: int, ssrc: int, seq: int) -> bytearray:
    """An RTP packet of ``size`` bytes with a one-byte-header TWCC extension (RFC 8285 §4.2)."""
    header = struct.pack("!BBHII", 0x90, 96, seq & 0xFFFF, 0, ssrc) + struct.pack("!HHBHB", 0xBEDE, 1, 0x51, 0, 0)
    return bytearray(header + b"\x00" * max(size - len(header), 0))


@dataclass
class MediaSender:
    """The SFU side: encoder + pacer-less forwarding + the estimator under test."""

    bwe: BandwidthEstimator
    address: Addr = SENDER
    peer: Addr = RECEIVER
    fps: float = 30.0
    lag: float = 0.4  # encoder time constant, seconds
    audio_pps: float = 50.0
    audio_size: int = 100
    noise: float = 0.15  # frame size varies +-15 %
    seed: int = 1
    samples: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.encoder_rate = float(self.bwe.target_bitrate)
        self._out: deque[Transmit] = deque()
        self._next_frame = 0.0
        self._next_audio = 0.0
        self._probe_packets: deque[tuple[float, int, int]] = deque()  # (when, size, cluster)
        self._seq = 0
        self._last = 0.0
        self.sent_bytes = 0

    @property
    def audio_rate(self) -> float:
        return self.audio_pps * self.audio_size * 8

    def _send(self, size: int, now: float, cluster: int = -1) -> None:
        pkt = rtp_packet(size, 0x1234, self._seq)
        self._seq += 1
        tw = self.bwe.on_packet_sent(len(pkt), now, cluster)
        write_transport_seq(pkt, TWCC_ID, tw)
        self.sent_bytes += len(pkt)
        self._out.append(Transmit(self.peer, bytes(pkt)))

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        try:
            packets = parse_compound(data)
        except ParseError:
            return
        for packet in packets:
            self.bwe.on_rtcp(packet, now)
        self._take_probes(now)

    def _take_probes(self, now: float) -> None:
        while (probe := self.bwe.poll_probe()) is not None:
            padding_rate = max(probe.bitrate - self.encoder_rate - self.audio_rate, probe.bitrate * 0.3)
            size = probe.packet_size
            count = max(probe.min_packets, math.ceil(padding_rate * probe.duration / 8 / size))
            start = max(now, self._probe_packets[-1][0] if self._probe_packets else now)
            step = probe.duration / count
            for k in range(count):
                self._probe_packets.append((start + k * step, size, probe.cluster_id))

    def handle_timeout(self, now: float) -> None:
        self._take_probes(now)
        while self._probe_packets and self._probe_packets[0][0] <= now:
            _, size, cluster = self._probe_packets.popleft()
            self._send(size, now, cluster)
        if now >= self._next_audio:
            self._send(self.audio_size, now)
            self._next_audio += 1 / self.audio_pps
        if now >= self._next_frame:
            dt = now - self._last
            self._last = now
            target = max(self.bwe.target_bitrate - self.audio_rate, 10_000)
            self.encoder_rate += (target - self.encoder_rate) * (1 - math.exp(-dt / self.lag))
            frame = self.encoder_rate / self.fps / 8 * (1 + self.rng.uniform(-self.noise, self.noise))
            packets = max(math.ceil(frame / MTU_PAYLOAD), 1)
            for _ in range(packets):
                self._send(int(frame / packets) + 12, now)
            self._next_frame += 1 / self.fps
            self.samples.append((now, self.bwe.target_bitrate))
        timeout = self.bwe.poll_timeout()
        if timeout is not None and timeout <= now:
            self.bwe.handle_timeout(now)
            self._take_probes(now)

    def poll_transmit(self) -> Transmit | None:
        return self._out.popleft() if self._out else None

    def poll_timeout(self) -> float | None:
        times = [self._next_frame, self._next_audio]
        if self._probe_packets:
            times.append(self._probe_packets[0][0])
        timeout = self.bwe.poll_timeout()
        if timeout is not None:
            times.append(timeout)
        return min(times)


@dataclass
class FeedbackReceiver:
    """The subscriber's browser, as far as transport-cc goes: record arrivals, send feedback."""

    address: Addr = RECEIVER
    peer: Addr = SENDER
    interval: float = 0.05

    def __post_init__(self) -> None:
        self.generator = TwccFeedbackGenerator(0x1111, 0x1234, interval=self.interval)
        self._out: deque[Transmit] = deque()
        self.received_bytes = 0

    def _drain(self) -> None:
        while (fb := self.generator.poll_feedback()) is not None:
            self._out.append(Transmit(self.peer, fb.serialize()))

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.received_bytes += len(data)
        seq = read_transport_seq(data, TWCC_ID)
        if seq >= 0:
            self.generator.on_packet(seq, now)
        self._drain()

    def handle_timeout(self, now: float) -> None:
        self.generator.handle_timeout(now)
        self._drain()

    def poll_transmit(self) -> Transmit | None:
        return self._out.popleft() if self._out else None

    def poll_timeout(self) -> float | None:
        return self.generator.poll_timeout()


class BweLink:
    """Sender -> bottleneck -> receiver, feedback back over an uncapped path."""

    def __init__(
        self,
        *,
        cap: float | None,
        delay: float = 0.02,
        loss: float = 0.0,
        jitter: float = 0.0,
        queue_seconds: float = 0.4,
        bwe: BandwidthEstimator | None = None,
        config: GccConfig | None = None,
        seed: int = 1,
    ) -> None:
        self.net = SimNetwork(seed=seed)
        self.bwe = bwe if bwe is not None else GccEstimator(config)
        self.sender = MediaSender(self.bwe, seed=seed)
        self.receiver = FeedbackReceiver()
        self.net.link(SENDER, RECEIVER, delay=delay, loss=loss, jitter=jitter)
        self.forward = self.net.links[(SENDER, RECEIVER)]
        self.backward = self.net.links[(RECEIVER, SENDER)]
        self.backward.loss = 0.0
        self.queue_seconds = queue_seconds
        self.set_cap(cap)

    def set_cap(self, cap: float | None) -> None:
        self.forward.bandwidth = cap
        self.forward.queue_bytes = None if cap is None else max(int(cap * self.queue_seconds / 8), 15_000)

    def run(self, until: float) -> None:
        self.net.run_until(lambda: False, [self.sender, self.receiver], max_time=until)

    def window(self, start: float, end: float) -> list[int]:
        return [b for t, b in self.sender.samples if start <= t < end]

    def average(self, start: float, end: float) -> float:
        """Mean target over [start, end) (samples are per frame, evenly spaced: time-weighted)."""
        values = self.window(start, end)
        return sum(values) / len(values)

    def first_settled(self, cap: float, after: float, until: float, tolerance: float = 0.15) -> float | None:
        """Earliest t >= ``after`` from which every 1 s mean up to ``until`` is within the tolerance."""
        t = after
        settled: float | None = None
        while t + 1.0 <= until + 1e-9:
            ok = abs(self.average(t, t + 1.0) / cap - 1) <= tolerance
            if ok and settled is None:
                settled = t
            elif not ok:
                settled = None
            t = round(t + 0.1, 6)
        return settled
