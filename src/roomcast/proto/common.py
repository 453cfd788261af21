"""Types shared by every sans-IO machine in :mod:`roomcast.proto`."""

from __future__ import annotations

from dataclasses import dataclass

Addr = tuple[str, int]
"""A transport address as asyncio gives it: ``(host, port)``."""


@dataclass(frozen=True, slots=True)
class Transmit:
    """A datagram a machine wants sent; the runtime layer does the sending."""

    remote: Addr
    data: bytes
