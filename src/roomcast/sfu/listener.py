"""The listener: one table saying which producer, and which layer of it, an incoming RTP packet feeds.

Every packet of a publisher transport is looked up by SSRC (one dict lookup on the hot path). An SSRC
not yet known is bound once, on its first packet, following RFC 8843 §9.2 in this order:

1. the MID header extension (RFC 8843 §15) names the m-line, hence the producer;
2. else a payload type that only one m-line of the bundle uses names it (§9.2 allows this when payload
   types are unique across the bundle: GStreamer's webrtcbin offers m-lines with neither ``a=ssrc``
   nor the MID extension, so this is the only way to demultiplex it);
3. in a simulcast producer, the RID header extension (RFC 8852 §3.1) names the layer; for an RTX
   stream the repaired-RID extension (§3.2) names the layer it repairs.

SSRCs the SDP announces are bound up front: the primary (and its FID RTX, RFC 4588 §8) of a single
stream, and the layers of ``a=ssrc-group:SIM`` in order. A slot once bound is not rebound by later
packets (a stray or hostile SSRC cannot take over a layer); what cannot be bound is dropped and counted.
"""

from __future__ import annotations

from collections import Counter

from roomcast.proto.codecs import MID_URI, REPAIRED_RID_URI, RID_URI
from roomcast.proto.jsep import NegotiatedMedia
from roomcast.sfu.producer import Layer, Producer
from roomcast.wire.rtp import read_extension


class Listener:
    """SSRC / MID / RID / payload type → producer and layer, for one publisher transport."""

    def __init__(self, counters: Counter[str] | None = None) -> None:
        self.by_ssrc: dict[int, Layer] = {}
        self.rtx_by_ssrc: dict[int, Layer] = {}
        self.by_mid: dict[str, Producer] = {}
        self.by_pt: dict[int, Producer] = {}  # payload types (media and RTX) unique across the bundle
        self.rtx_pts: dict[Producer, frozenset[int]] = {}
        self.mid_ext_ids: set[int] = set()
        self.rid_ext_ids: set[int] = set()
        self.repaired_rid_ext_ids: set[int] = set()
        self.routing_ext_ids: frozenset[int] = frozenset()  # all three: blanked in what is forwarded
        self.announced_rtx: dict[int, int] = {}  # primary SSRC -> its RTX SSRC (a=ssrc-group:FID), unbound yet
        self.counters: Counter[str] = counters if counters is not None else Counter()  # the router's

    def add(self, producer: Producer, m: NegotiatedMedia) -> None:
        """A producer for receiving m-line ``m``: its extension ids and the SSRCs its SDP announces."""
        self.by_mid[producer.mid] = producer
        self.rtx_pts[producer] = frozenset(m.rtx.values())
        for uri, ids in ((MID_URI, self.mid_ext_ids), (RID_URI, self.rid_ext_ids)):
            if uri in m.extensions:
                ids.add(m.extensions[uri])
        if REPAIRED_RID_URI in m.extensions:
            self.repaired_rid_ext_ids.add(m.extensions[REPAIRED_RID_URI])
        self.routing_ext_ids = frozenset(self.mid_ext_ids | self.rid_ext_ids | self.repaired_rid_ext_ids)
        if producer.simulcast:
            if len(m.simulcast_ssrcs) >= len(producer.layers):
                for layer, ssrc in zip(producer.layers, m.simulcast_ssrcs, strict=False):
                    self._bind(layer, ssrc, m.remote_rtx.get(ssrc))
            else:  # a=ssrc lines without SIM (Firefox): which is which only the RID extension says
                self.announced_rtx.update(m.remote_rtx)
        elif m.remote_ssrcs:
            self._bind(producer.layers[0], m.remote_ssrcs[0], m.remote_rtx.get(m.remote_ssrcs[0]))

    def index_payload_types(self, media: tuple[NegotiatedMedia, ...]) -> None:
        """Payload types used by exactly one m-line of the bundle, mapped to that m-line's producer."""
        uses: Counter[int] = Counter()
        for m in media:
            uses.update({c.payload_type for c in m.codecs} | set(m.rtx.values()))
        self.by_pt = {}
        for m in media:
            producer = self.by_mid.get(m.mid)
            if producer is None:
                continue
            for pt in {c.payload_type for c in m.codecs} | set(m.rtx.values()):
                if uses[pt] == 1:
                    self.by_pt[pt] = producer

    def remove(self, producer: Producer) -> None:
        if self.by_mid.get(producer.mid) is producer:
            del self.by_mid[producer.mid]
        self.rtx_pts.pop(producer, None)
        for table in (self.by_ssrc, self.rtx_by_ssrc):
            for ssrc in [s for s, layer in table.items() if layer.producer is producer]:
                del table[ssrc]
        self.by_pt = {pt: p for pt, p in self.by_pt.items() if p is not producer}

    def producers(self) -> list[Producer]:
        return list(self.by_mid.values())

    def _bind(self, layer: Layer, ssrc: int, rtx_ssrc: int | None) -> None:
        if ssrc not in self.by_ssrc and ssrc not in self.rtx_by_ssrc:
            layer.ssrc = ssrc
            self.by_ssrc[ssrc] = layer
        if rtx_ssrc is not None and rtx_ssrc not in self.by_ssrc and rtx_ssrc not in self.rtx_by_ssrc:
            layer.rtx_ssrc = rtx_ssrc
            self.rtx_by_ssrc[rtx_ssrc] = layer

    def learn(self, pkt: bytes, ssrc: int) -> Layer | None:
        """Bind an SSRC seen for the first time (see the module docstring); the layer it now feeds
        (as media, or as RTX: check :attr:`rtx_by_ssrc`), or None (counted by reason)."""
        producer = None
        for ext_id in self.mid_ext_ids:
            value = read_extension(pkt, ext_id)
            if value is not None:
                producer = self.by_mid.get(value.decode("ascii", "replace"))
                if producer is None:
                    self.counters["unknown_mid"] += 1
                    return None
                break
        pt = pkt[1] & 0x7F
        by_pt = producer is None
        if producer is None:
            producer = self.by_pt.get(pt)
            if producer is None:
                return None
        is_rtx = pt in self.rtx_pts.get(producer, ())
        if producer.simulcast:
            layer = self._layer_by_rid(producer, pkt, self.repaired_rid_ext_ids if is_rtx else self.rid_ext_ids)
            if layer is None and is_rtx:  # some senders put the RID itself on RTX
                layer = self._layer_by_rid(producer, pkt, self.rid_ext_ids)
            if layer is None:
                self.counters["unknown_rid"] += 1
                return None
        else:
            layer = producer.layers[0]
        if is_rtx:
            if layer.rtx_ssrc is not None:
                return None
            layer.rtx_ssrc = ssrc
            self.rtx_by_ssrc[ssrc] = layer
            if by_pt:
                self.counters["ssrc_learned_by_pt"] += 1
            return layer
        if layer.ssrc is not None:
            return None  # counted by the caller (unknown_ssrc), not as learned: the layer has its SSRC
        layer.ssrc = ssrc
        self.by_ssrc[ssrc] = layer
        if by_pt:
            self.counters["ssrc_learned_by_pt"] += 1
        rtx = self.announced_rtx.pop(ssrc, None)
        if rtx is not None and layer.rtx_ssrc is None and rtx not in self.by_ssrc:
            layer.rtx_ssrc = rtx
            self.rtx_by_ssrc[rtx] = layer
        return layer

    @staticmethod
    def _layer_by_rid(producer: Producer, pkt: bytes, ext_ids: set[int]) -> Layer | None:
        for ext_id in ext_ids:
            value = read_extension(pkt, ext_id)
            if value is not None:
                return producer.layer_by_rid(value.decode("ascii", "replace"))
        return None
