"""A sans-IO SCTP association for WebRTC data channels (RFC 8831 profile of RFC 9260).

One association per DTLS connection, port 5000 both ends. Supported: the four-way handshake, DATA/SACK
with gap blocks, T3 retransmission with backoff, ordered and unordered streams, fragmentation and
reassembly (bounded), partial reliability by retransmissions or lifetime with FORWARD-TSN (RFC 3758),
stream reset on close (RFC 6525) and DCEP (RFC 8832). Congestion control is a fixed in-flight window
bounded by the peer's receive window: enough for data channels on a LAN or loopback, not tuned for WANs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections import Counter, deque
from typing import Literal

from roomcast.proto.sctp_receive import RWND, SctpReceiver
from roomcast.proto.sctp_state import (
    AssociationAborted,
    AssociationEstablished,
    Channel,
    ChannelClosed,
    ChannelOpened,
    MessageReceived,
    Outgoing,
    SctpEvent,
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
    forward_tsn,
    outgoing_reset,
    parse_params,
    reconfig_response,
    tsn_gt,
)

PORT = 5000
FRAGMENT = 1100  # user data per DATA chunk: fits a 1,200-byte DTLS record with headers
PACKET_BUDGET = 1150
MAX_IN_FLIGHT = 256 * 1024
INITIAL_RTO, MIN_RTO, MAX_RTO = 1.0, 0.2, 10.0
MAX_RETRANSMITS = 10  # reliable chunks: give up on the association after this many tries (RFC 9260 §8.1)
MTU = 1200
INITIAL_CWND = 4 * MTU  # RFC 9260 §7.2.1


class SctpAssociation:
    def __init__(self, role: Literal["server", "client"], *, max_message_size: int = 262144) -> None:
        self.role = role
        self.max_message_size = max_message_size
        self.state = "closed"
        self.local_vtag = int.from_bytes(os.urandom(4), "big") or 1
        self.remote_vtag = 0
        self.next_tsn = int.from_bytes(os.urandom(4), "big")
        self.channels: dict[int, Channel] = {}
        self.counters: Counter[str] = Counter()
        self._secret = os.urandom(16)
        self.rx = SctpReceiver(max_message_size, self._deliver, self._abort, self.counters)
        self._outstanding: dict[int, Outgoing] = {}
        self._queue: deque[Outgoing] = deque()
        self._peer_rwnd = RWND
        self._cwnd = INITIAL_CWND
        self._ssthresh = RWND
        self._rto = INITIAL_RTO
        self._t3: float | None = None
        self._init_chunk: Chunk | None = None
        self._cookie: bytes | None = None
        self._reconfig_seq = int.from_bytes(os.urandom(4), "big")
        self._transmits: deque[bytes] = deque()
        self._events: deque[SctpEvent] = deque()
        self._need_sack = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Client: send INIT. The server waits for one."""
        if self.role != "client" or self.state != "closed":
            return
        self._init_chunk = self._init().chunk()
        self.state = "cookie-wait"
        self._send_chunks([self._init_chunk], vtag=0)
        self._t3 = now + self._rto

    def _init(self) -> Init:
        extensions = bytes([RECONFIG, FORWARD_TSN])
        params = ((PARAM_FORWARD_TSN_SUPPORTED, b""), (PARAM_SUPPORTED_EXTENSIONS, extensions))
        return Init(self.local_vtag, RWND, 65535, 65535, self.next_tsn, params)

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
        self._flush(now)

    def _chunk(self, chunk: Chunk, now: float) -> None:
        kind = chunk.type
        if kind == DATA:
            self._need_sack = True
            self.rx.on_data(DataChunk.from_chunk(chunk))
        elif kind == SACK:
            self._on_sack(Sack.from_chunk(chunk), now)
        elif kind == INIT and self.role == "server":
            init = Init.from_chunk(chunk)
            self.remote_vtag = init.initiate_tag
            self.rx.cum_tsn = (init.initial_tsn - 1) & 0xFFFFFFFF
            self._peer_rwnd = init.a_rwnd
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
            self._peer_rwnd = init.a_rwnd
            self._cookie = init.param(PARAM_STATE_COOKIE) or b""
            self.state = "cookie-echoed"
            self._send_chunks([Chunk(COOKIE_ECHO, 0, self._cookie)])
            self._t3 = now + self._rto
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
        if data[:1] == bytes([dcep.OPEN]):
            try:
                message = dcep.ChannelOpen.parse(data)
            except ParseError:
                self.counters["bad_dcep"] += 1
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

    def _on_reconfig(self, chunk: Chunk) -> None:
        for kind, value in parse_params(chunk.value):
            if kind != PARAM_OUTGOING_RESET or len(value) < 12:
                continue
            request_seq = struct.unpack_from("!I", value)[0]
            streams = [struct.unpack_from("!H", value, p)[0] for p in range(12, len(value) - 1, 2)]
            self._send_chunks([Chunk(RECONFIG, 0, reconfig_response(request_seq, 1))])
            for stream in streams:
                self.rx.reset_stream(stream)
                if self.channels.pop(stream, None) is not None:
                    self._events.append(ChannelClosed(stream))
            if streams:
                self._reset_outgoing(streams)

    def _reset_outgoing(self, streams: list[int]) -> None:
        self._reconfig_seq = (self._reconfig_seq + 1) & 0xFFFFFFFF
        last_tsn = (self.next_tsn - 1) & 0xFFFFFFFF
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
        items = list(self._queue) + [o for o in self._outstanding.values() if not o.acked and not o.abandoned]
        return sum(len(o.chunk.user_data) for o in items if stream_id is None or o.chunk.stream_id == stream_id)

    def _enqueue(
        self, stream: int, data: bytes, ppid: int, *, ordered: bool, max_retransmits: int | None, lifetime: float | None
    ) -> None:
        channel = self.channels.get(stream)
        ssn = 0
        if ordered and channel is not None:
            ssn = channel.next_ssn
            channel.next_ssn = (channel.next_ssn + 1) & 0xFFFF
        pieces = [data[i : i + FRAGMENT] for i in range(0, len(data), FRAGMENT)] or [b""]
        for index, piece in enumerate(pieces):
            chunk = DataChunk(
                self.next_tsn, stream, ssn, ppid, piece, not ordered, index == 0, index == len(pieces) - 1
            )
            self.next_tsn = (self.next_tsn + 1) & 0xFFFFFFFF
            self._queue.append(Outgoing(chunk, max_retransmits, lifetime))

    def _in_flight(self) -> int:
        return sum(len(o.chunk.user_data) for o in self._outstanding.values() if not o.acked and not o.abandoned)

    def _flush(self, now: float) -> None:
        if self.state != "established":
            return
        self._expire(now)
        batch: list[Chunk] = []
        size = 0
        window = min(MAX_IN_FLIGHT, max(self._peer_rwnd, FRAGMENT), max(self._cwnd, FRAGMENT))
        while self._queue and self._in_flight() + len(self._queue[0].chunk.user_data) <= window:
            item = self._queue.popleft()
            item.sent_at = now
            self._outstanding[item.chunk.tsn] = item
            encoded = item.chunk.chunk()
            if batch and size + len(encoded.value) + 16 > PACKET_BUDGET:
                self._send_chunks(batch)
                batch, size = [], 0
            batch.append(encoded)
            size += len(encoded.value) + 16
        if batch:
            self._send_chunks(batch)
        if self._t3 is None and any(not o.acked and not o.abandoned for o in self._outstanding.values()):
            self._t3 = now + self._rto

    def _expire(self, now: float) -> None:
        for item in list(self._queue):
            if item.expires_at is not None and now > item.expires_at:
                self._queue.remove(item)
                item.abandoned = True
                self._outstanding[item.chunk.tsn] = item  # must be skipped with FORWARD-TSN like sent ones

    def _on_sack(self, sack: Sack, now: float) -> None:
        self._peer_rwnd = sack.a_rwnd
        acked_bytes = 0
        for tsn in list(self._outstanding):
            if not tsn_gt(tsn, sack.cumulative_tsn):
                item = self._outstanding.pop(tsn)
                if not item.acked:
                    acked_bytes += len(item.chunk.user_data)
        highest: int | None = None
        for start, end in sack.gaps:
            for offset in range(start, end + 1):
                tsn = (sack.cumulative_tsn + offset) & 0xFFFFFFFF
                gap_item = self._outstanding.get(tsn)
                if gap_item is not None and not gap_item.acked:
                    gap_item.acked = True
                    acked_bytes += len(gap_item.chunk.user_data)
                highest = tsn
        if acked_bytes:
            self._rto = max(MIN_RTO, INITIAL_RTO / 2)
            # §7.2.1-2: slow start below ssthresh, then about one MTU per round trip
            self._cwnd += (
                min(acked_bytes, MTU) if self._cwnd <= self._ssthresh else MTU * acked_bytes // max(self._cwnd, 1)
            )
        if highest is not None:
            self._fast_retransmit(highest)
        self._advance_abandoned(sack.cumulative_tsn)
        live = [o for o in self._outstanding.values() if not o.acked and not o.abandoned]
        self._t3 = now + self._rto if live else None

    def _fast_retransmit(self, highest: int) -> None:
        """§7.2.4: a chunk reported missing by three SACKs is resent at once, and the window halves."""
        resend: list[Chunk] = []
        for tsn, item in self._outstanding.items():
            if item.acked or item.abandoned or not tsn_gt(highest, tsn):
                continue
            item.misses += 1
            if item.misses == 3:
                resend.append(item.chunk.chunk())
                item.retransmits += 1
        if resend:
            self._ssthresh = max(self._cwnd // 2, 4 * MTU)
            self._cwnd = self._ssthresh
            self.counters["fast_retransmitted"] += len(resend)
            for chunk in resend:
                self._send_chunks([chunk])

    def _advance_abandoned(self, cum: int) -> None:
        """RFC 3758 §3.5: move the peer past abandoned chunks with FORWARD-TSN."""
        point = cum
        skipped: dict[int, int] = {}
        while True:
            nxt = (point + 1) & 0xFFFFFFFF
            item = self._outstanding.get(nxt)
            if item is None or not (item.abandoned or item.acked):
                break
            if item.abandoned and not item.chunk.unordered:
                skipped[item.chunk.stream_id] = item.chunk.ssn
            point = nxt
        if point != cum and any(self._outstanding[t].abandoned for t in self._outstanding if not tsn_gt(t, point)):
            self._send_chunks([forward_tsn(point, sorted(skipped.items()))])

    def handle_timeout(self, now: float) -> None:
        if self._t3 is None or now < self._t3:
            return
        self._rto = min(MAX_RTO, self._rto * 2)
        self._ssthresh = max(self._cwnd // 2, 4 * MTU)  # §7.2.3: a timeout means congestion
        self._cwnd = MTU
        self._t3 = now + self._rto
        if self.state == "cookie-wait" and self._init_chunk is not None:
            self._send_chunks([self._init_chunk], vtag=0)
            return
        if self.state == "cookie-echoed" and self._cookie is not None:
            self._send_chunks([Chunk(COOKIE_ECHO, 0, self._cookie)])
            return
        self._expire(now)
        resend: list[Chunk] = []
        size = 0
        for item in sorted(self._outstanding.values(), key=lambda o: (o.chunk.tsn - self.next_tsn) & 0xFFFFFFFF):
            if item.acked or item.abandoned:
                continue
            item.retransmits += 1
            limit_hit = item.max_retransmits is not None and item.retransmits > item.max_retransmits
            expired = item.expires_at is not None and now > item.expires_at
            if limit_hit or expired:
                self._abandon_message(item)
                continue
            if item.max_retransmits is None and item.retransmits > MAX_RETRANSMITS:
                self._abort("peer stopped acknowledging data")
                return
            encoded = item.chunk.chunk()
            if size + len(encoded.value) + 16 > self._ssthresh:
                break
            resend.append(encoded)
            size += len(encoded.value) + 16
        if resend:
            self.counters["retransmitted"] += len(resend)
            batch: list[Chunk] = []
            used = 0
            for encoded in resend:
                if batch and used + len(encoded.value) + 16 > PACKET_BUDGET:
                    self._send_chunks(batch)
                    batch, used = [], 0
                batch.append(encoded)
                used += len(encoded.value) + 16
            self._send_chunks(batch)
        cum = (
            min((t for t in self._outstanding), key=lambda t: (t - self.next_tsn) & 0xFFFFFFFF, default=self.next_tsn)
            - 1
        ) & 0xFFFFFFFF
        self._advance_abandoned(cum)
        if not any(not o.acked and not o.abandoned for o in self._outstanding.values()):
            self._t3 = None

    def _abandon_message(self, item: Outgoing) -> None:
        """All fragments of a message go together (RFC 3758 §3.5 rule C3)."""
        for other in self._outstanding.values():
            if (
                other.chunk.stream_id == item.chunk.stream_id
                and other.chunk.ssn == item.chunk.ssn
                and (other.chunk.unordered == item.chunk.unordered)
            ):
                other.abandoned = True
        self.counters["abandoned"] += 1

    # ------------------------------------------------------------------ output

    def _send_chunks(self, chunks: list[Chunk], vtag: int | None = None) -> None:
        tag = self.remote_vtag if vtag is None else vtag
        self._transmits.append(Packet(PORT, PORT, tag, tuple(chunks)).serialize())

    def _abort(self, reason: str, send: bool = True) -> None:
        if send and self.remote_vtag:
            self._send_chunks([Chunk(ABORT, 0, b"")])
        self.state = "aborted"
        self._t3 = None
        self._queue.clear()
        self._outstanding.clear()
        self._events.append(AssociationAborted(reason))

    def poll_transmit(self) -> bytes | None:
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> SctpEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        return self._t3


__all__ = [
    "AssociationAborted",
    "AssociationEstablished",
    "Channel",
    "ChannelClosed",
    "ChannelOpened",
    "MessageReceived",
    "SctpAssociation",
    "SctpEvent",
]
