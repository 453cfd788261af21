"""What an SCTP association (:mod:`roomcast.proto.sctp`) reports and keeps: events and per-chunk state."""

from __future__ import annotations

from dataclasses import dataclass, field

from roomcast.wire.sctp import DataChunk


@dataclass(frozen=True, slots=True)
class AssociationEstablished:
    pass


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    stream_id: int
    label: str
    protocol: str
    ordered: bool
    max_retransmits: int | None
    max_lifetime_ms: int | None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    stream_id: int
    ppid: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    stream_id: int


@dataclass(frozen=True, slots=True)
class ChannelRefused:
    """A DATA_CHANNEL_OPEN the association's channel limits refused (not ACKed; its stream is reset)."""

    stream_id: int
    label: str
    reason: str


@dataclass(frozen=True, slots=True)
class AssociationAborted:
    reason: str


SctpEvent = (
    AssociationEstablished | ChannelOpened | ChannelRefused | MessageReceived | ChannelClosed | AssociationAborted
)


class SendBufferFull(ValueError):
    """``send()`` would hold more than the association's bound: the message is refused, nothing queued."""


@dataclass
class Channel:
    stream_id: int
    label: str
    ordered: bool = True
    max_retransmits: int | None = None
    max_lifetime_ms: int | None = None
    next_ssn: int = 0


@dataclass(slots=True)
class Outgoing:
    chunk: DataChunk
    max_retransmits: int | None
    expires_at: float | None
    sent_at: float | None = None
    retransmits: int = 0
    acked: bool = False
    abandoned: bool = False
    misses: int = 0  # SACKs that acked something after it but not it (fast retransmit at 3, §7.2.4)


@dataclass
class Inbound:
    fragments: dict[int, DataChunk] = field(default_factory=dict)  # by TSN
    ordered_ready: dict[tuple[int, int], tuple[int, bytes]] = field(default_factory=dict)  # (stream, ssn) -> msg
    expected_ssn: dict[int, int] = field(default_factory=dict)
    buffered: int = 0
