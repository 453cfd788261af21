"""The SFU's side of RTCP feedback: what a subscriber's compound RTCP asks of the forwarding path. The
processors themselves (RTX ring, keyframe throttle, NACK generator) live in :mod:`roomcast.proto.feedback`,
shared with the SDK."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from roomcast.wire import ParseError
from roomcast.wire.rtcp import (
    Fir,
    GenericNack,
    Pli,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    TransportCC,
    parse_compound,
)


def subscriber_feedback(
    data: bytes,
    counters: Counter[str],
    on_nack: Callable[[int, list[int]], int],
    on_keyframe_request: Callable[[int], None],
    on_report: Callable[[ReportBlock], None] | None = None,
    on_packet: Callable[[RtcpPacket], None] | None = None,
) -> None:
    """Dispatch a subscriber's RTCP: NACKs (media SSRC, lost seqs) → ``on_nack`` returning how many were
    resent; PLI/FIR → ``on_keyframe_request(media SSRC)``. Malformed compounds are counted, not raised."""
    try:
        packets = parse_compound(data)
    except ParseError:
        counters["rtcp_malformed"] += 1
        return
    for packet in packets:
        if isinstance(packet, GenericNack):
            counters["nack_received"] += 1
            counters["retransmitted"] += on_nack(packet.media_ssrc, list(packet.lost))
        elif isinstance(packet, Pli):
            on_keyframe_request(packet.media_ssrc)
        elif isinstance(packet, Fir):
            for ssrc, _ in packet.entries:
                on_keyframe_request(ssrc)
        elif isinstance(packet, ReceiverReport | SenderReport) and on_report is not None:
            for block in packet.reports:
                on_report(block)
        if on_packet is not None:  # every packet, e.g. for a bandwidth estimate (transport-cc, REMB, reports)
            if isinstance(packet, TransportCC):
                counters["transport_cc_received"] += 1
            on_packet(packet)
