"""A sans-IO SCTP association for WebRTC data channels (RFC 8831 profile of RFC 9260).

One association per DTLS connection, port 5000 both ends. Supported: the four-way handshake, DATA/SACK
with gap blocks, T3 retransmission with backoff, ordered and unordered streams, fragmentation and
reassembly (bounded), partial reliability by retransmissions or lifetime with FORWARD-TSN (RFC 3758),
stream reset on close (RFC 6525) and DCEP (RFC 8832). Congestion control is a fixed in-flight window
bounded by the peer's receive window: enough for data channels on a LAN or loopback, not tuned for WANs.
The sending half lives in :mod:`roomcast.proto.sctp_send`, the receiving half in
:mod:`roomcast.proto.sctp_receive`. Channel limits (labels, how many) refuse unexpected OPENs (issue 12 C1).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections import Counter, deque
from collections.abc import Mapping
from typing import Literal

from roomcast.proto.sctp_receive import RWND, SctpReceiver
from roomcast.proto.sctp_send import INITIAL_RTO, MAX_BUFFERED, MAX_CHUNKS, MAX_RTO, SctpSender
from roomcast.proto.sctp_state import (
    AssociationAborted,
    AssociationEstablished,
    Channel,
    ChannelClosed,
    ChannelOpened,
    ChannelRefused,
    MessageReceived,
    SctpEvent,
    SendBufferFull,
)
from roomcast.wire import ParseError, dcep
from roomcast.wire.sctp import (
    ABORT,
    COOKIE_ACK,
    COOKIE_ECHO,
    DATA,
    FORWARD_TSN,
    HEARTBEAT,
    HEARTBEAT_ACK,
    INIT,
    INIT_ACK,
    PARAM_FORWARD_TSN_SUPPORTED,
    PARAM_OUTGOING_RESET,
    PARAM_STATE_COOKIE,
    PARAM_SUPPORTED_EXTENSIONS,
    RECONFIG,
    SACK,
    SHUTDOWN,
    SHUTDOWN_ACK,
    SHUTDOWN_COMPLETE,
    Chunk,
    DataChunk,
    Init,
    Packet,
    Sack,
    outgoing_reset,
    parse_params,
    reconfig_response,
)

PORT = 5000
MAX_CHANNELS = 1024


class SctpAssociation:
    """``channel_limits`` maps each label the peer may open to how many channels of it may be open at once
    (None: any label); at most ``max_channels`` are open. Other OPENs are refused: no ACK, the stream is
    reset, a :class:`ChannelRefused` event. ``max_buffered`` bytes / ``max_chunks`` chunks bound what
    :meth:`send` may hold for a slow or silent peer (:class:`SendBufferFull`)."""

    def __init__(
        self,
        role: Literal["server", "client"],
        *,
        max_message_size: int = 262144,
        max_buffered: int = MAX_BUFFERED,
        max_chunks: int = MAX_CHUNKS,
        channel_limits: Mapping[str, int] | None = None,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        self.role = role
        self.max_message_size = max_message_size
        self.channel_limits = channel_limits
        self.max_channels = max_channels
        self.state = "closed"
        self.local_vtag = int.from_bytes(os.urandom(4), "big") or 1
        self.remote_vtag = 0
        self.channels: dict[int, Channel] = {}
        self.counters: Counter[str] = Counter()
        self._secret = os.urandom(16)
        self.rx = SctpReceiver(max_message_size, self._deliver, self._abort, self.counters)
        self.tx = SctpSender(
            self._send_chunks,
            self._abort,
            self.counters,
            int.from_bytes(os.urandom(4), "big"),
            max_buffered=max_buffered,
            max_chunks=max_chunks,
        )
        self.tx.peer_rwnd = RWND
        self._t3: float | None = None  # the handshake's retransmission timer; DATA's is ``tx.t3``
        self._handshake_rto = INITIAL_RTO
        self._init_chunk: Chunk | None = None
        self._cookie: bytes | None = None
        self._reconfig_seq = int.from_bytes(os.urandom(4), "big")
        self._transmits: deque[bytes] = deque()
        self._events: deque[SctpEvent] = deque()
        self._need_sack = False
        self._refused: list[int] = []  # streams whose OPEN was refused in this packet: reset together

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Client: send INIT. The server waits for one."""
        if self.role != "client" or self.state != "closed":
            return
        self._init_chunk = self._init().chunk()
        self.state = "cookie-wait"
        self._send_chunks([self._init_chunk], vtag=0)
        self._t3 = now + self._handshake_rto

    def _init(self) -> Init:
        extensions = bytes([RECONFIG, FORWARD_TSN])
        params = ((PARAM_FORWARD_TSN_SUPPORTED, b""), (PARAM_SUPPORTED_EXTENSIONS, extensions))
        return Init(self.local_vtag, RWND, 65535, 65535, self.tx.next_tsn, params)

    # ------------------------------------------------------------------ input

    def handle_packet(self, data: bytes, now: float) -> None:
        if self.state == "aborted":
            return
        try:
            packet = Packet.parse(data)
        except ParseError:
            self.counters["malformed"] += 1
            return
        first = packet.chunks[0].type if packet.chunks else -1
        if first == INIT:
            if packet.verification_tag != 0:
                self.counters["bad_vtag"] += 1
                return
        elif packet.verification_tag != self.local_vtag:
            self.counters["bad_vtag"] += 1
            return
        try:
            for chunk in packet.chunks:
                self._chunk(chunk, now)
        except ParseError:
            self.counters["malformed_chunk"] += 1
        if self._need_sack and self.rx.cum_tsn is not None:
            self._send_chunks([self.rx.sack()])
            self._need_sack = False
        if self._refused:
            self._reset_outgoing(self._refused)
            self._refused = []
        self._flush(now)

    def _chunk(self, chunk: Chunk, now: float) -> None:
        kind = chunk.type
        if kind == DATA:
            self._need_sack = True
            self.rx.on_data(DataChunk.from_chunk(chunk))
        elif kind == SACK:
            self.tx.on_sack(Sack.from_chunk(chunk), now)
        elif kind == INIT and self.role == "server":
            init = Init.from_chunk(chunk)
            self.remote_vtag = init.initiate_tag
            self.rx.cum_tsn = (init.initial_tsn - 1) & 0xFFFFFFFF
            self.tx.peer_rwnd = init.a_rwnd
            cookie = hmac.new(
                self._secret, struct.pack("!II", self.local_vtag, init.initiate_tag), hashlib.sha256
            ).digest()
            ack = self._init()
            ack = Init(
                ack.initiate_tag,
                ack.a_rwnd,
                ack.outbound_streams,
                ack.inbound_streams,
                ack.initial_tsn,
                (*ack.params, (PARAM_STATE_COOKIE, cookie)),
            )
            self._send_chunks([ack.chunk(ack=True)])
        elif kind == COOKIE_ECHO and self.role == "server":
            expected = hmac.new(self._secret, struct.pack("!II", self.local_vtag, self.remote_vtag), hashlib.sha256)
            if not hmac.compare_digest(expected.digest(), chunk.value):
                self.counters["bad_cookie"] += 1
                return
            self._send_chunks([Chunk(COOKIE_ACK, 0, b"")])
            if self.state != "established":
                self.state = "established"
                self._events.append(AssociationEstablished())
        elif kind == INIT_ACK and self.state == "cookie-wait":
            init = Init.from_chunk(chunk)
            self.remote_vtag = init.initiate_tag
            self.rx.cum_tsn = (init.initial_tsn - 1) & 0xFFFFFFFF
            self.tx.peer_rwnd = init.a_rwnd
            self._cookie = init.param(PARAM_STATE_COOKIE) or b""
            self.state = "cookie-echoed"
            self._send_chunks([Chunk(COOKIE_ECHO, 0, self._cookie)])
            self._t3 = now + self._handshake_rto
        elif kind == COOKIE_ACK and self.state == "cookie-echoed":
            self.state = "established"
            self._t3 = None
            self._events.append(AssociationEstablished())
        elif kind == HEARTBEAT:
            self._send_chunks([Chunk(HEARTBEAT_ACK, 0, chunk.value)])
        elif kind == ABORT:
            self._abort("aborted by the peer", send=False)
        elif kind == SHUTDOWN:
            self._send_chunks([Chunk(SHUTDOWN_ACK, 0, b"")])
        elif kind in (SHUTDOWN_ACK, SHUTDOWN_COMPLETE):
            self.state = "closed"
        elif kind == FORWARD_TSN:
            self.rx.on_forward_tsn(chunk)
            self._need_sack = True
        elif kind == RECONFIG:
            self._on_reconfig(chunk)

    # ------------------------------------------------------------------ receiving data

    def _deliver(self, stream: int, ppid: int, data: bytes) -> None:
        if ppid == dcep.PPID_DCEP:
            self._on_dcep(stream, data)
            return
        if ppid in (dcep.PPID_STRING_EMPTY, dcep.PPID_BINARY_EMPTY):
            data = b""
        self._events.append(MessageReceived(stream, ppid, data))

    def _on_dcep(self, stream: int, data: bytes) -> None:
        if data[:1] != bytes([dcep.OPEN]):
            return
        try:
            message = dcep.ChannelOpen.parse(data)
        except ParseError:
            self.counters["bad_dcep"] += 1
            return
        if stream in self.channels:  # RFC 8832 §6: the stream is in use; its channel stays as it is
            self._refuse(stream, message.label, "a channel is already open on this stream", reset=False)
            return
        refusal = self._refusal(message.label)
        if refusal is not None:
            self._refuse(stream, message.label, refusal, reset=True)
            return
        channel = Channel(stream, message.label, message.ordered, message.max_retransmits, message.max_lifetime_ms)
        self.channels[stream] = channel
        self._enqueue(stream, dcep.ACK_MESSAGE, dcep.PPID_DCEP, ordered=True, max_retransmits=None, lifetime=None)
        self._events.append(
            ChannelOpened(
                stream,
                message.label,
                message.protocol,
                message.ordered,
                message.max_retransmits,
                message.max_lifetime_ms,
            )
        )

    def _refusal(self, label: str) -> str | None:
        if len(self.channels) >= self.max_channels:
            return f"at most {self.max_channels} channels"
        if self.channel_limits is None:
            return None
        allowed = self.channel_limits.get(label, 0)
        if not allowed:
            return "unexpected label"
        if sum(1 for c in self.channels.values() if c.label == label) >= allowed:
            return f"at most {allowed} channel(s) labelled {label!r}"
        return None

    def _refuse(self, stream: int, label: str, reason: str, *, reset: bool) -> None:
        """No DATA_CHANNEL_ACK; resetting our outgoing stream tells the peer to close it (RFC 8831 §6.7)."""
        self.counters["channel_refused"] += 1
        if reset and len(self._refused) < 256:
            self._refused.append(stream)
        self._events.append(ChannelRefused(stream, label[:128], reason))

    def _on_reconfig(self, chunk: Chunk) -> None:
        for kind, value in parse_params(chunk.value):
            if kind != PARAM_OUTGOING_RESET or len(value) < 12:
                continue
            request_seq = struct.unpack_from("!I", value)[0]
            streams = [struct.unpack_from("!H", value, p)[0] for p in range(12, len(value) - 1, 2)]
            self._send_chunks([Chunk(RECONFIG, 0, reconfig_response(request_seq, 1))])
            closing = []
            for stream in streams:
                self.rx.reset_stream(stream)
                if self.channels.pop(stream, None) is not None:
                    self._events.append(ChannelClosed(stream))
                    closing.append(stream)
            # Our side of a channel still open closes too (RFC 8831 §6.7). A stream we reset already (we
            # closed or refused it) is not reset again: two peers doing so bounce RECONFIGs forever.
            if closing:
                self._reset_outgoing(closing)

    def _reset_outgoing(self, streams: list[int]) -> None:
        self._reconfig_seq = (self._reconfig_seq + 1) & 0xFFFFFFFF
        last_tsn = (self.tx.next_tsn - 1) & 0xFFFFFFFF
        self._send_chunks([Chunk(RECONFIG, 0, outgoing_reset(self._reconfig_seq, 0, last_tsn, streams))])

    # ------------------------------------------------------------------ sending

    def open_channel(
        self, stream_id: int, label: str, *, ordered: bool = True, max_retransmits: int | None = None, now: float = 0.0
    ) -> None:
        channel_type = (dcep.PARTIAL_RELIABLE_REXMIT if max_retransmits is not None else dcep.RELIABLE) | (
            0 if ordered else dcep.UNORDERED_FLAG
        )
        self.channels[stream_id] = Channel(stream_id, label, ordered, max_retransmits)
        message = dcep.ChannelOpen(channel_type, 0, max_retransmits or 0, label).serialize()
        self._enqueue(stream_id, message, dcep.PPID_DCEP, ordered=True, max_retransmits=None, lifetime=None)
        self._flush(now)

    def send(self, stream_id: int, data: bytes, now: float, *, binary: bool = True) -> None:
        channel = self.channels.get(stream_id)
        if channel is None:
            raise ValueError(f"no open channel on stream {stream_id}")
        if len(data) > self.max_message_size:
            raise ValueError(f"message of {len(data)} bytes exceeds max-message-size {self.max_message_size}")
        if data:
            ppid = dcep.PPID_BINARY if binary else dcep.PPID_STRING
        else:
            ppid = dcep.PPID_BINARY_EMPTY if binary else dcep.PPID_STRING_EMPTY
            data = b"\x00"
        lifetime = now + channel.max_lifetime_ms / 1000 if channel.max_lifetime_ms is not None else None
        self._enqueue(
            stream_id, data, ppid, ordered=channel.ordered, max_retransmits=channel.max_retransmits, lifetime=lifetime
        )
        self._flush(now)

    def close_channel(self, stream_id: int) -> None:
        if self.channels.pop(stream_id, None) is not None:
            self._reset_outgoing([stream_id])

    def buffered_amount(self, stream_id: int | None = None) -> int:
        """Bytes sent or queued and not yet acknowledged nor abandoned (RTCDataChannel.bufferedAmount)."""
        return self.tx.buffered_amount(stream_id)

    @property
    def queued_bytes(self) -> int:
        """Everything held for the peer (queued, in flight, abandoned but not yet skipped): the bound's measure."""
        return self.tx.queued_bytes

    @property
    def peak_queued_bytes(self) -> int:
        return self.tx.peak_queued_bytes

    @property
    def max_buffered(self) -> int:
        return self.tx.max_buffered

    def _enqueue(
        self, stream: int, data: bytes, ppid: int, *, ordered: bool, max_retransmits: int | None, lifetime: float | None
    ) -> None:
        channel = self.channels.get(stream) if ordered else None
        ssn = channel.next_ssn if channel is not None else 0
        self.tx.enqueue(
            stream,
            ssn,
            ppid,
            data,
            ordered=ordered,
            max_retransmits=max_retransmits,
            expires_at=lifetime,
            control=ppid == dcep.PPID_DCEP,
        )
        if channel is not None:  # only once queued: a refused message uses no SSN
            channel.next_ssn = (channel.next_ssn + 1) & 0xFFFF

    def _flush(self, now: float) -> None:
        if self.state == "established":
            self.tx.flush(now)

    def handle_timeout(self, now: float) -> None:
        if self._t3 is not None and now >= self._t3:
            self._handshake_rto = min(MAX_RTO, self._handshake_rto * 2)
            self._t3 = now + self._handshake_rto
            if self.state == "cookie-wait" and self._init_chunk is not None:
                self._send_chunks([self._init_chunk], vtag=0)
                return
            if self.state == "cookie-echoed" and self._cookie is not None:
                self._send_chunks([Chunk(COOKIE_ECHO, 0, self._cookie)])
                return
            self._t3 = None
        if self.state == "established" and self.tx.t3 is not None and now >= self.tx.t3:
            self.tx.on_timeout(now)

    # ------------------------------------------------------------------ output

    def _send_chunks(self, chunks: list[Chunk], vtag: int | None = None) -> None:
        tag = self.remote_vtag if vtag is None else vtag
        self._transmits.append(Packet(PORT, PORT, tag, tuple(chunks)).serialize())

    def _abort(self, reason: str, send: bool = True) -> None:
        if send and self.remote_vtag:
            self._send_chunks([Chunk(ABORT, 0, b"")])
        self.state = "aborted"
        self._t3 = None
        self.tx.clear()
        self._events.append(AssociationAborted(reason))

    def poll_transmit(self) -> bytes | None:
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> SctpEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        if self._t3 is not None:
            return self._t3
        return self.tx.t3 if self.state == "established" else None


__all__ = [
    "AssociationAborted",
    "AssociationEstablished",
    "Channel",
    "ChannelClosed",
    "ChannelOpened",
    "ChannelRefused",
    "MessageReceived",
    "SctpAssociation",
    "SctpEvent",
    "SendBufferFull",
]
