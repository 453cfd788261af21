"""RFC 7983 §7: which protocol a datagram on the shared port carries, from its first byte."""

from __future__ import annotations

from enum import Enum


class PacketKind(Enum):
    STUN = "stun"
    DTLS = "dtls"
    TURN_CHANNEL = "turn-channel"
    RTP = "rtp"
    RTCP = "rtcp"
    UNKNOWN = "unknown"


def classify(data: bytes) -> PacketKind:
    if not data:
        return PacketKind.UNKNOWN
    first = data[0]
    if first < 4:
        return PacketKind.STUN
    if 19 < first < 64:
        return PacketKind.DTLS
    if 63 < first < 80:
        return PacketKind.TURN_CHANNEL
    if 127 < first < 192:
        # RFC 5761 §4: with rtcp-mux, packet types 192-223 (second byte) are RTCP
        return PacketKind.RTCP if len(data) > 1 and 191 < data[1] < 224 else PacketKind.RTP
    return PacketKind.UNKNOWN
