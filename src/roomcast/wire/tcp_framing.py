"""RFC 4571 framing: datagrams over a TCP stream, each one prefixed by its 16-bit length (network order).

ICE over TCP (RFC 6544 §3) carries STUN, DTLS, SRTP and SCTP-over-DTLS this way, so after the framing
everything is the same demultiplexing as on the UDP port. :class:`FrameDecoder` is sans-IO: bytes in, in
whatever pieces the socket hands them over, whole frames out. A frame longer than ``max_frame`` is refused
before any of it is buffered, so a peer costs at most ``max_frame + 1`` bytes of buffer.
"""

from __future__ import annotations

from roomcast.wire import ParseError

MAX_FRAME = 65535  # what the 16-bit length can say
PREFIX = 2


class FramingError(ParseError):
    """The stream broke the framing (a frame over the limit, or an empty one): the connection must close."""


def encode_frame(data: bytes | bytearray | memoryview) -> bytes:
    """One datagram as an RFC 4571 frame."""
    size = len(data)
    if not 0 < size <= MAX_FRAME:
        raise FramingError(f"cannot frame {size} bytes (1..{MAX_FRAME})")
    return size.to_bytes(2, "big") + bytes(data)


class FrameDecoder:
    """Reassembles frames from stream reads of any size; after a :class:`FramingError` it refuses all input."""

    __slots__ = ("_buffer", "broken", "frames_in", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 0 < max_frame <= MAX_FRAME:
            raise ValueError(f"max_frame must be 1..{MAX_FRAME}")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self.broken = False
        self.frames_in = 0

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data`` (any piece of the stream) and return every frame it completed, in order.

        Raises :class:`FramingError` on a zero-length frame (RFC 4571 allows it, but nothing ICE carries is
        empty: a stream of them is only a way to spend our CPU) or one longer than ``max_frame``.
        """
        if self.broken:
            raise FramingError("the stream already broke its framing")
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= PREFIX:
            size = (buffer[offset] << 8) | buffer[offset + 1]
            if size == 0 or size > self.max_frame:
                self.broken = True
                buffer.clear()
                raise FramingError(f"frame of {size} bytes (limit {self.max_frame})")
            if end - offset - PREFIX < size:
                break
            start = offset + PREFIX
            frames.append(bytes(buffer[start : start + size]))
            offset = start + size
        if offset:
            del buffer[:offset]
        self.frames_in += len(frames)
        return frames
