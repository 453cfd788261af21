"""Data Channel Establishment Protocol (RFC 8832): DATA_CHANNEL_OPEN and its ACK, on SCTP PPID 50."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from roomcast.wire import ParseError

PPID_DCEP, PPID_STRING, PPID_BINARY, PPID_STRING_EMPTY, PPID_BINARY_EMPTY = 50, 51, 53, 56, 57
OPEN, ACK = 0x03, 0x02
RELIABLE, PARTIAL_RELIABLE_REXMIT, PARTIAL_RELIABLE_TIMED = 0x00, 0x01, 0x02
UNORDERED_FLAG = 0x80


@dataclass(frozen=True, slots=True)
class ChannelOpen:
    channel_type: int
    priority: int
    reliability: int
    label: str
    protocol: str = ""

    @property
    def ordered(self) -> bool:
        return not self.channel_type & UNORDERED_FLAG

    @property
    def max_retransmits(self) -> int | None:
        return self.reliability if self.channel_type & 0x7F == PARTIAL_RELIABLE_REXMIT else None

    @property
    def max_lifetime_ms(self) -> int | None:
        return self.reliability if self.channel_type & 0x7F == PARTIAL_RELIABLE_TIMED else None

    def serialize(self) -> bytes:
        label, protocol = self.label.encode(), self.protocol.encode()
        return (
            struct.pack("!BBHIHH", OPEN, self.channel_type, self.priority, self.reliability, len(label), len(protocol))
            + label
            + protocol
        )

    @classmethod
    def parse(cls, data: bytes) -> ChannelOpen:
        if len(data) < 12 or data[0] != OPEN:
            raise ParseError("not a DATA_CHANNEL_OPEN message")
        _, channel_type, priority, reliability, label_len, protocol_len = struct.unpack_from("!BBHIHH", data)
        if 12 + label_len + protocol_len > len(data):
            raise ParseError("DATA_CHANNEL_OPEN label/protocol run past the message")
        try:
            label = data[12 : 12 + label_len].decode()
            protocol = data[12 + label_len : 12 + label_len + protocol_len].decode()
        except UnicodeDecodeError:
            raise ParseError("DATA_CHANNEL_OPEN label is not UTF-8") from None
        return cls(channel_type, priority, reliability, label, protocol)


ACK_MESSAGE = bytes([ACK])
