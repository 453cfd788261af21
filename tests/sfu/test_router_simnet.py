"""The router's feedback loops over the simulated lossy network (fake clock, no sockets, no sleeps).

Publisher → [lossy link] → router → [lossy link] → subscriber. Packets lost upstream are NACKed by the
router and repaired by the publisher's RTX; packets lost downstream are NACKed by the subscriber and
answered from the consumer's RTX ring.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from roomcast.proto.common import Addr, Transmit
from roomcast.proto.feedback import NackGenerator
from roomcast.proto.jsep import NegotiatedAnswer, NegotiatedMedia
from roomcast.sfu.router import Router
from roomcast.wire.rtcp import GenericNack, Pli, parse_compound
from roomcast.wire.rtp import RtpPacket, unwrap_rtx
from roomcast.wire.sdp import Codec, SessionDescription
from tests.support.simnet import SimNetwork

PUB: Addr = ("10.0.0.1", 1)
SERVER_IN: Addr = ("10.0.0.2", 1)
SERVER_OUT: Addr = ("10.0.0.2", 2)
SUB: Addr = ("10.0.0.3", 1)
VP8 = Codec(96, "VP8", 90000, None, None, ("nack", "nack pli"))
MEDIA_SSRC, RTX_SSRC = 1111, 2222


def negotiated(
    direction: str, *, remote: tuple[int, ...] = (), send: int | None = None, send_rtx: int | None = None
) -> NegotiatedAnswer:
    media = NegotiatedMedia(
        mid="0",
        kind="video",
        direction=direction,
        codecs=(VP8,),
        rtx={96: 97},
        extensions={},
        remote_ssrcs=remote,
        remote_rtx={MEDIA_SSRC: RTX_SSRC} if remote else {},
        rids=(),
        send_ssrc=send,
        send_rtx_ssrc=send_rtx,
        track_id=None,
        remote_track_id="cam",
    )
    return NegotiatedAnswer(SessionDescription(), (media,), "u", "p", (), "server", None, None)


@dataclass
class FakeTransport:
    """Stands in for WebRtcTransport at the router's boundary (clear RTP in, clear RTP out)."""

    address: Addr
    peer: Addr
    net: SimNetwork
    now: float = 0.0
    closed: bool = False
    connected: bool = True
    on_rtp: object = None
    on_rtcp: object = None
    router: Router | None = None  # ticked after every input, as MediaService does

    def send_rtp(self, pkt: bytes | bytearray) -> None:
        self.net.send(self.address, self.peer, b"P" + bytes(pkt))

    def send_rtp_rewritten(self, pkt: bytes, b1: int, seq: int, ts: int, ssrc: int) -> None:
        self.send_rtp(pkt[:1] + struct.pack("!BHII", b1, seq, ts, ssrc) + pkt[12:])

    def send_rtcp(self, pkt: bytes | bytearray) -> None:
        self.net.send(self.address, self.peer, b"C" + bytes(pkt))

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        self.now = now
        handler = self.on_rtp if data[:1] == b"P" else self.on_rtcp
        handler(data[1:])  # type: ignore[operator]
        if self.router is not None:
            self.router.tick(now)

    def handle_timeout(self, now: float) -> None:
        self.now = now

    def poll_transmit(self) -> Transmit | None:
        return None

    def poll_timeout(self) -> float | None:
        return None

    def close(self) -> None:
        self.closed = True


@dataclass
class Publisher:
    """Sends 100 packets/s; answers NACKs with RTX (RFC 4588)."""

    address: Addr
    net: SimNetwork
    total: int
    sent: dict[int, bytes] = field(default_factory=dict)
    next_seq: int = 0
    next_at: float = 0.0
    rtx_seq: int = 0
    plis: int = 0

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        for packet in parse_compound(data[1:]):
            if isinstance(packet, GenericNack):
                for seq in packet.lost:
                    original = self.sent.get(seq)
                    if original is not None:
                        self.rtx_seq += 1
                        rtx = struct.pack("!BBHII", 0x80, 97, self.rtx_seq, 0, RTX_SSRC) + original[2:4] + original[12:]
                        self.net.send(self.address, SERVER_IN, b"P" + rtx)
            elif isinstance(packet, Pli):
                self.plis += 1

    def handle_timeout(self, now: float) -> None:
        if self.next_seq < self.total and now >= self.next_at:
            pkt = RtpPacket(
                96, self.next_seq, self.next_seq * 900, MEDIA_SSRC, self.next_seq.to_bytes(4, "big") * 50
            ).serialize()
            self.sent[self.next_seq] = pkt
            self.net.send(self.address, SERVER_IN, b"P" + pkt)
            self.next_seq += 1
            self.next_at = now + 0.01

    def poll_transmit(self) -> Transmit | None:
        return None

    def poll_timeout(self) -> float | None:
        return self.next_at if self.next_seq < self.total else None


@dataclass
class Subscriber:
    """Receives, NACKs what is missing (RTX or plain repairs both count)."""

    address: Addr
    net: SimNetwork
    received: dict[int, bytes] = field(default_factory=dict)
    nack: NackGenerator = field(default_factory=lambda: NackGenerator(rtt=0.05, max_tries=10, max_age=3.0))
    send_ssrc: int = 0
    next_nack: float | None = None

    def handle_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        pkt = data[1:]
        if data[:1] != b"P":
            return
        if pkt[1] & 0x7F == 97:
            pkt = unwrap_rtx(pkt, self.send_ssrc, 96)
        seq = (pkt[2] << 8) | pkt[3]
        self.received.setdefault(seq, pkt)
        self.nack.on_packet(seq, now)
        if self.nack.missing and self.next_nack is None:
            self.next_nack = now

    def handle_timeout(self, now: float) -> None:
        lost = self.nack.due(now)
        if lost:
            self.net.send(self.address, SERVER_OUT, b"C" + GenericNack(9, self.send_ssrc, tuple(lost)).serialize())
        self.next_nack = now + 0.02 if self.nack.missing else None

    def poll_transmit(self) -> Transmit | None:
        return None

    def poll_timeout(self) -> float | None:
        return self.next_nack


def build(loss: float, seed: int, total: int) -> tuple[SimNetwork, Router, Publisher, Subscriber, list[object]]:
    net = SimNetwork(seed=seed)
    net.link(PUB, SERVER_IN, loss=loss, delay=0.02, jitter=0.005)
    net.link(SERVER_OUT, SUB, loss=loss, delay=0.02, jitter=0.005)
    router = Router("room")
    pub_media = router.participant("pub", "alice")
    sub_media = router.participant("sub", "bob")
    up = FakeTransport(SERVER_IN, PUB, net)
    down = FakeTransport(SERVER_OUT, SUB, net)
    router.attach_publisher(pub_media, up, negotiated("recvonly", remote=(MEDIA_SSRC,)), {})  # type: ignore[arg-type]
    track = router.tracks()[0]
    router.attach_subscriber(sub_media, down, negotiated("sendonly", send=5555, send_rtx=6666), {"0": track.sid})  # type: ignore[arg-type]
    up.router = down.router = router
    publisher = Publisher(PUB, net, total)
    subscriber = Subscriber(SUB, net, send_ssrc=5555)
    return net, router, publisher, subscriber, [up, down, publisher, subscriber]


def test_ten_percent_loss_both_ways_is_repaired_by_nack_and_rtx() -> None:
    total = 1000
    net, router, publisher, subscriber, endpoints = build(loss=0.10, seed=11, total=total)
    net.run_until(lambda: False, endpoints, max_time=total * 0.01 + 3.0)  # run the stream, then 3 s to settle
    delivered = len(subscriber.received) / total
    assert net.lost > 150  # about 10% of each direction was really dropped
    assert delivered >= 0.95, f"only {delivered:.1%} delivered; counters {router.counters}"
    assert router.counters["rtx_recovered"] > 0 and router.counters["retransmitted"] > 0
    payloads_ok = all(subscriber.received[s][12:] == publisher.sent[s][12:] for s in subscriber.received)
    assert payloads_ok  # repaired packets are byte-identical to what the publisher sent


def test_pli_flood_from_subscribers_is_throttled_upstream() -> None:
    net, router, publisher, _subscriber, endpoints = build(loss=0.0, seed=3, total=300)
    down = endpoints[1]
    plis_before = publisher.plis
    for i in range(300):  # 100 PLI/s for 3 s from the subscriber
        t = i * 0.01
        net.send(SUB, SERVER_OUT, b"C" + Pli(9, 5555).serialize())
        net.run_until(lambda: False, endpoints, max_time=t)
    net.run_until(lambda: False, endpoints, max_time=4.0)
    forwarded = publisher.plis - plis_before
    assert 5 <= forwarded <= 8, forwarded  # at most one per 500 ms reached the publisher
    assert router.counters["pli_throttled"] >= 290
    assert down is not None


def test_sender_reports_are_rewritten_and_publishers_get_receiver_reports() -> None:
    from roomcast.wire.rtcp import ReceiverReport, SenderReport

    net, router, publisher, subscriber, endpoints = build(loss=0.0, seed=21, total=300)
    seen_by_sub: list[SenderReport] = []
    seen_by_pub: list[ReceiverReport] = []
    sub_handle, pub_handle = subscriber.handle_datagram, publisher.handle_datagram

    def sub_rtcp(data: bytes, remote: Addr, now: float) -> None:
        if data[:1] == b"C":
            seen_by_sub.extend(p for p in parse_compound(data[1:]) if isinstance(p, SenderReport))
        sub_handle(data, remote, now)

    def pub_rtcp(data: bytes, remote: Addr, now: float) -> None:
        seen_by_pub.extend(p for p in parse_compound(data[1:]) if isinstance(p, ReceiverReport))
        pub_handle(data, remote, now)

    subscriber.handle_datagram = sub_rtcp  # type: ignore[method-assign]
    publisher.handle_datagram = pub_rtcp  # type: ignore[method-assign]
    net.run_until(lambda: False, endpoints, max_time=1.5)
    net.send(PUB, SERVER_IN, b"C" + SenderReport(MEDIA_SSRC, 0xE0000000_80000000, 120 * 900, 120, 99).serialize())
    net.run_until(lambda: False, endpoints, max_time=3.5)
    assert seen_by_sub, "no sender report reached the subscriber"
    sr = seen_by_sub[0]
    consumer = router.producers[next(iter(router.producers))].consumers[0]
    assert sr.ssrc == 5555 and sr.rtp_timestamp == consumer.rewrite_timestamp(120 * 900)
    assert sr.ntp_timestamp == 0xE0000000_80000000
    blocks = [b for rr in seen_by_pub for b in rr.reports if b.ssrc == MEDIA_SSRC]
    assert blocks and blocks[-1].highest_seq >= 150 and blocks[-1].packets_lost == 0
    assert blocks[-1].lsr == (0xE0000000_80000000 >> 16) & 0xFFFFFFFF  # RFC 3550: middle 32 bits of the SR's NTP
    assert 0 < blocks[-1].dlsr < 65536  # under a second since that SR, in 1/65536 s


def test_reused_subscriber_mline_keeps_its_numbering_across_producers() -> None:
    """The m-line's SSRC is fixed, so a new producer on it must continue its sequence numbers (SRTP index)."""
    net = SimNetwork(seed=1)
    router = Router("room")
    sent: list[bytes] = []
    down = FakeTransport(SERVER_OUT, SUB, net)
    down.send_rtp = lambda pkt: sent.append(bytes(pkt))  # type: ignore[method-assign]
    first = router.participant("a", "alice")
    second = router.participant("b", "bob")
    viewer = router.participant("v", "viewer")
    router.attach_publisher(first, FakeTransport(SERVER_IN, PUB, net), negotiated("recvonly", remote=(MEDIA_SSRC,)), {})  # type: ignore[arg-type]
    sid_a = router.tracks()[0].sid
    router.attach_subscriber(viewer, down, negotiated("sendonly", send=5555, send_rtx=6666), {"0": sid_a})  # type: ignore[arg-type]
    for seq in range(100, 110):
        first.publisher.on_rtp(RtpPacket(96, seq, seq * 10, MEDIA_SSRC, b"a").serialize())  # type: ignore[union-attr,misc,operator]
    router.remove_participant("a")
    router.attach_subscriber(viewer, down, negotiated("inactive"), {})  # type: ignore[arg-type]
    other = negotiated("recvonly", remote=(7777,))
    router.attach_publisher(second, FakeTransport(SERVER_IN, PUB, net), other, {})  # type: ignore[arg-type]
    sid_b = router.tracks()[0].sid
    router.attach_subscriber(viewer, down, negotiated("sendonly", send=5555, send_rtx=6666), {"0": sid_b})  # type: ignore[arg-type]
    for seq in range(40000, 40005):
        second.publisher.on_rtp(RtpPacket(96, seq, seq * 10, 7777, b"b").serialize())  # type: ignore[union-attr,misc,operator]
    seqs = [RtpPacket.parse(p).sequence_number for p in sent]
    assert seqs == list(range(100, 115))
    assert {RtpPacket.parse(p).ssrc for p in sent} == {5555}


def test_a_new_subscriber_transport_receives_the_tracks_it_kept() -> None:
    """A participant's $subscribe peer connection replaced (new DTLS: not an ICE restart) with the same
    m-lines: the consumers it keeps send on the new transport, not on the closed one."""
    net = SimNetwork(seed=1)
    router = Router("room")
    old_sent: list[bytes] = []
    new_sent: list[bytes] = []
    pub = router.participant("a", "alice")
    viewer = router.participant("v", "viewer")
    router.attach_publisher(pub, FakeTransport(SERVER_IN, PUB, net), negotiated("recvonly", remote=(MEDIA_SSRC,)), {})  # type: ignore[arg-type]
    sid = router.tracks()[0].sid
    old = FakeTransport(SERVER_OUT, SUB, net)
    old.send_rtp = lambda pkt: old_sent.append(bytes(pkt))  # type: ignore[method-assign]
    router.attach_subscriber(viewer, old, negotiated("sendonly", send=5555, send_rtx=6666), {"0": sid})  # type: ignore[arg-type]
    pub.publisher.on_rtp(RtpPacket(96, 1, 10, MEDIA_SSRC, b"a").serialize())  # type: ignore[union-attr,misc,operator]
    new = FakeTransport(SERVER_OUT, SUB, net)
    new.send_rtp = lambda pkt: new_sent.append(bytes(pkt))  # type: ignore[method-assign]
    router.attach_subscriber(viewer, new, negotiated("sendonly", send=5555, send_rtx=6666), {"0": sid})  # type: ignore[arg-type]
    pub.publisher.on_rtp(RtpPacket(96, 2, 20, MEDIA_SSRC, b"b").serialize())  # type: ignore[union-attr,misc,operator]
    assert len(old_sent) == 1 and len(new_sent) == 1
    assert RtpPacket.parse(new_sent[0]).sequence_number == 2


def test_publishers_get_a_remb_ceiling_with_each_receiver_report() -> None:
    """Without it a libwebrtc publisher lacking transport-cc starts at 300 kbit/s and climbs 8 %/s, so its top
    simulcast layer starts seconds late; a REMB in its first 2 s becomes its estimate (sfu/router.py)."""
    from roomcast.sfu.router import PUBLISHER_REMB
    from roomcast.wire.rtcp import ReceiverReport, Remb

    def rembs(bitrate: int | None) -> tuple[list[Remb], int]:
        net, router, publisher, _subscriber, endpoints = build(loss=0.0, seed=5, total=300)
        if bitrate is not None:
            router.publisher_remb = bitrate
        seen: list[Remb] = []
        reports = 0
        handle = publisher.handle_datagram

        def on_rtcp(data: bytes, remote: Addr, now: float) -> None:
            nonlocal reports
            packets = parse_compound(data[1:])
            seen.extend(p for p in packets if isinstance(p, Remb))
            reports += sum(1 for p in packets if isinstance(p, ReceiverReport))
            handle(data, remote, now)

        publisher.handle_datagram = on_rtcp  # type: ignore[method-assign]
        net.run_until(lambda: False, endpoints, max_time=3.0)
        return seen, reports

    seen, reports = rembs(None)
    assert reports >= 2 and len(seen) == reports  # one with each receiver report, from the first one on
    assert all(r.bitrate == PUBLISHER_REMB and r.ssrcs == (MEDIA_SSRC,) for r in seen)
    seen, _ = rembs(800_000)  # the room's max_incoming_bitrate
    assert seen and all(r.bitrate == 800_000 for r in seen)
    seen, reports = rembs(0)
    assert reports >= 2 and not seen
