"""The receiving half of an SCTP association (RFC 9260 §6.2, RFC 3758 §3.6): TSN bookkeeping,
reassembly of fragments, per-stream ordering, FORWARD-TSN, and the SACKs that report it all. Bounded:
out-of-order TSNs and buffered fragments are capped (docs/security.md B6).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from roomcast.proto.sctp_state import Inbound
from roomcast.wire.sctp import Chunk, DataChunk, Sack, parse_forward_tsn, tsn_gt

RWND = 1024 * 1024


class SctpReceiver:
    def __init__(
        self,
        max_message_size: int,
        deliver: Callable[[int, int, bytes], None],
        abort: Callable[[str], None],
        counters: Counter[str],
    ) -> None:
        self.max_message_size = max_message_size
        self.deliver = deliver
        self.abort = abort
        self.counters = counters
        self.cum_tsn: int | None = None
        self.ahead: set[int] = set()
        self.inbound = Inbound()
        self.duplicates: list[int] = []

    def reset_stream(self, stream: int) -> None:
        self.inbound.expected_ssn.pop(stream, None)

    def on_data(self, chunk: DataChunk) -> None:
        cum = self.cum_tsn
        if cum is None:
            return
        if not tsn_gt(chunk.tsn, cum) or chunk.tsn in self.ahead:
            self.duplicates.append(chunk.tsn)
            self.counters["duplicate"] += 1
            return
        if len(self.ahead) > 4096 or self.inbound.buffered + len(chunk.user_data) > 2 * self.max_message_size + RWND:
            self.counters["receive_window_exceeded"] += 1
            return
        self.ahead.add(chunk.tsn)
        while ((cum + 1) & 0xFFFFFFFF) in self.ahead:
            cum = (cum + 1) & 0xFFFFFFFF
            self.ahead.discard(cum)
        self.cum_tsn = cum
        if chunk.beginning and chunk.ending:
            self._message(chunk.stream_id, chunk.ssn, chunk.unordered, chunk.ppid, chunk.user_data)
            return
        self.inbound.fragments[chunk.tsn] = chunk
        self.inbound.buffered += len(chunk.user_data)
        self._reassemble(chunk.tsn)

    def _reassemble(self, tsn: int) -> None:
        frags = self.inbound.fragments
        start = tsn
        while not frags[start].beginning:
            prev = (start - 1) & 0xFFFFFFFF
            if prev not in frags or frags[prev].stream_id != frags[tsn].stream_id:
                return
            start = prev
        parts = []
        cursor = start
        while True:
            if cursor not in frags:
                return
            parts.append(frags[cursor])
            if frags[cursor].ending:
                break
            cursor = (cursor + 1) & 0xFFFFFFFF
        size = sum(len(p.user_data) for p in parts)
        for p in parts:
            del frags[p.tsn]
        self.inbound.buffered -= size
        if size > self.max_message_size:
            self.counters["message_too_large"] += 1
            self.abort(f"message of {size} bytes exceeds max-message-size {self.max_message_size}")
            return
        first = parts[0]
        self._message(first.stream_id, first.ssn, first.unordered, first.ppid, b"".join(p.user_data for p in parts))

    def _message(self, stream: int, ssn: int, unordered: bool, ppid: int, data: bytes) -> None:
        inbound = self.inbound
        if unordered:
            self.deliver(stream, ppid, data)
            return
        expected = inbound.expected_ssn.get(stream, 0)
        if ssn != expected:
            if ((ssn - expected) & 0xFFFF) < 0x8000:
                inbound.ordered_ready[(stream, ssn)] = (ppid, data)
            return
        self.deliver(stream, ppid, data)
        expected = (expected + 1) & 0xFFFF
        while (stream, expected) in inbound.ordered_ready:
            ppid, data = inbound.ordered_ready.pop((stream, expected))
            self.deliver(stream, ppid, data)
            expected = (expected + 1) & 0xFFFF
        inbound.expected_ssn[stream] = expected

    def on_forward_tsn(self, chunk: Chunk) -> None:
        new_cum, streams = parse_forward_tsn(chunk)
        if self.cum_tsn is None or not tsn_gt(new_cum, self.cum_tsn):
            return
        self.cum_tsn = new_cum
        self.ahead = {t for t in self.ahead if tsn_gt(t, new_cum)}
        while ((self.cum_tsn + 1) & 0xFFFFFFFF) in self.ahead:
            self.cum_tsn = (self.cum_tsn + 1) & 0xFFFFFFFF
            self.ahead.discard(self.cum_tsn)
        for tsn in [t for t in self.inbound.fragments if not tsn_gt(t, new_cum)]:
            self.inbound.buffered -= len(self.inbound.fragments.pop(tsn).user_data)
        for stream, ssn in streams:
            current = self.inbound.expected_ssn.get(stream, 0)
            target = (ssn + 1) & 0xFFFF
            span = (target - current) & 0xFFFF
            if span == 0 or span >= 0x8000:
                continue
            for key in [k for k in self.inbound.ordered_ready if k[0] == stream and ((k[1] - current) & 0xFFFF) < span]:
                del self.inbound.ordered_ready[key]
            self._message_flush(stream, target)

    def _message_flush(self, stream: int, expected: int) -> None:
        self.inbound.expected_ssn[stream] = expected
        while (stream, expected) in self.inbound.ordered_ready:
            ppid, data = self.inbound.ordered_ready.pop((stream, expected))
            self.deliver(stream, ppid, data)
            expected = (expected + 1) & 0xFFFF
        self.inbound.expected_ssn[stream] = expected

    def sack(self) -> Chunk:
        assert self.cum_tsn is not None
        cum = self.cum_tsn
        offsets = sorted((t - cum) & 0xFFFFFFFF for t in self.ahead)
        gaps: list[tuple[int, int]] = []
        for off in offsets[:512]:
            if gaps and off == gaps[-1][1] + 1:
                gaps[-1] = (gaps[-1][0], off)
            else:
                gaps.append((off, off))
        dups, self.duplicates = tuple(self.duplicates[:32]), []
        free = max(0, RWND - self.inbound.buffered)
        return Sack(cum, free, tuple(gaps[:64]), dups).chunk()
