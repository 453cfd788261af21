"""Opus over RTP (RFC 7587) and the duration of an Opus packet from its TOC byte (RFC 6716 §3.1).

RFC 7587 §4.2 puts exactly one Opus packet in each RTP payload, so packetizing is the identity; what a
sender does need is the packet's duration, because the RTP timestamp (always a 48 kHz clock, §4.1)
must advance by it: a 40 ms or 60 ms packet advances it by 1920 or 2880, not by a fixed 960.
"""

from __future__ import annotations

from roomcast.wire import ParseError

CLOCK_RATE = 48000  # RFC 7587 §4.1: whatever the codec's internal rate
MAX_PACKET_SAMPLES = 5760  # RFC 6716 §3.2.5: at most 120 ms of audio per packet

# RFC 6716 §3.1 Table 2: frame size of each configuration number, in 48 kHz samples.
_SILK = (480, 960, 1920, 2880)  # 10, 20, 40, 60 ms (configs 0-11)
_HYBRID = (480, 960)  # 10, 20 ms (configs 12-15)
_CELT = (120, 240, 480, 960)  # 2.5, 5, 10, 20 ms (configs 16-31)


def frame_samples(toc: int) -> int:
    """Samples at 48 kHz of each frame in a packet with this TOC byte."""
    config = toc >> 3
    if config < 12:
        return _SILK[config % 4]
    if config < 16:
        return _HYBRID[config % 2]
    return _CELT[config % 4]


def frame_count(packet: bytes) -> int:
    """Frames in the packet: code 0 one, codes 1 and 2 two, code 3 the count byte's M (§3.2.5)."""
    if not packet:
        raise ParseError("empty Opus packet")
    code = packet[0] & 0x03
    if code == 0:
        return 1
    if code in (1, 2):
        return 2
    if len(packet) < 2:
        raise ParseError("Opus code 3 packet without its frame count byte")
    count = packet[1] & 0x3F
    if count == 0:
        raise ParseError("Opus code 3 packet with zero frames")
    return count


def packet_samples(packet: bytes) -> int:
    """Duration in 48 kHz samples: how far the RTP timestamp advances after this packet."""
    samples = frame_samples(packet[0]) * frame_count(packet) if packet else 0
    if not samples or samples > MAX_PACKET_SAMPLES:
        raise ParseError(f"Opus packet of {samples} samples (1..{MAX_PACKET_SAMPLES} allowed)")
    return samples


def packetize(packet: bytes) -> bytes:
    """RFC 7587 §4.2: the RTP payload is the Opus packet itself (checked, so a bad file fails early)."""
    packet_samples(packet)
    return packet


def depacketize(payload: bytes) -> bytes:
    """The Opus packet in an RTP payload; an empty payload is not one (RFC 7587 §4.2)."""
    packet_samples(payload)
    return payload
