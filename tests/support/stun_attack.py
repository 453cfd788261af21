"""Datagrams an off-path attacker can build from the clear-text ICE ufrags alone (issue 12, M1).

Shared by the sans-IO tests and the real-server test so both send the very same bytes.
"""

from __future__ import annotations

import os
import struct

from roomcast.wire.stun import (
    BINDING,
    CLASS_REQUEST,
    ICE_CONTROLLED,
    MESSAGE_INTEGRITY,
    PRIORITY,
    USE_CANDIDATE,
    USERNAME,
    StunMessage,
    finalize,
)


def unsigned_role_conflict(username: str, *, forged_integrity: bool = False, use_candidate: bool = False) -> bytes:
    """A Binding request claiming the controlled role (RFC 8445 §7.3.1.1) without the password: no
    MESSAGE-INTEGRITY, or (``forged_integrity``) twenty random bytes in its place. FINGERPRINT is valid."""
    attrs: list[tuple[int, bytes]] = [
        (USERNAME, username.encode()),
        (PRIORITY, struct.pack("!I", 0x6E0001FF)),
        (ICE_CONTROLLED, os.urandom(8)),
    ]
    if use_candidate:
        attrs.append((USE_CANDIDATE, b""))
    if forged_integrity:
        attrs.append((MESSAGE_INTEGRITY, os.urandom(20)))
    return finalize(StunMessage(BINDING, CLASS_REQUEST, os.urandom(12), tuple(attrs)), None)


def _record(content_type: int, seq: int, body: bytes) -> bytes:
    """A plaintext DTLS 1.2 record of epoch 0 (RFC 6347 §4.1): type, version, epoch, 48-bit seq, length."""
    return struct.pack("!BHH", content_type, 0xFEFD, 0) + seq.to_bytes(6, "big") + struct.pack("!H", len(body)) + body


FRESH_SEQ = 1 << 20  # ahead of any real peer's epoch-0 records: not dropped as a replay (RFC 6347 §4.1.2.6)


def dtls_fatal_alert(seq: int = FRESH_SEQ) -> bytes:
    """A fatal handshake_failure alert (RFC 5246 §7.2): what OpenSSL aborts a handshake on."""
    return _record(21, seq, b"\x02\x28")


def dtls_change_cipher_spec(seq: int = FRESH_SEQ + 1) -> bytes:
    """A 14-byte ChangeCipherSpec record: looks like the start of a resent client flight."""
    return _record(20, seq, b"\x01")
