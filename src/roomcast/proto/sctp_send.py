"""The sending half of an SCTP association (RFC 9260 §6.1, §7, RFC 3758 §3.5): queue, window, SACK, T3.

Bounded and without per-send scans (issue 12 C1): the bytes and chunks an association holds are capped
(:class:`SendBufferFull`, counted), every total is kept incrementally, a lifetime is checked only when a
chunk reaches the front of the queue (O(1) per chunk: a chunk behind it cannot be sent or skipped by
FORWARD-TSN earlier anyway), and a SACK walks only the TSNs it can acknowledge.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from roomcast.proto.sctp_receive import RWND
from roomcast.proto.sctp_state import Outgoing, SendBufferFull
from roomcast.wire.sctp import Chunk, DataChunk, Sack, forward_tsn, tsn_gt

FRAGMENT = 1100  # user data per DATA chunk: fits a 1,200-byte DTLS record with headers
PACKET_BUDGET = 1150
MAX_IN_FLIGHT = 256 * 1024
INITIAL_RTO, MIN_RTO, MAX_RTO = 1.0, 0.2, 10.0
MAX_RETRANSMITS = 10  # reliable chunks: give up on the association after this many tries (RFC 9260 §8.1)
MTU = 1200
INITIAL_CWND = 4 * MTU  # RFC 9260 §7.2.1
MAX_BUFFERED = 16 * 1024 * 1024  # what a browser's RTCDataChannel accepts before send() throws
MAX_CHUNKS = 65536
_MASK = 0xFFFFFFFF


class SctpSender:
    def __init__(
        self,
        send_chunks: Callable[[list[Chunk]], None],
        abort: Callable[[str], None],
        counters: Counter[str],
        initial_tsn: int,
        *,
        max_buffered: int = MAX_BUFFERED,
        max_chunks: int = MAX_CHUNKS,
    ) -> None:
        self.send_chunks = send_chunks
        self.abort = abort
        self.counters = counters
        self.max_buffered = max_buffered
        self.max_chunks = max_chunks
        self.next_tsn = initial_tsn
        self.cum_ack = (initial_tsn - 1) & _MASK  # the peer's last cumulative TSN ack
        self.queue: deque[Outgoing] = deque()  # not sent yet, in TSN order
        self.outstanding: OrderedDict[int, Outgoing] = OrderedDict()  # sent or skipped, in TSN order
        self.queued_bytes = 0  # user data held in queue + outstanding, until cumulatively acknowledged
        self.peak_queued_bytes = 0
        self._buffered = 0  # not yet acknowledged nor abandoned (RTCDataChannel.bufferedAmount)
        self._by_stream: Counter[int] = Counter()
        self._flight = 0  # bytes sent, not acknowledged nor abandoned
        self._live = 0  # chunks sent, not acknowledged nor abandoned
        self.peer_rwnd = 0
        self.cwnd = INITIAL_CWND
        self.ssthresh = RWND
        self.rto = INITIAL_RTO
        self.t3: float | None = None

    # ------------------------------------------------------------------ accounting

    def buffered_amount(self, stream_id: int | None = None) -> int:
        return self._buffered if stream_id is None else self._by_stream.get(stream_id, 0)

    def _settle(self, item: Outgoing, *, acked: bool) -> int:
        """Mark ``item`` acknowledged or abandoned; return the bytes that stopped being buffered."""
        if item.acked or item.abandoned:
            return 0
        size = len(item.chunk.user_data)
        self._buffered -= size
        stream = item.chunk.stream_id
        self._by_stream[stream] -= size
        if not self._by_stream[stream]:
            del self._by_stream[stream]
        if item.sent_at is not None:
            self._flight -= size
            self._live -= 1
        if acked:
            item.acked = True
        else:
            item.abandoned = True
        return size

    def _release(self, item: Outgoing) -> None:
        self._settle(item, acked=True)
        self.queued_bytes -= len(item.chunk.user_data)

    def clear(self) -> None:
        self.queue.clear()
        self.outstanding.clear()
        self.queued_bytes = self._buffered = self._flight = self._live = 0
        self._by_stream.clear()
        self.t3 = None

    # ------------------------------------------------------------------ queueing

    def enqueue(
        self,
        stream: int,
        ssn: int,
        ppid: int,
        data: bytes,
        *,
        ordered: bool,
        max_retransmits: int | None,
        expires_at: float | None,
        control: bool = False,
    ) -> None:
        """Queue one message as DATA chunks; raises :class:`SendBufferFull` (nothing queued) over the bound.
        ``control`` (DCEP) messages are tiny and their number is capped by the channel limits: never refused."""
        pieces = [data[i : i + FRAGMENT] for i in range(0, len(data), FRAGMENT)] or [b""]
        held = len(self.queue) + len(self.outstanding)
        if not control and (self.queued_bytes + len(data) > self.max_buffered or held + len(pieces) > self.max_chunks):
            self.counters["send_buffer_full"] += 1
            raise SendBufferFull(
                f"send buffer full: {self.queued_bytes} bytes in {held} chunks queued "
                f"(limits {self.max_buffered} bytes, {self.max_chunks} chunks)"
            )
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            chunk = DataChunk(self.next_tsn, stream, ssn, ppid, piece, not ordered, index == 0, index == last)
            self.next_tsn = (self.next_tsn + 1) & _MASK
            self.queue.append(Outgoing(chunk, max_retransmits, expires_at))
        self.queued_bytes += len(data)
        self._buffered += len(data)
        self._by_stream[stream] += len(data)
        self.peak_queued_bytes = max(self.peak_queued_bytes, self.queued_bytes)

    def flush(self, now: float) -> None:
        """Send what the window allows; skip (abandon) expired chunks as they reach the front."""
        batch: list[Chunk] = []
        size = 0
        skipped = False
        window = min(MAX_IN_FLIGHT, max(self.peer_rwnd, FRAGMENT), max(self.cwnd, FRAGMENT))
        queue, outstanding = self.queue, self.outstanding
        while queue:
            item = queue[0]
            if item.abandoned or (item.expires_at is not None and now > item.expires_at):
                queue.popleft()
                self._settle(item, acked=False)
                outstanding[item.chunk.tsn] = item  # must be skipped with FORWARD-TSN like sent ones
                skipped = True
                continue
            length = len(item.chunk.user_data)
            if self._flight + length > window:
                break
            queue.popleft()
            item.sent_at = now
            outstanding[item.chunk.tsn] = item
            self._flight += length
            self._live += 1
            encoded = item.chunk.chunk()
            if batch and size + len(encoded.value) + 16 > PACKET_BUDGET:
                self.send_chunks(batch)
                batch, size = [], 0
            batch.append(encoded)
            size += len(encoded.value) + 16
        if batch:
            self.send_chunks(batch)
        if skipped:
            self.advance_abandoned()
        if self.t3 is None and self._live:
            self.t3 = now + self.rto

    # ------------------------------------------------------------------ acknowledgements

    def on_sack(self, sack: Sack, now: float) -> None:
        self.peer_rwnd = sack.a_rwnd
        cum = sack.cumulative_tsn
        outstanding = self.outstanding
        acked_bytes = 0
        while outstanding:
            tsn = next(iter(outstanding))
            if tsn_gt(tsn, cum):
                break
            item = outstanding.popitem(last=False)[1]
            if not (item.acked or item.abandoned):
                acked_bytes += len(item.chunk.user_data)
            self._release(item)
        if tsn_gt(cum, self.cum_ack) and not tsn_gt(cum, (self.next_tsn - 1) & _MASK):
            self.cum_ack = cum
        highest = self._gap_ack(sack, outstanding)
        acked_bytes += highest[1]
        if acked_bytes:
            self.rto = max(MIN_RTO, INITIAL_RTO / 2)
            # §7.2.1-2: slow start below ssthresh, then about one MTU per round trip
            self.cwnd += min(acked_bytes, MTU) if self.cwnd <= self.ssthresh else MTU * acked_bytes // max(self.cwnd, 1)
        if highest[0] is not None:
            self._fast_retransmit(highest[0])
        self.advance_abandoned()
        self.t3 = now + self.rto if self._live else None

    def _gap_ack(self, sack: Sack, outstanding: OrderedDict[int, Outgoing]) -> tuple[int | None, int]:
        """Gap blocks, merged and clipped to the outstanding TSNs: a hostile SACK (hundreds of blocks of
        65,535 TSNs each) costs at most one look-up per outstanding chunk. Returns (highest TSN, bytes)."""
        if not sack.gaps or not outstanding:
            return None, 0
        cum = sack.cumulative_tsn
        span = (next(reversed(outstanding)) - cum) & _MASK
        if span == 0 or span >= 0x80000000:
            return None, 0
        ranges = sorted((max(start, 1), min(end, span)) for start, end in sack.gaps if start <= end and start <= span)
        acked = 0
        done = 0  # offsets up to here are handled (ranges may overlap)
        highest: int | None = None
        for start, end in ranges:
            for offset in range(max(start, done + 1), end + 1):
                item = outstanding.get((cum + offset) & _MASK)
                if item is not None:
                    acked += self._settle(item, acked=True)
            done = max(done, end)
            highest = (cum + done) & _MASK
        return highest, acked

    def _fast_retransmit(self, highest: int) -> None:
        """§7.2.4: a chunk reported missing by three SACKs is resent at once, and the window halves."""
        resend: list[Chunk] = []
        for tsn, item in self.outstanding.items():
            if not tsn_gt(highest, tsn):
                break  # TSN order: the rest lie above the highest reported
            if item.acked or item.abandoned:
                continue
            item.misses += 1
            if item.misses == 3:
                resend.append(item.chunk.chunk())
                item.retransmits += 1
        if resend:
            self.ssthresh = max(self.cwnd // 2, 4 * MTU)
            self.cwnd = self.ssthresh
            self.counters["fast_retransmitted"] += len(resend)
            for chunk in resend:
                self.send_chunks([chunk])

    def advance_abandoned(self) -> None:
        """RFC 3758 §3.5: move the peer past abandoned chunks with FORWARD-TSN."""
        point = self.cum_ack
        skipped: dict[int, int] = {}
        abandoned = False
        while True:
            nxt = (point + 1) & _MASK
            item = self.outstanding.get(nxt)
            if item is None or not (item.abandoned or item.acked):
                break
            if item.abandoned:
                abandoned = True
                if not item.chunk.unordered:
                    skipped[item.chunk.stream_id] = item.chunk.ssn
            point = nxt
        if abandoned:
            self.send_chunks([forward_tsn(point, sorted(skipped.items()))])

    # ------------------------------------------------------------------ retransmission

    def on_timeout(self, now: float) -> None:
        """T3-rtx expired (§6.3.3): back off, resend the oldest chunks, abandon what ran out of tries."""
        self.rto = min(MAX_RTO, self.rto * 2)
        self.ssthresh = max(self.cwnd // 2, 4 * MTU)  # §7.2.3: a timeout means congestion
        self.cwnd = MTU
        self.t3 = now + self.rto
        resend: list[Chunk] = []
        size = 0
        for item in list(self.outstanding.values()):
            if item.acked or item.abandoned:
                continue
            item.retransmits += 1
            limit_hit = item.max_retransmits is not None and item.retransmits > item.max_retransmits
            expired = item.expires_at is not None and now > item.expires_at
            if limit_hit or expired:
                self._abandon_message(item)
                continue
            if item.max_retransmits is None and item.retransmits > MAX_RETRANSMITS:
                self.abort("peer stopped acknowledging data")
                return
            encoded = item.chunk.chunk()
            if size + len(encoded.value) + 16 > self.ssthresh:
                break
            resend.append(encoded)
            size += len(encoded.value) + 16
        if resend:
            self.counters["retransmitted"] += len(resend)
            batch: list[Chunk] = []
            used = 0
            for encoded in resend:
                if batch and used + len(encoded.value) + 16 > PACKET_BUDGET:
                    self.send_chunks(batch)
                    batch, used = [], 0
                batch.append(encoded)
                used += len(encoded.value) + 16
            self.send_chunks(batch)
        self.advance_abandoned()
        if not self._live:
            self.t3 = None

    def _abandon_message(self, item: Outgoing) -> None:
        """All fragments of a message go together (RFC 3758 §3.5 rule C3). They have consecutive TSNs:
        the earlier ones are outstanding, the later ones outstanding or at the front of the queue."""
        tsn, chunk = item.chunk.tsn, item.chunk
        while not chunk.beginning:
            tsn = (tsn - 1) & _MASK
            earlier = self.outstanding.get(tsn)
            if earlier is None:
                break
            self._settle(earlier, acked=False)
            chunk = earlier.chunk
        self._settle(item, acked=False)
        tsn, chunk = item.chunk.tsn, item.chunk
        while not chunk.ending:
            tsn = (tsn + 1) & _MASK
            later = self.outstanding.get(tsn)
            if later is None:
                self._abandon_unsent_from_front(tsn)
                break
            self._settle(later, acked=False)
            chunk = later.chunk
        self.counters["abandoned"] += 1

    def _abandon_unsent_from_front(self, tsn: int) -> None:
        """Mark the message's unsent fragments (from ``tsn``); :meth:`flush` moves them to outstanding."""
        for queued in self.queue:  # stops at the message's last fragment
            if queued.chunk.tsn != tsn:
                break
            self._settle(queued, acked=False)
            if queued.chunk.ending:
                break
            tsn = (tsn + 1) & _MASK
