"""The room-data envelope carried in one data-channel message (shared by the server and the SDK), and the
:class:`DataFraming` other protocols' clients use in its place (LiveKit's DataPacket: livekit/data.py).

A 2-byte header length, a small JSON header (``t`` topic, ``b`` binary, ``to`` destinations, ``from`` sender,
and for payloads above :data:`CHUNK` the chunk fields ``id``/``i``/``n``), then the payload bytes. The SDK
splits large payloads into chunks that the server forwards one by one, so a message of any size crosses the
server without the server holding it whole. Parsing raises ``ValueError`` only.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Protocol

LABEL_RELIABLE = "_roomcast"  # reliable, ordered
LABEL_LOSSY = "_roomcast_lossy"  # unordered, no retransmissions
CHUNK = 60 * 1024
MAX_HEADER = 4096


def encode_envelope(header: dict[str, Any], payload: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("!H", len(raw)) + raw + payload


def decode_envelope(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < 2:
        raise ValueError("envelope shorter than its header length")
    size = struct.unpack_from("!H", data)[0]
    if size > MAX_HEADER or 2 + size > len(data):
        raise ValueError("envelope header length runs past the message")
    try:
        header = json.loads(data[2 : 2 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("envelope header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("envelope header must be an object")
    return header, data[2 + size :]


class DataFraming(Protocol):
    """How one kind of client frames room data on its channels (the envelope is :data:`ENVELOPE`)."""

    reliable_label: str
    lossy_label: str
    idle_labels: tuple[str, ...]  # its other channels: left open and unused (closing them would alarm it)
    takes_raw: bool  # receives messages only its own kind understands (``raw`` headers)

    def decode(self, data: bytes) -> tuple[dict[str, Any], bytes]:
        """Its message -> envelope header (``t``, ``b``, ``to``, chunk ``id``/``i``/``n``, ``raw``) and payload;
        raises ``ValueError``."""
        ...

    def transcode(self, envelope: bytes, reliable: bool) -> bytes:
        """The room's envelope (``f`` sender, ``t``, ``b``, ``ts``, ...) -> its message."""
        ...

    def refusal(self, code: str, message: str) -> bytes | None:
        """What it is told when a message is refused, if its format can say so."""
        ...


class EnvelopeFraming:
    reliable_label, lossy_label = LABEL_RELIABLE, LABEL_LOSSY
    idle_labels: tuple[str, ...] = ()
    takes_raw = False

    def decode(self, data: bytes) -> tuple[dict[str, Any], bytes]:
        return decode_envelope(data)

    def transcode(self, envelope: bytes, reliable: bool) -> bytes:
        return envelope

    def refusal(self, code: str, message: str) -> bytes | None:
        return encode_envelope({"e": code, "m": message}, b"")


ENVELOPE = EnvelopeFraming()
