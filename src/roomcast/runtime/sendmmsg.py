"""Send every datagram one input caused in one ``sendmmsg`` (the SFU's fan-out), when the native helper is built.

A publisher packet reaching the endpoint becomes N datagrams, one per subscriber. With the optional C
extension (``_sendmmsg``, built by pip when a compiler exists) the endpoint queues them in a
:class:`DatagramBatch` while it handles that input, and each forwarded copy is rewritten and SRTP-protected
straight into the batch (``add_rewritten``: the same libsrtp session through the function pointer pylibsrtp
exports, so the bytes are those :meth:`~roomcast.proto.srtp.SrtpContext.protect_rewritten` makes); at the
end one ``sendmmsg`` hands them all to the kernel, in the order they were queued. Without the extension,
or with ``ROOMCAST_SENDMMSG=0``, each datagram leaves at once through the asyncio transport (``sendto``).

Nothing is lost silently (docs/security.md O2). A short count is resumed where the kernel stopped. When
the socket would block (``EAGAIN``) the rest goes through the transport, which queues it and writes it when
the socket drains (``deferred``, not a drop); if the transport already holds a queue, the whole batch goes behind it so
the order per destination stays the order of sending. A datagram the kernel refuses (``EMSGSIZE``,
``EPERM``...) is dropped and counted (``send_error``) and the rest still leaves; on a closed transport every
queued datagram is counted as ``send_closed``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

from roomcast.proto.common import Addr


def _load() -> ModuleType | None:
    try:
        from roomcast.runtime import _sendmmsg  # type: ignore[attr-defined]  # optional C extension
    except ImportError:
        return None
    return _sendmmsg  # type: ignore[no-any-return]


native: ModuleType | None = _load()
"""The C extension, or ``None`` when it was not built (no compiler at install): the ``sendto`` path."""


def _nothing_queued() -> int:
    return 0


def enabled() -> bool:
    """Whether new endpoints batch: the extension is there and ``ROOMCAST_SENDMMSG`` is not ``0``."""
    return native is not None and os.environ.get("ROOMCAST_SENDMMSG", "1") != "0"


class DatagramBatch:
    """The datagrams queued while the endpoint handles one input; :meth:`flush` sends them."""

    __slots__ = ("_add", "_batch", "_fd", "_queued", "deferred", "drops", "native_add_rewritten", "transport")

    def __init__(self, transport: asyncio.DatagramTransport, drops: Counter[str]) -> None:
        assert native is not None
        sock = transport.get_extra_info("socket")
        family = sock.family if sock is not None else socket.AF_INET
        self._batch: Any = native.Batch(int(family))
        self._fd: int = sock.fileno() if sock is not None else -1
        self._add = self._batch.add
        # the C method itself: (protect, srtp_t, packet, b1, seq, ts, ssrc, twcc_at, twcc, host, port) -> libsrtp
        # status; the endpoint calls it with SrtpContext.native_protect's addresses (UdpEndpoint._batch_sender)
        self.native_add_rewritten: Callable[..., int] = self._batch.add_rewritten
        self.transport = transport
        # bytes the transport itself still holds (asyncio's and uvloop's datagram transports both say)
        self._queued: Callable[[], int] = getattr(transport, "get_write_buffer_size", _nothing_queued)
        self.drops = drops  # the endpoint's: send_error and send_closed are drops like any other
        self.deferred = 0  # datagrams handed to the transport's queue because the socket would block

    @property
    def calls(self) -> int:
        """``sendmmsg`` system calls made so far."""
        return int(self._batch.calls)

    def __len__(self) -> int:
        return len(self._batch)

    def add(self, data: bytes | bytearray, remote: Addr) -> None:
        """Queue one finished datagram (copied: the caller may reuse its buffer)."""
        try:
            self._add(data, remote[0], remote[1])
        except ValueError:  # not a numeric address of the socket's family: the kernel would refuse it too
            self.drops["send_error"] += 1

    def flush(self) -> None:
        """Send everything queued (see the module docstring for what a short count or an error does)."""
        batch = self._batch
        count = len(batch)
        if not count:
            return
        transport = self.transport
        try:
            if transport.is_closing() or self._fd < 0:
                self.drops["send_closed"] += count
                return
            start = 0
            if self._queued() == 0:
                start = self._send_native(count)
            if start < count:
                self._defer(start, count)
        finally:
            batch.clear()

    def _send_native(self, count: int) -> int:
        """Send from slot 0 until done or the socket would block; returns the first slot not sent."""
        send, fd = self._batch.send, self._fd
        start = 0
        while start < count:
            try:
                start += send(fd, start)
            except BlockingIOError:
                return start
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EBADF:  # the socket went away under the transport
                    self.drops["send_closed"] += count - start
                    return count
                self.drops["send_error"] += 1  # the kernel refused this one datagram: the rest still go
                start += 1
        return count

    def _defer(self, start: int, count: int) -> None:
        """Slots ``start`` on through the transport's own queue (it writes them when the socket drains)."""
        self.deferred += count - start
        datagram, sendto = self._batch.datagram, self.transport.sendto
        for i in range(start, count):
            data, remote = datagram(i)
            sendto(data, remote)
