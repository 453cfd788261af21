"""SFU media routing in mediasoup's vocabulary: a Router per room, Producers in, Consumers out.

Each participant has up to two transports: a publisher transport (the browser offers its tracks, we
only receive) and a subscriber transport (the browser offers one recvonly m-line per remote track it
wants; we answer sendonly). Packets are forwarded without decoding; the router only rewrites headers
(:class:`~roomcast.sfu.consumer.Consumer`) and handles feedback: NACK from the RTX ring, keyframe
requests upstream through a throttle, NACKs upstream for what the publisher's packets are missing.

A publisher's packets find their producer and layer through its :class:`~roomcast.sfu.listener.Listener`;
a simulcast producer's subscribers each get a :class:`~roomcast.sfu.simulcast.SimulcastConsumer`, whose
layer is chosen through :meth:`Router.set_target_layer` or :meth:`Router.set_bitrate_budget`.

Closing cascades: router → participants → their transports, producers and consumers.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from roomcast.proto.bwe.gcc import GccEstimator
from roomcast.proto.bwe.remb import RembEstimator
from roomcast.proto.codecs import AUDIO_LEVEL_URI, TWCC_URI
from roomcast.proto.jsep import NegotiatedAnswer, NegotiatedMedia
from roomcast.proto.webrtc import WebRtcTransport
from roomcast.sfu.congestion import Allocation, PublisherFeedback, SubscriberEstimate, pad
from roomcast.sfu.consumer import Consumer
from roomcast.sfu.feedback import subscriber_feedback
from roomcast.sfu.listener import Listener
from roomcast.sfu.producer import Layer, Producer, payload_type_map
from roomcast.sfu.simulcast import LayerBudget, SimulcastConsumer
from roomcast.sfu.stats import router_stats
from roomcast.wire import ParseError
from roomcast.wire.rtcp import (
    GenericNack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    SenderReport,
    parse_compound,
)
from roomcast.wire.rtp import blank_extensions, header_length, padding_fits, read_extension, unwrap_rtx
from roomcast.wire.twcc import transport_seq_at

SERVER_SSRC = 1
NACK_INTERVAL = 0.02
REPORT_INTERVAL = 1.0
SCHEDULED_TICK = 0.25  # s: the longest periodic work waits with no input (rtc/schedule.py; idle rooms: 4 wakeups/s)
# The REMB every publisher gets with its receiver reports (draft-alvestrand-rmcat-remb), a ceiling rather than
# an estimate. Without it a libwebrtc sender that has no transport-cc feedback starts at 300 kbit/s and climbs
# 8 %/s on receiver reports alone, so its top simulcast layer starts seconds late (a 720p `f` layer after about
# 20 s); it takes a REMB in its first 2 s without loss as its estimate, so every layer starts at once, and its
# loss controller on our receiver reports still finds a weaker uplink under it. 5 Mbit/s covers a 1080p
# camera's three layers (the JS SDK caps them at 3 Mbit/s together) plus audio and a screen share.
PUBLISHER_REMB = 5_000_000


# Packets of a layer checked for the publisher's MID/RID extensions before the check stops (they name its m-line
# and layer: a subscriber demultiplexing by MID would drop a stream whose MID is none of its own, for good).
ROUTING_CHECKS = 300
SPEECH_DBOV = 50  # an audio packet at least this loud (-50 dBov) is speech (RFC 6464 levels, 127 = silence)


def _twcc_ext_id(negotiated: NegotiatedAnswer) -> int:
    """The transport-wide sequence number extension's id in this answer (0: not negotiated)."""
    return next((m.extensions[TWCC_URI] for m in negotiated.media if TWCC_URI in m.extensions), 0)


@dataclass(eq=False)
class ParticipantMedia:
    owner: str
    identity: str
    publisher: WebRtcTransport | None = None
    subscriber: WebRtcTransport | None = None
    listener: Listener = field(default_factory=Listener)
    consumers: dict[str, tuple[Consumer, Producer]] = field(default_factory=dict)  # by subscriber mid
    consumers_by_ssrc: dict[int, tuple[Consumer, Producer]] = field(default_factory=dict)
    send_ssrcs: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # stable across renegotiation
    # A subscriber m-line keeps its SSRC for life, so it must keep its sequence numbering too (SRTP's
    # packet index and the browser's jitter buffer depend on it): its consumer is parked, not dropped.
    parked: dict[str, Consumer] = field(default_factory=dict)
    last_nack: float = 0.0
    last_report: float = 0.0
    twcc_ext_id: int = 0  # the transport-wide sequence number extension of its publisher transport
    publisher_feedback: PublisherFeedback | None = None  # transport-cc feedback to its publisher transport
    estimate: SubscriberEstimate | None = None  # its subscriber transport's bandwidth estimate

    @property
    def producers(self) -> dict[str, Producer]:
        """This participant's producers by mid (the listener's table)."""
        return self.listener.by_mid


class Router:
    """All media of one room."""

    def __init__(self, room: str, *, on_tracks_changed: Callable[[Router], None] | None = None) -> None:
        self.room = room
        self.participants: dict[str, ParticipantMedia] = {}
        self.producers: dict[str, Producer] = {}
        self.counters: Counter[str] = Counter()
        self.on_tracks_changed = on_tracks_changed or (lambda _r: None)
        self.closed = False
        self._last_tick = float("-inf")
        # offset of the transport-wide sequence number in the packet being forwarded now (-1: none); every
        # subscriber transport of the room reads it to stamp its own sequence there (WebRtcTransport.twcc_at)
        self.twcc_at = [-1]
        self.publisher_feedback = False  # answer publishers with transport-cc feedback (off: docs/adaptive.md)
        self.pinned: set[tuple[str, str]] = set()  # (subscriber, track) layers chosen exactly, not allocated
        self.publisher_remb = PUBLISHER_REMB  # bits/s told to every publisher with its receiver reports; 0: none

    # ------------------------------------------------------------------ participants

    def participant(self, owner: str, identity: str) -> ParticipantMedia:
        media = self.participants.get(owner)
        if media is None:
            media = self.participants[owner] = ParticipantMedia(owner, identity, listener=Listener(self.counters))
        return media

    def remove_participant(self, owner: str) -> None:
        media = self.participants.pop(owner, None)
        if media is None:
            return
        self.pinned = {(o, t) for o, t in self.pinned if o != owner}
        for parked in media.parked.values():
            parked.detach()
        for transport in (media.publisher, media.subscriber):
            if transport is not None:
                transport.close()
        removed = list(media.producers.values())
        for producer in removed:
            self._close_producer(producer)
        for consumer, producer in media.consumers.values():
            consumer.detach()
            if consumer in producer.consumers:
                producer.consumers.remove(consumer)
                self._retire(consumer)
        media.consumers.clear()
        if removed:
            self.on_tracks_changed(self)

    def close(self) -> None:
        for owner in list(self.participants):
            self.remove_participant(owner)
        self.closed = True

    # ------------------------------------------------------------------ publishing

    def attach_publisher(
        self,
        media: ParticipantMedia,
        transport: WebRtcTransport,
        negotiated: NegotiatedAnswer,
        metadata: dict[str, tuple[str, str]],
        sids: Mapping[str, str] | None = None,
    ) -> None:
        """(Re)negotiated publisher transport: a producer per receiving m-line.

        ``metadata`` maps the offer's msid track ids to (source, name); ``sids`` to the track sid the adapter
        announced already (LiveKit clients learn a track's sid before they offer it), else a new one. The
        transport may be this participant's subscriber transport too (one peer connection both ways)."""
        media.publisher = transport
        twcc_id = _twcc_ext_id(negotiated)
        media.twcc_ext_id = twcc_id
        if twcc_id and self.publisher_feedback:
            if media.publisher_feedback is None or media.publisher_feedback.ext_id != twcc_id:
                media.publisher_feedback = PublisherFeedback(twcc_id, SERVER_SSRC, 0)
        else:
            media.publisher_feedback = None
        transport.on_rtp = lambda pkt: self._on_publisher_rtp(media, pkt)
        transport.on_rtcp = self._rtcp_handler(media, transport)
        changed = False
        seen: set[str] = set()
        for m in negotiated.media:
            if m.direction != "recvonly":
                continue
            seen.add(m.mid)
            if m.mid in media.producers:
                continue
            source, name = metadata.get(m.remote_track_id or "", ("", ""))
            if not source:
                source = "microphone" if m.kind == "audio" else "camera"
            wanted_sid = (sids or {}).get(m.remote_track_id or "", "")
            producer = Producer(
                sid=wanted_sid if wanted_sid and wanted_sid not in self.producers else "TR_" + secrets.token_hex(6),
                owner=media.owner,
                identity=media.identity,
                kind=m.kind,
                mid=m.mid,
                codecs=m.codecs,
                rtx=dict(m.rtx),
                clock_rate=m.clock_rate,
                source=source,
                name=name,
                track_id=m.remote_track_id or "",
                audio_level_ext=m.extensions.get(AUDIO_LEVEL_URI, 0) if m.kind == "audio" else 0,
                layer_rids=m.layers if len(m.layers) > 1 and m.kind == "video" else (),
            )
            media.listener.add(producer, m)
            self.producers[producer.sid] = producer
            changed = True
        for mid in [mid for mid in media.producers if mid not in seen]:
            self._close_producer(media.producers[mid])
            changed = True
        media.listener.index_payload_types(negotiated.media)
        if changed:
            self.on_tracks_changed(self)

    def _rtcp_handler(self, media: ParticipantMedia, transport: WebRtcTransport) -> Callable[[bytes], None]:
        """RTCP of one transport: sender reports if it publishes, receiver feedback if it subscribes, both
        when one peer connection does both (each handler ignores the SSRCs it does not know)."""
        publishes, subscribes = media.publisher is transport, media.subscriber is transport
        if publishes and subscribes:

            def both(pkt: bytes) -> None:
                self._on_publisher_rtcp(media, pkt)
                self._on_subscriber_rtcp(media, pkt)

            return both
        if publishes:
            return lambda pkt: self._on_publisher_rtcp(media, pkt)
        return lambda pkt: self._on_subscriber_rtcp(media, pkt)

    def _retire(self, consumer: Consumer) -> None:
        """Keep a closed consumer's totals so the forwarded counters never go backwards."""
        self.counters["forwarded"] += consumer.packets_sent
        self.counters["forwarded_bytes"] += consumer.bytes_sent
        consumer.packets_sent = consumer.bytes_sent = 0

    def live_forwarded(self) -> tuple[int, int]:
        consumers = [c for p in self.producers.values() for c in p.consumers]
        return sum(c.packets_sent for c in consumers), sum(c.bytes_sent for c in consumers)

    def _close_producer(self, producer: Producer) -> None:
        producer.closed = True
        for consumer in producer.consumers:
            consumer.detach()
            self._retire(consumer)
        producer.consumers.clear()
        self.producers.pop(producer.sid, None)
        owner = self.participants.get(producer.owner)
        if owner is not None:
            owner.listener.remove(producer)

    def set_muted(self, owner: str, track_sid: str, muted: bool) -> bool:
        producer = self.producers.get(track_sid)
        if producer is None or producer.owner != owner:
            return False
        if producer.muted != muted:
            producer.muted = muted
            if not muted:
                for consumer in producer.consumers:
                    consumer.resume()
                self._request_keyframe(producer, force=True)
            self.on_tracks_changed(self)
        return True

    def mute_owner(self, owner: str, muted: bool) -> int:
        """Moderation: stop (or resume) forwarding every track of ``owner``; the publisher is not asked."""
        producers = [p for p in self.producers.values() if p.owner == owner]
        for producer in producers:
            self.set_muted(owner, producer.sid, muted)
        return len(producers)

    def remove_publisher(self, owner: str) -> None:
        """``owner`` may no longer publish: its tracks end for everyone, its subscriptions stay."""
        media = self.participants.get(owner)
        if media is None:
            return
        removed = list(media.producers.values())
        for producer in removed:
            self._close_producer(producer)
        if media.publisher is not None:
            if media.publisher is not media.subscriber:  # one peer connection both ways keeps subscribing
                media.publisher.close()
            media.publisher = None
        if removed:
            self.on_tracks_changed(self)

    def _on_publisher_rtp(self, media: ParticipantMedia, pkt: bytes) -> None:
        header = header_length(pkt)
        if header < 0 or not padding_fits(pkt, header):
            self.counters["rtp_malformed"] += 1
            return
        ssrc = int.from_bytes(pkt[8:12], "big")
        listener = media.listener
        layer = listener.by_ssrc.get(ssrc)
        now = media.publisher.now if media.publisher is not None else 0.0
        if media.twcc_ext_id:  # where subscribers write their own transport-wide number into this packet
            at = self.twcc_at[0] = transport_seq_at(pkt, media.twcc_ext_id)
            if media.publisher_feedback is not None:  # every packet counts for it: RTX and probes too
                media.publisher_feedback.on_arrival(pkt, at, now)
            try:
                self._publisher_packet(media, layer, pkt, ssrc, now)
            finally:
                self.twcc_at[0] = -1
        else:
            self._publisher_packet(media, layer, pkt, ssrc, now)

    def _publisher_packet(
        self, media: ParticipantMedia, layer: Layer | None, pkt: bytes, ssrc: int, now: float
    ) -> None:
        listener = media.listener
        if layer is None:
            layer = listener.rtx_by_ssrc.get(ssrc) or listener.learn(pkt, ssrc)
            if layer is None:
                self.counters["unknown_ssrc"] += 1
                return
            if ssrc in listener.rtx_by_ssrc:
                self._on_publisher_rtx(layer, pkt, now)
                return
        if layer.routing_clean < ROUTING_CHECKS:  # libwebrtc stops sending MID/RID once an RR acknowledges them
            blanked = blank_extensions(pkt, listener.routing_ext_ids)
            layer.routing_clean = layer.routing_clean + 1 if blanked is pkt else 0
            pkt = blanked
        ext = layer.producer.audio_level_ext
        if ext:
            level = read_extension(pkt, ext)  # RFC 6464 §3: V bit, then the level in -dBov
            if level and (level[0] & 0x7F) <= SPEECH_DBOV:
                layer.producer.loud_at, layer.producer.loudness = now, level[0] & 0x7F
        layer.forward(pkt, now)
        if layer.nack.missing and now - media.last_nack >= NACK_INTERVAL:
            self._send_nacks(media, now)

    def _on_publisher_rtx(self, layer: Layer, pkt: bytes, now: float) -> None:
        """RFC 4588 §4: an RTX packet repairs its layer's stream (payload type mapped back by ``apt``)."""
        if layer.ssrc is None:
            self.counters["rtx_before_media"] += 1
            return
        media_pt = next((pt for pt, r in layer.producer.rtx.items() if r == pkt[1] & 0x7F), None)
        header = header_length(pkt)
        end = len(pkt) - (pkt[-1] if pkt[0] & 0x20 else 0)  # RFC 3550 §5.1: the padding is no payload
        if media_pt is None or header <= end < header + 2:
            self.counters["rtx_padding_dropped"] += 1  # a bandwidth probe: padding, no original to repair
            return
        try:
            original = unwrap_rtx(pkt, layer.ssrc, media_pt)
        except ParseError:
            self.counters["rtx_malformed"] += 1
            return
        self.counters["rtx_recovered"] += 1
        owner = self.participants.get(layer.producer.owner)
        if owner is not None:
            original = blank_extensions(original, owner.listener.routing_ext_ids)
        layer.forward(original, now)

    def _on_publisher_rtcp(self, media: ParticipantMedia, data: bytes) -> None:
        """Sender reports go on to every subscriber, rewritten onto its SSRC and timeline (lip sync)."""
        try:
            packets = parse_compound(data)
        except ParseError:
            self.counters["rtcp_malformed"] += 1
            return
        now = media.publisher.now if media.publisher is not None else 0.0
        for packet in packets:
            if not isinstance(packet, SenderReport):
                continue
            layer = media.listener.by_ssrc.get(packet.ssrc)
            if layer is None:
                continue
            layer.sr_ntp, layer.sr_rtp, layer.sr_at = packet.ntp_timestamp, packet.rtp_timestamp, now
            for consumer in layer.producer.consumers:
                if consumer.send_rtcp is None or consumer.packets_sent == 0:
                    continue
                if isinstance(consumer, SimulcastConsumer) and consumer.current != layer.index:
                    continue  # each layer has its own timeline: only the one forwarded maps
                report = SenderReport(
                    consumer.ssrc,
                    packet.ntp_timestamp,
                    consumer.rewrite_timestamp(packet.rtp_timestamp),
                    consumer.packets_sent & 0xFFFFFFFF,
                    consumer.bytes_sent & 0xFFFFFFFF,
                )
                consumer.send_rtcp(report.serialize())
                consumer.remember_sr(packet.ntp_timestamp, now)
                self.counters["sr_forwarded"] += 1

    def _send_nacks(self, media: ParticipantMedia, now: float) -> None:
        media.last_nack = now
        transport = media.publisher
        if transport is None:
            return
        for layer in media.listener.by_ssrc.values():
            if not layer.nack.missing or layer.ssrc is None:
                continue
            lost = layer.nack.due(now)
            if lost:
                self.counters["nack_sent"] += 1
                transport.send_rtcp(GenericNack(SERVER_SSRC, layer.ssrc, tuple(lost)).serialize())

    def poll_timeout(self) -> float | None:
        """When periodic work is due with no input at all (a publisher gone quiet still gets its receiver
        reports, NACK retries and probes run on time); input ticks sooner. None: a room without media."""
        if not self.participants:
            return None
        return self._last_tick + SCHEDULED_TICK  # never ticked: -inf, due at once

    def handle_timeout(self, now: float) -> None:
        self.tick(now)

    def tick(self, now: float) -> None:
        """Periodic work driven by the runtime: upstream NACK retries, receiver reports to publishers.

        The runtime calls it after every input; it walks every participant, so it runs at most once per
        NACK_INTERVAL (per packet it cost O(participants): 7 % of a 100-viewer room's CPU)."""
        if now - self._last_tick < NACK_INTERVAL:
            return
        self._last_tick = now
        for media in self.participants.values():
            layers = media.listener.by_ssrc.values()
            if any(layer.nack.missing for layer in layers):
                self._send_nacks(media, now)
            for consumer, producer in media.consumers.values():
                if producer.simulcast and isinstance(consumer, SimulcastConsumer):
                    consumer.handle_timeout(now)
            if media.publisher is not None and media.publisher_feedback is not None:
                for feedback in media.publisher_feedback.poll(now):
                    media.publisher.send_rtcp(feedback)
                    self.counters["transport_cc_sent"] += 1
            if media.estimate is not None:
                media.estimate.handle_timeout(now)
                self._allocate(media, now)
                if media.estimate.probe_rate > 0:
                    self.counters["padding_bytes"] += pad(media.estimate, media.consumers.values(), now)
            if media.publisher is not None and now - media.last_report >= REPORT_INTERVAL:
                media.last_report = now
                blocks = tuple(layer.report_block(now) for layer in layers)
                if blocks:
                    report = ReceiverReport(SERVER_SSRC, blocks[:31]).serialize()
                    remb = self._publisher_remb(media, self.publisher_remb)
                    media.publisher.send_rtcp(report + remb if remb else report)
                    self.counters["rr_sent"] += 1

    @staticmethod
    def _publisher_remb(media: ParticipantMedia, bitrate: int) -> bytes:
        """A REMB of ``bitrate`` for ``media``'s video SSRCs (empty: none known, or ``bitrate`` 0)."""
        ssrcs = tuple(ssrc for ssrc, layer in media.listener.by_ssrc.items() if layer.producer.kind == "video")
        return Remb(SERVER_SSRC, bitrate, ssrcs[:255]).serialize() if ssrcs and bitrate > 0 else b""

    # ------------------------------------------------------------------ subscribing

    def attach_subscriber(
        self,
        media: ParticipantMedia,
        transport: WebRtcTransport,
        negotiated: NegotiatedAnswer,
        subscriptions: dict[str, str],
    ) -> None:
        """(Re)negotiated subscriber transport: a consumer per sending m-line, bound to its producer."""
        if media.subscriber is not None and media.subscriber is not transport:
            # a new peer connection for this participant (not an ICE restart): what it kept goes there now
            for consumer, _producer in media.consumers.values():
                consumer.send, consumer.send_rewritten = transport.send_rtp, transport.send_rtp_rewritten
                consumer.send_rtcp = transport.send_rtcp
        media.subscriber = transport
        twcc_id = _twcc_ext_id(negotiated)
        if media.estimate is None or isinstance(media.estimate.estimator, GccEstimator) != bool(twcc_id):
            media.estimate = SubscriberEstimate(transport_cc=bool(twcc_id))
        if twcc_id:
            transport.twcc, transport.twcc_id, transport.twcc_at = media.estimate, twcc_id, self.twcc_at
        else:
            transport.twcc = None
        if media.publisher is not transport:
            transport.on_rtp = lambda pkt: None
        transport.on_rtcp = self._rtcp_handler(media, transport)
        wanted: dict[str, tuple[NegotiatedMedia, Producer]] = {}
        for m in negotiated.media:
            producer = self.producers.get(subscriptions.get(m.mid, ""))
            if m.direction == "sendonly" and m.send_ssrc is not None and producer is not None:
                wanted[m.mid] = (m, producer)
        for mid, (consumer, producer) in list(media.consumers.items()):
            if mid not in wanted or wanted[mid][1] is not producer:
                if consumer in producer.consumers:
                    producer.consumers.remove(consumer)
                    self._retire(consumer)
                consumer.detach()
                del media.consumers[mid]
                media.consumers_by_ssrc.pop(consumer.ssrc, None)
                media.parked[mid] = consumer
        for mid, (m, producer) in wanted.items():
            if mid in media.consumers:
                continue
            assert m.send_ssrc is not None
            consumer = self._new_consumer(producer, m, m.send_ssrc, transport)
            parked = media.parked.pop(mid, None)
            if parked is not None and parked.ssrc == m.send_ssrc:
                consumer.continue_numbering(parked)
            producer.consumers.append(consumer)
            media.consumers[mid] = (consumer, producer)
            media.consumers_by_ssrc[m.send_ssrc] = (consumer, producer)
            if isinstance(consumer, SimulcastConsumer):
                consumer.start(self._publisher_now(producer))  # forced keyframe request on its layer
            else:
                self._request_keyframe(producer, force=True)  # a new viewer needs a keyframe now (PLI path)
        if isinstance(media.estimate.estimator, RembEstimator):  # the loss that moves video layers is video's
            video = frozenset(c.ssrc for c, p in media.consumers.values() if p.kind == "video")
            media.estimate.estimator.media_ssrcs = video or None

    def _new_consumer(self, producer: Producer, m: NegotiatedMedia, ssrc: int, transport: WebRtcTransport) -> Consumer:
        common: dict[str, object] = {
            "ssrc": ssrc,
            "kind": m.kind,
            "clock_rate": m.clock_rate,
            "send": transport.send_rtp,
            "send_rewritten": transport.send_rtp_rewritten,
            "pt_map": payload_type_map(producer, m),
            "rtx_ssrc": m.send_rtx_ssrc,
            "rtx_pt": dict(m.rtx),
            "send_rtcp": transport.send_rtcp,
        }
        if not producer.simulcast:
            return Consumer(**common)  # type: ignore[arg-type]
        layers = producer.layers

        def request(index: int, force: bool) -> None:
            self._request_layer_keyframe(layers[index], force)

        return SimulcastConsumer(layers=layers, request_keyframe=request, **common)

    def _on_subscriber_rtcp(self, media: ParticipantMedia, data: bytes) -> None:
        def nack(ssrc: int, lost: list[int]) -> int:
            found = media.consumers_by_ssrc.get(ssrc)
            if found is None or media.subscriber is None:
                return 0
            return found[0].retransmit(lost, media.subscriber.now)

        def keyframe(ssrc: int) -> None:
            found = media.consumers_by_ssrc.get(ssrc)
            if found is None:
                return
            consumer, producer = found
            if isinstance(consumer, SimulcastConsumer) and producer.simulcast:
                self._request_layer_keyframe(producer.layers[consumer.keyframe_layer()])
            else:
                self._request_keyframe(producer)

        def report(block: ReportBlock) -> None:
            found = media.consumers_by_ssrc.get(block.ssrc)
            if found is not None and media.subscriber is not None:
                found[0].on_report(block.lsr, block.dlsr, block.fraction_lost, media.subscriber.now)

        estimate = media.estimate
        if estimate is not None and media.subscriber is not None:
            now = media.subscriber.now
            subscriber_feedback(data, self.counters, nack, keyframe, report, lambda p: estimate.on_rtcp(p, now))
        else:
            subscriber_feedback(data, self.counters, nack, keyframe, report)

    def _request_keyframe(self, producer: Producer, force: bool = False) -> None:
        """PLI upstream on every layer of ``producer`` (one, unless simulcast)."""
        for layer in producer.layers:
            self._request_layer_keyframe(layer, force)

    def _request_layer_keyframe(self, layer: Layer, force: bool = False) -> None:
        """PLI (RFC 4585 §6.3.1) for one layer, at most one per 500 ms per layer unless ``force``d
        (RELIABILITY B3: each layer is its own RTP stream; a subscriber flood still reaches no further)."""
        producer = layer.producer
        owner = self.participants.get(producer.owner)
        if owner is None or owner.publisher is None or layer.ssrc is None or producer.kind != "video":
            return
        if not layer.throttle.allow(owner.publisher.now) and not force:
            self.counters["pli_throttled"] += 1
            return
        layer.keyframe_requests += 1
        self.counters["pli_sent"] += 1
        owner.publisher.send_rtcp(Pli(SERVER_SSRC, layer.ssrc).serialize())

    def _publisher_now(self, producer: Producer) -> float:
        owner = self.participants.get(producer.owner)
        return owner.publisher.now if owner is not None and owner.publisher is not None else self._last_tick

    # ------------------------------------------------------------------ layer choice

    def _simulcast_consumer(self, owner: str, track_sid: str) -> tuple[SimulcastConsumer, Producer] | None:
        media = self.participants.get(owner)
        if media is None:
            return None
        for consumer, producer in media.consumers.values():
            if producer.sid == track_sid and isinstance(consumer, SimulcastConsumer) and not producer.closed:
                return consumer, producer
        return None

    def set_target_layer(self, owner: str, track_sid: str, spatial: int, temporal: int | None = None) -> bool:
        """What ``owner`` receives of simulcast track ``track_sid``: spatial layer (0 = lowest) and the
        highest temporal layer (None: all). False when it does not receive that track as simulcast."""
        found = self._simulcast_consumer(owner, track_sid)
        if found is None:
            return False
        found[0].set_target_layer(spatial, temporal, self._publisher_now(found[1]))
        return True

    def _allocate(self, media: ParticipantMedia, now: float) -> None:
        """Spend ``media``'s subscriber estimate on the tracks it receives (see sfu/congestion.py)."""
        estimate = media.estimate
        if estimate is None or estimate.feedbacks == 0 or now < estimate.next_allocation:
            return
        tracks: list[Allocation] = []
        for consumer, producer in media.consumers.values():
            if consumer.paused or producer.muted:
                continue
            if (media.owner, producer.sid) in self.pinned:
                tracks.append((producer.sid, producer.kind, producer.source, float(producer.bitrate), None))
            elif isinstance(consumer, SimulcastConsumer) and producer.simulcast:
                layered = LayerBudget(consumer, self._publisher_now(producer))
                tracks.append((producer.sid, producer.kind, producer.source, 0.0, layered))
            else:
                tracks.append((producer.sid, producer.kind, producer.source, float(producer.bitrate), None))
        rtts = [c.rtt for c, p in media.consumers.values() if c.rtt is not None and p.kind == "video"]
        if estimate.allocate(tracks, now, max(rtts) if rtts else None):
            self.counters["allocations"] += 1

    def request_keyframe(self, track_sid: str) -> None:
        """A subscriber needs a picture now (it resumed a track it had hidden); throttled per layer."""
        producer = self.producers.get(track_sid)
        if producer is not None:
            self._request_keyframe(producer, force=True)

    def pin_layer(self, owner: str, track_sid: str, spatial: int, temporal: int | None = None) -> bool:
        """An operator's exact choice for ``owner``'s layer of ``track_sid``: bandwidth allocation leaves it
        alone from now on (:meth:`set_max_layer` is the subscriber's own ceiling, which it still works under)."""
        if not self.set_target_layer(owner, track_sid, spatial, temporal):
            return False
        self.pinned.add((owner, track_sid))
        return True

    def set_max_layer(self, owner: str, track_sid: str, spatial: int) -> bool:
        """The subscriber's own limit for simulcast track ``track_sid`` (quality, shown size): it gets that
        layer now, and bandwidth budgets never choose above it. False when it is not received as simulcast."""
        found = self._simulcast_consumer(owner, track_sid)
        if found is None:
            return False
        found[0].max_spatial = max(0, min(spatial, len(found[0].layers) - 1))
        return self.set_target_layer(owner, track_sid, spatial)

    def set_bitrate_budget(self, owner: str, track_sid: str, bitrate: float) -> tuple[int, int] | None:
        """Let ``bitrate`` bits/s choose ``owner``'s layer of ``track_sid`` (with hysteresis); for a
        bandwidth estimator / allocator. Returns the (spatial, temporal) target, None if not simulcast."""
        found = self._simulcast_consumer(owner, track_sid)
        if found is None:
            return None
        return found[0].set_bitrate_budget(bitrate, self._publisher_now(found[1]))

    # ------------------------------------------------------------------ views

    def tracks(self) -> list[Producer]:
        return list(self.producers.values())

    def stats(self) -> dict[str, object]:
        return router_stats(self)
