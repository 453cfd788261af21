"""The room-data envelope carried in one data-channel message (shared by the server and the SDK).

A 2-byte header length, a small JSON header (``t`` topic, ``b`` binary, ``to`` destinations, ``from`` sender,
and for payloads above :data:`CHUNK` the chunk fields ``id``/``i``/``n``), then the payload bytes. The SDK
splits large payloads into chunks that the server forwards one by one, so a message of any size crosses the
server without the server holding it whole. Parsing raises ``ValueError`` only.
"""

from __future__ import annotations

import json
import struct
from typing import Any

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
