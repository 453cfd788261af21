"""The echo endpoint (like Janus EchoTest): every packet a browser sends comes straight back.

It exercises the whole forwarding path of the SFU on one connection: SSRC demultiplexing (by SDP and by
the RFC 8843 MID header extension), the consumer rewrite, NACK answered from the RTX ring, keyframe
requests relayed upstream through the throttle. Payload types and extension ids need no rewriting:
the answer kept the offer's.
"""

from __future__ import annotations

from collections import Counter

from roomcast.proto.feedback import KeyframeThrottle
from roomcast.proto.jsep import NegotiatedAnswer, NegotiatedMedia
from roomcast.proto.webrtc import WebRtcTransport
from roomcast.sfu.consumer import Consumer
from roomcast.sfu.feedback import subscriber_feedback
from roomcast.wire.rtcp import Pli
from roomcast.wire.rtp import header_length, padding_fits, read_extension

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
SERVER_SSRC = 1  # SSRC of our own RTCP feedback (RFC 4585 §6.1 allows any; 1 is never a media SSRC of ours)


class _Stream:
    __slots__ = ("consumer", "media", "source_ssrc", "throttle")

    def __init__(self, media: NegotiatedMedia, consumer: Consumer) -> None:
        self.media = media
        self.consumer = consumer
        self.source_ssrc: int | None = None
        self.throttle = KeyframeThrottle(0.5)


class EchoSession:
    def __init__(self, transport: WebRtcTransport, negotiated: NegotiatedAnswer) -> None:
        self.transport = transport
        self.counters: Counter[str] = Counter()
        self._by_ssrc: dict[int, _Stream] = {}
        self._rtx_ssrcs: dict[int, _Stream] = {}
        self._by_mid: dict[str, _Stream] = {}
        self._by_send_ssrc: dict[int, _Stream] = {}
        self._mid_ids: set[int] = set()
        for media in negotiated.media:
            if media.send_ssrc is None:
                continue
            consumer = Consumer(
                ssrc=media.send_ssrc,
                kind=media.kind,
                clock_rate=media.clock_rate,
                send=transport.send_rtp,
                send_rewritten=transport.send_rtp_rewritten,
                rtx_ssrc=media.send_rtx_ssrc,
                rtx_pt=dict(media.rtx),
            )
            stream = _Stream(media, consumer)
            self._by_mid[media.mid] = stream
            self._by_send_ssrc[media.send_ssrc] = stream
            for ssrc in media.remote_ssrcs:
                self._by_ssrc[ssrc] = stream
            for rtx_ssrc in media.remote_rtx.values():
                self._rtx_ssrcs[rtx_ssrc] = stream
            mid_id = media.extensions.get(MID_URI)
            if mid_id is not None:
                self._mid_ids.add(mid_id)
        transport.on_rtp = self.on_rtp
        transport.on_rtcp = self.on_rtcp

    # ------------------------------------------------------------------ media in

    def on_rtp(self, pkt: bytes) -> None:
        header = header_length(pkt)
        if header < 0 or not padding_fits(pkt, header):
            self.counters["rtp_malformed"] += 1
            return
        ssrc = int.from_bytes(pkt[8:12], "big")
        stream = self._by_ssrc.get(ssrc)
        if stream is None:
            if ssrc in self._rtx_ssrcs:
                self.counters["rtx_in_dropped"] += 1  # we never NACK upstream in echo mode
                return
            stream = self._learn(pkt, ssrc)
            if stream is None:
                self.counters["unknown_ssrc"] += 1
                return
        stream.source_ssrc = ssrc
        stream.consumer.forward(pkt, ssrc, self.transport.now)
        self.counters["rtp_echoed"] += 1

    def _learn(self, pkt: bytes, ssrc: int) -> _Stream | None:
        """No a=ssrc for this SSRC: the RFC 8843 MID extension says which m-line it belongs to."""
        for ext_id in self._mid_ids:
            mid = read_extension(pkt, ext_id)
            if mid is not None:
                stream = self._by_mid.get(mid.decode("ascii", "replace"))
                if stream is not None:
                    if (pkt[1] & 0x7F) in stream.media.rtx.values():
                        self._rtx_ssrcs[ssrc] = stream
                        return None
                    self._by_ssrc[ssrc] = stream
                    return stream
        return None

    def on_rtcp(self, data: bytes) -> None:
        subscriber_feedback(data, self.counters, self._nack, self._keyframe_request)

    def _nack(self, media_ssrc: int, lost: list[int]) -> int:
        stream = self._by_send_ssrc.get(media_ssrc)
        return stream.consumer.retransmit(lost) if stream is not None else 0

    def _keyframe_request(self, media_ssrc: int) -> None:
        stream = self._by_send_ssrc.get(media_ssrc)
        if stream is not None and stream.source_ssrc is not None:
            self._request_keyframe(stream)

    def _request_keyframe(self, stream: _Stream) -> None:
        if stream.source_ssrc is None or not stream.throttle.allow(self.transport.now):
            self.counters["pli_throttled"] += 1
            return
        self.counters["pli_forwarded"] += 1
        self.transport.send_rtcp(Pli(SERVER_SSRC, stream.source_ssrc).serialize())

    def on_tick(self, now: float) -> None:
        """Called after every input; nothing periodic yet (receiver reports come with the SFU)."""
        return None
