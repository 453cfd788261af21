"""The transport-wide sequence number header extension (draft-holmer-rmcat-transport-wide-cc-
extensions-01 §2): a 16-bit number, big-endian, shared by every stream of one transport.

The SFU rewrites it in place on forwarded packets (the publisher's number means nothing on the
subscriber's transport), so the write never grows or re-serialises the packet.
"""

from __future__ import annotations

import struct

from roomcast.wire.rtp import _elements

_U16 = struct.Struct("!H")


def _locate(pkt: bytes | bytearray, ext_id: int) -> int:
    """Offset of extension ``ext_id``'s 2-byte value, or -1 (absent, other length, or malformed)."""
    if len(pkt) < 12 or not pkt[0] & 0x10:
        return -1
    pos = 12 + 4 * (pkt[0] & 0x0F)
    if pos + 4 > len(pkt):
        return -1
    profile, words = struct.unpack_from("!HH", pkt, pos)
    end = pos + 4 + 4 * words
    if end > len(pkt):
        return -1
    for ident, start, length in _elements(pkt, pos + 4, end, profile):
        if ident == ext_id:
            return start if length == 2 else -1
    return -1


def transport_seq_at(pkt: bytes | bytearray, ext_id: int) -> int:
    """Offset of the transport-wide sequence number's value in ``pkt`` (-1: none), for an in-place rewrite
    by the forwarding path (the SRTP buffer's copy) and the retransmission path."""
    return _locate(pkt, ext_id)


def read_transport_seq(pkt: bytes | bytearray, ext_id: int) -> int:
    """The packet's transport-wide sequence number, or -1 when it carries none."""
    at = _locate(pkt, ext_id)
    return -1 if at < 0 else (pkt[at] << 8) | pkt[at + 1]


def write_transport_seq(pkt: bytearray, ext_id: int, seq: int) -> bool:
    """Overwrite the packet's transport-wide sequence number; False when it has no such extension."""
    at = _locate(pkt, ext_id)
    if at < 0:
        return False
    _U16.pack_into(pkt, at, seq & 0xFFFF)
    return True
