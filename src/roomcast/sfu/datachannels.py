"""Room data over server-terminated data channels: who may send, to whom, how fast, how much.

Each participant opens two channels to the server on its ``$data`` connection: ``_roomcast`` (reliable,
ordered) and ``_roomcast_lossy`` (unordered, no retransmissions). A message is one SCTP message holding
an envelope: a 2-byte header length, a small JSON header, then the payload bytes. The SDK splits
payloads above :data:`CHUNK` into numbered chunks (``id``/``i``/``n``) that the server forwards one by
one, so a message of any size crosses the server without the server holding it whole.

What the server holds for one receiver is bounded twice (issue 12 C1): the router stops sending to a
receiver holding more than :data:`RECEIVER_BACKLOG` (counted drop), and the association refuses anything
past :data:`SEND_BUFFER`. Only one channel of each label is accepted (:data:`CHANNEL_LIMITS`) and the
chat history is replayed once per participant. A participant without canSubscribe receives no room data,
only the server's answers to what it sends (M3).

Another protocol's clients (LiveKit's ``DataPacket`` on ``_reliable``/``_lossy``) join the same router with
a :class:`DataFraming`: it names their labels, turns what they send into the envelope's header and payload,
and what the room sends (always an envelope here) into their format, so every client hears every other.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from roomcast.proto.sctp import ChannelClosed, ChannelOpened, ChannelRefused, MessageReceived, SctpEvent, SendBufferFull
from roomcast.proto.webrtc import WebRtcTransport
from roomcast.wire.envelope import (
    CHUNK,
    ENVELOPE,
    LABEL_LOSSY,
    LABEL_RELIABLE,
    DataFraming,
    encode_envelope,
)

MAX_ENVELOPE = 64 * 1024 + 1024
RECEIVER_BACKLOG = 4 * 1024 * 1024
SEND_BUFFER, SEND_CHUNKS = 2 * RECEIVER_BACKLOG, 8192  # the association's hard bound per participant
CHANNEL_LIMITS = {LABEL_RELIABLE: 1, LABEL_LOSSY: 1}  # what a $data association may open, at once
HISTORY = 50
RATE_MESSAGES, RATE_BYTES = 200.0, 8 * 1024 * 1024.0  # per second per participant; bursts of twice that


@dataclass(eq=False)
class DataParticipant:
    owner: str
    identity: str
    transport: WebRtcTransport
    can_publish_data: bool
    room_admin: bool = False
    can_subscribe: bool = True
    history_sent: bool = False  # the chat history goes to each participant once, whatever it reopens
    reliable: int | None = None
    lossy: int | None = None
    tokens: float = 2 * RATE_MESSAGES
    byte_tokens: float = 2 * RATE_BYTES
    refilled: float = 0.0
    warned: float = -1e9
    pending: list[bytes] = field(default_factory=list)  # reliable messages that arrived before its channel opened
    pending_bytes: int = 0
    framing: DataFraming = ENVELOPE

    def allow(self, size: int, now: float) -> bool:
        elapsed = max(0.0, now - self.refilled)
        self.refilled = now
        self.tokens = min(2 * RATE_MESSAGES, self.tokens + elapsed * RATE_MESSAGES)
        self.byte_tokens = min(2 * RATE_BYTES, self.byte_tokens + elapsed * RATE_BYTES)
        if self.tokens < 1 or self.byte_tokens < size:
            return False
        self.tokens -= 1
        self.byte_tokens -= size
        return True


@dataclass
class DataRouter:
    room: str
    wall_clock: Callable[[], float]
    participants: dict[str, DataParticipant] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    history: deque[bytes] = field(default_factory=lambda: deque(maxlen=HISTORY))
    # Sending on *another* participant's association queues DTLS records and arms its SCTP timer: the
    # runtime must flush that connection and reschedule its timer (set by the composition root).
    on_output: Callable[[WebRtcTransport], None] = lambda transport: None
    # App rules per topic (set by the composition root): (identity, topic, room admin?, now) → None to
    # allow, or (error code, reason) to refuse.
    authorize: Callable[[str, str | None, bool, float], tuple[str, str] | None] = lambda *args: None

    def add(
        self,
        owner: str,
        identity: str,
        transport: WebRtcTransport,
        can_publish_data: bool,
        room_admin: bool = False,
        can_subscribe: bool = True,
        framing: DataFraming = ENVELOPE,
    ) -> None:
        old = self.participants.get(owner)
        if old is not None and old.transport is transport:  # a re-offer (ICE restart): same channels
            old.can_publish_data, old.room_admin, old.can_subscribe = can_publish_data, room_admin, can_subscribe
            return
        p = DataParticipant(owner, identity, transport, can_publish_data, room_admin, can_subscribe, framing=framing)
        p.history_sent = old is not None and old.history_sent
        self.participants[owner] = p

    def remove(self, owner: str) -> None:
        self.participants.pop(owner, None)

    def on_event(self, owner: str, event: SctpEvent, now: float) -> None:
        p = self.participants.get(owner)
        if p is None:
            return
        if isinstance(event, ChannelOpened):
            self._opened(p, event)
        elif isinstance(event, ChannelRefused):
            self.counters["data_dropped_channel_refused"] += 1
        elif isinstance(event, ChannelClosed):
            if event.stream_id == p.reliable:
                p.reliable = None
            if event.stream_id == p.lossy:
                p.lossy = None
        elif isinstance(event, MessageReceived):
            self._route(p, event.stream_id, event.data, now)

    def _opened(self, p: DataParticipant, event: ChannelOpened) -> None:
        stream = event.stream_id
        framing = p.framing
        if event.label == framing.reliable_label and p.reliable is None:
            p.reliable = stream
            if p.can_subscribe and not p.history_sent:  # late joiners get the recent reliable messages
                p.history_sent = True
                held = {id(envelope) for envelope in p.pending}
                for past in self.history:
                    if id(past) not in held and not self._send(p, stream, past):
                        break
            for envelope in p.pending:
                self._send(p, stream, envelope)
            p.pending, p.pending_bytes = [], 0
        elif event.label == framing.lossy_label and p.lossy is None:
            p.lossy = stream
        elif event.label in framing.idle_labels:
            pass
        else:  # the association's CHANNEL_LIMITS refuse these first; kept for any other association
            self.counters["data_dropped_channel_refused"] += 1
            sctp = p.transport.sctp
            if sctp is not None:
                sctp.close_channel(stream)
                self.on_output(p.transport)

    def _refuse(self, p: DataParticipant, code: str, message: str, now: float) -> None:
        self.counters["data_dropped_" + code] += 1
        if p.reliable is not None and (code == "permission_denied" or now - p.warned >= 1.0):
            p.warned = now  # floods are told at most once a second; refusals of a grant always
            told = p.framing.refusal(code, message)
            if told is not None:
                self._send(p, p.reliable, told, framed=True)

    def _route(self, p: DataParticipant, stream: int, data: bytes, now: float) -> None:
        reliable = stream == p.reliable
        if not reliable and stream != p.lossy:
            self.counters["data_dropped_unknown_channel"] += 1
            return
        self.counters["data_messages_in"] += 1
        self.counters["data_bytes_in"] += len(data)
        if not p.can_publish_data:
            self._refuse(p, "permission_denied", "token lacks the canPublishData grant", now)
            return
        if len(data) > MAX_ENVELOPE:
            self._refuse(p, "data_too_large", f"messages are split in chunks of at most {CHUNK} bytes", now)
            return
        if not p.allow(len(data), now):
            self._refuse(p, "rate_limited", f"over {RATE_MESSAGES:g} messages or {RATE_BYTES:g} bytes per second", now)
            return
        try:
            header, payload = p.framing.decode(data)
        except ValueError as exc:
            self._refuse(p, "invalid_message", str(exc), now)
            return
        topic = _str(header.get("t"))
        refusal = self.authorize(p.identity, topic, p.room_admin, now)
        if refusal is not None:
            self._refuse(p, refusal[0], refusal[1], now)
            return
        out = {"f": p.identity, "t": topic, "b": bool(header.get("b", True)), "ts": self.wall_clock()}
        for key in ("id", "i", "n"):
            if isinstance(header.get(key), int | str):
                out[key] = header[key]
        raw = bool(header.get("raw"))
        if raw:
            out["raw"] = 1
        envelope = encode_envelope(out, payload)
        wanted = header.get("to")
        targets = [q for q in self.participants.values() if q is not p and q.can_subscribe]
        if isinstance(wanted, list):
            names = {str(w) for w in wanted[:256]}
            targets = [q for q in targets if q.identity in names]
        for q in targets:
            if raw and not q.framing.takes_raw:
                self.counters["data_dropped_not_bridged"] += 1  # e.g. LiveKit RPC to a Roomcast client
                continue
            target_stream = q.reliable if reliable else q.lossy
            if target_stream is None:
                if reliable and len(q.pending) < 256 and q.pending_bytes + len(envelope) <= RECEIVER_BACKLOG:
                    q.pending.append(envelope)  # its channel is still opening: hold it, bounded
                    q.pending_bytes += len(envelope)
                else:
                    self.counters["data_dropped_no_channel"] += 1
                continue
            self._send(q, target_stream, envelope)
        if reliable and out["t"] == "chat" and "n" not in out and wanted is None and not raw:
            self.history.append(envelope)

    def _send(self, q: DataParticipant, stream: int, envelope: bytes, framed: bool = False) -> bool:
        """Every message to a participant comes here (an envelope, in its framing unless ``framed``): a receiver
        holding too much gets a counted drop."""
        sctp = q.transport.sctp
        if sctp is not None and sctp.queued_bytes > RECEIVER_BACKLOG:
            self.counters["data_dropped_receiver_backlog"] += 1  # a slow receiver never grows our memory
            return False
        if not framed:
            try:
                envelope = q.framing.transcode(envelope, stream == q.reliable)
            except ValueError:
                self.counters["data_dropped_not_bridged"] += 1
                return False
        try:
            q.transport.send_message(stream, envelope)
        except SendBufferFull:
            self.counters["data_dropped_receiver_backlog"] += 1
            return False
        except (ValueError, ConnectionError):
            self.counters["data_dropped_send_failed"] += 1
            return False
        self.on_output(q.transport)
        self.counters["data_messages_out"] += 1
        self.counters["data_bytes_out"] += len(envelope)
        return True

    def buffers(self) -> dict[str, dict[str, int]]:
        """Per participant: bytes its association holds now, at most so far, its bound, open channels."""
        out: dict[str, dict[str, int]] = {}
        for p in self.participants.values():
            sctp = p.transport.sctp
            if sctp is not None:
                out[p.identity] = {
                    "queued": sctp.queued_bytes,
                    "peak": sctp.peak_queued_bytes,
                    "limit": sctp.max_buffered,
                    "channels": len(sctp.channels),
                }
        return out


def _str(value: object) -> str | None:
    return value[:128] if isinstance(value, str) else None
