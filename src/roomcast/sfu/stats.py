"""``Router.stats()`` (served as ``/api/rooms/{room}/stats``): tracks, their layers, who receives what."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from roomcast.proto.bwe.gcc import GccEstimator
from roomcast.proto.bwe.remb import RembEstimator
from roomcast.sfu.congestion import SubscriberEstimate
from roomcast.sfu.simulcast import SimulcastConsumer

if TYPE_CHECKING:
    from roomcast.proto.webrtc import WebRtcTransport
    from roomcast.sfu.producer import Producer
    from roomcast.sfu.router import ParticipantMedia, Router


def router_stats(router: Router) -> dict[str, object]:
    return {
        "room": router.room,
        "tracks": [_track(p) for p in router.producers.values()],
        "participants": {m.identity: _participant(m) for m in router.participants.values()},
        "counters": dict(router.counters),
    }


def _track(p: Producer) -> dict[str, object]:
    track: dict[str, object] = {
        "sid": p.sid,
        "participant": p.identity,
        "kind": p.kind,
        "source": p.source,
        "muted": p.muted,
        "packets_in": p.packets,
        "bytes_in": p.bytes_in,
        "bitrate": round(p.bitrate),
        "packets_lost_upstream": sum(layer.packets_lost for layer in p.layers),
        "rtt_ms": _mean_ms([c.rtt for c in p.consumers]),
        "subscriber_loss_pct": round(100 * max((c.fraction_lost for c in p.consumers), default=0.0), 1),
        "subscribers": len(p.consumers),
        "packets_forwarded": sum(c.packets_sent for c in p.consumers),
        "retransmitted": sum(c.retransmits for c in p.consumers),
        "retransmits_suppressed": sum(c.retransmits_suppressed for c in p.consumers),  # resent within the RTT
        "padding_packets": sum(c.padding_packets for c in p.consumers),
        "nacks_sent_upstream": sum(layer.nack.nacks_sent for layer in p.layers),
        "recovered_upstream": sum(layer.nack.recovered for layer in p.layers),
        "keyframe_requests": p.keyframe_requests,
        "simulcast": p.simulcast,
    }
    if p.simulcast:
        track["layers"] = [
            {
                "rid": layer.rid,
                "ssrc": layer.ssrc,
                "packets_in": layer.packets,
                "bitrate": round(layer.bitrate),
                "temporal_bitrates": [round(r) for r in layer.temporal_bitrates],
                "keyframe_requests": layer.keyframe_requests,
            }
            for layer in p.layers
        ]
    return track


def _participant(m: ParticipantMedia) -> dict[str, object]:
    consumers: list[dict[str, object]] = []
    for consumer, producer in m.consumers.values():
        entry: dict[str, object] = {"track": producer.sid, "packets": consumer.packets_sent}
        if isinstance(consumer, SimulcastConsumer):
            entry.update(consumer.stats())
        consumers.append(entry)
    return {
        "publisher": _state(m.publisher),
        "subscriber": _state(m.subscriber),
        "published": len(m.producers),
        "subscribed": len(m.consumers),
        "consumers": consumers,
        **({"estimate": _estimate(m.estimate)} if m.estimate is not None else {}),
    }


def _estimate(estimate: SubscriberEstimate) -> dict[str, object]:
    """The subscriber transport's bandwidth estimate (bit/s) and what it is made of."""
    estimator = estimate.estimator
    out: dict[str, object] = {
        "source": "transport-cc" if isinstance(estimator, GccEstimator) else "remb",
        "target": estimator.target_bitrate,
        "feedbacks": estimate.feedbacks,
        "counters": {k: v for k, v in asdict(estimator.counters).items() if v},
        "probing": round(estimate.probe_rate),  # bits/s padded up to now (0: not probing)
        **{k: v for k, v in estimate.counters.items() if v},
    }
    if isinstance(estimator, RembEstimator):
        out["remb"] = round(estimator.remb)
    if isinstance(estimator, GccEstimator):
        out.update(
            delay_based=round(estimator.delay_bitrate),
            acked=round(estimator.acked_bitrate or 0),
            loss=round(estimator.loss_fraction, 3),
            usage=estimator.usage.name.lower(),
        )
    return out


def _mean_ms(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(1000 * sum(known) / len(known), 1) if known else None


def _state(transport: WebRtcTransport | None) -> str:
    if transport is None:
        return "none"
    if transport.closed:
        return "closed"
    return "connected" if transport.connected else "connecting"
