"""STUN messages (RFC 8489) with the ICE attributes of RFC 8445 §16.

Only what an ICE-lite server and an ICE client need: Binding requests/responses, short-term credential
MESSAGE-INTEGRITY (§14.5), FINGERPRINT (§14.7), XOR-MAPPED-ADDRESS (§14.2), USERNAME, ERROR-CODE,
PRIORITY, USE-CANDIDATE, ICE-CONTROLLING/ICE-CONTROLLED. Unknown attributes are kept raw.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

from roomcast.wire import ParseError

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
MAX_MESSAGE = 1500
MAX_ATTRIBUTES = 64

BINDING = 0x001
CLASS_REQUEST = 0x000
CLASS_INDICATION = 0x010
CLASS_SUCCESS = 0x100
CLASS_ERROR = 0x110

MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A

_FINGERPRINT_XOR = 0x5354554E


def message_type(method: int, klass: int) -> int:
    """RFC 8489 §5: the class bits are interleaved with the method bits."""
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | klass


def split_type(value: int) -> tuple[int, int]:
    klass = value & 0x0110
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    return method, klass


def is_stun(data: bytes) -> bool:
    """RFC 7983 first byte 0-3, plus the magic cookie (RFC 8489 §5)."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == b"\x21\x12\xa4\x42"


@dataclass(frozen=True, slots=True)
class StunMessage:
    method: int
    klass: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)

    def get(self, attr_type: int) -> bytes | None:
        for kind, value in self.attributes:
            if kind == attr_type:
                return value
        return None

    def has(self, attr_type: int) -> bool:
        return any(kind == attr_type for kind, _ in self.attributes)

    @property
    def username(self) -> str | None:
        value = self.get(USERNAME)
        return value.decode("utf-8", "replace") if value is not None else None

    @property
    def priority(self) -> int | None:
        value = self.get(PRIORITY)
        return struct.unpack("!I", value)[0] if value is not None and len(value) == 4 else None

    @property
    def error_code(self) -> int | None:
        value = self.get(ERROR_CODE)
        if value is None or len(value) < 4:
            return None
        return (value[2] & 0x07) * 100 + value[3]

    def xor_mapped_address(self) -> tuple[str, int] | None:
        value = self.get(XOR_MAPPED_ADDRESS)
        return None if value is None else decode_xor_address(value, self.transaction_id)

    @classmethod
    def parse(cls, data: bytes) -> StunMessage:
        if len(data) < 20:
            raise ParseError("STUN message shorter than its 20-byte header")
        if len(data) > MAX_MESSAGE:
            raise ParseError("STUN message too large")
        kind, length, cookie, tid = HEADER.unpack_from(data)
        if kind & 0xC000:
            raise ParseError("not a STUN message: top bits set")
        if cookie != MAGIC_COOKIE:
            raise ParseError("wrong STUN magic cookie")
        if length % 4 or 20 + length != len(data):
            raise ParseError("STUN length field does not match the datagram")
        attributes: list[tuple[int, bytes]] = []
        pos = 20
        while pos < len(data):
            if len(attributes) >= MAX_ATTRIBUTES:
                raise ParseError("too many STUN attributes")
            if pos + 4 > len(data):
                raise ParseError("truncated STUN attribute header")
            attr_type, attr_len = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + attr_len
            if end > len(data):
                raise ParseError("STUN attribute runs past the end")
            attributes.append((attr_type, data[pos + 4 : end]))
            pos = end + (-attr_len % 4)
        method, klass = split_type(kind)
        return cls(method, klass, tid, tuple(attributes))

    def serialize(self) -> bytes:
        body = b"".join(_attr(kind, value) for kind, value in self.attributes)
        return HEADER.pack(message_type(self.method, self.klass), len(body), MAGIC_COOKIE, self.transaction_id) + body


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\x00" * (-len(value) % 4)


def encode_xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    ip = ipaddress.ip_address(host)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if ip.version == 4:
        return struct.pack("!BBHI", 0, 1, xport, int(ip) ^ MAGIC_COOKIE)
    mask = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
    return struct.pack("!BBH", 0, 2, xport) + (int(ip) ^ mask).to_bytes(16, "big")


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    if len(value) < 8:
        raise ParseError("XOR-MAPPED-ADDRESS too short")
    family = value[1]
    port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    if family == 1 and len(value) == 8:
        return str(ipaddress.IPv4Address(struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE)), port
    if family == 2 and len(value) == 20:
        mask = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
        return str(ipaddress.IPv6Address(int.from_bytes(value[4:20], "big") ^ mask)), port
    raise ParseError("bad XOR-MAPPED-ADDRESS family or length")


def _integrity_input(data: bytes, offset: int) -> bytes:
    """§14.5: hash the message up to MESSAGE-INTEGRITY, with the length set as if it ended after it."""
    header = bytearray(data[:20])
    struct.pack_into("!H", header, 2, offset - 20 + 24)
    return bytes(header) + data[20:offset]


def _find(data: bytes, wanted: int) -> int:
    pos = 20
    while pos + 4 <= len(data):
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        if attr_type == wanted:
            return pos
        pos += 4 + attr_len + (-attr_len % 4)
    return -1


def check_integrity(data: bytes, key: bytes) -> bool:
    """Verify MESSAGE-INTEGRITY (HMAC-SHA1 keyed with the short-term password)."""
    pos = _find(data, MESSAGE_INTEGRITY)
    if pos < 0 or pos + 24 > len(data):
        return False
    expected = hmac.new(key, _integrity_input(data, pos), hashlib.sha1).digest()
    return hmac.compare_digest(expected, data[pos + 4 : pos + 24])


def check_fingerprint(data: bytes) -> bool:
    pos = _find(data, FINGERPRINT)
    if pos < 0 or pos + 8 != len(data):
        return False
    header = bytearray(data[:20])
    struct.pack_into("!H", header, 2, len(data) - 20)
    crc = binascii.crc32(bytes(header) + data[20:pos]) ^ _FINGERPRINT_XOR
    return bool(struct.unpack_from("!I", data, pos + 4)[0] == crc)


def finalize(message: StunMessage, key: bytes | None, fingerprint: bool = True) -> bytes:
    """Serialize, appending MESSAGE-INTEGRITY (if ``key``) and FINGERPRINT, each over what precedes it."""
    data = message.serialize()
    if key is not None:
        body = _integrity_input(data + b"\x00" * 24, len(data))
        digest = hmac.new(key, body, hashlib.sha1).digest()
        data = _with_length(data + _attr(MESSAGE_INTEGRITY, digest))
    if fingerprint:
        provisional = _with_length(data + b"\x00" * 8)
        crc = binascii.crc32(provisional[: len(data)]) ^ _FINGERPRINT_XOR
        data = _with_length(data + _attr(FINGERPRINT, struct.pack("!I", crc)))
    return data


def _with_length(data: bytes) -> bytes:
    out = bytearray(data)
    struct.pack_into("!H", out, 2, len(data) - 20)
    return bytes(out)


def peek_username(data: bytes) -> bytes | None:
    """USERNAME of a STUN message without a full parse (for demultiplexing by ufrag); None if absent/bad."""
    if not is_stun(data):
        return None
    pos = 20
    end = min(len(data), 20 + struct.unpack_from("!H", data, 2)[0])
    while pos + 4 <= end:
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        if attr_type == USERNAME:
            value = data[pos + 4 : pos + 4 + attr_len]
            return value if len(value) == attr_len else None
        pos += 4 + attr_len + (-attr_len % 4)
    return None


def binding_request(
    transaction_id: bytes,
    username: str,
    password: str,
    *,
    priority: int,
    controlling: bool,
    tie_breaker: int,
    use_candidate: bool = False,
) -> bytes:
    """An ICE connectivity check (RFC 8445 §7.1.1), for client roles and tests."""
    attrs: list[tuple[int, bytes]] = [(USERNAME, username.encode()), (PRIORITY, struct.pack("!I", priority))]
    attrs.append((ICE_CONTROLLING if controlling else ICE_CONTROLLED, struct.pack("!Q", tie_breaker)))
    if use_candidate:
        attrs.append((USE_CANDIDATE, b""))
    return finalize(StunMessage(BINDING, CLASS_REQUEST, transaction_id, tuple(attrs)), password.encode())


def binding_success(request: StunMessage, remote: tuple[str, int], password: str) -> bytes:
    attrs = ((XOR_MAPPED_ADDRESS, encode_xor_address(remote[0], remote[1], request.transaction_id)),)
    return finalize(StunMessage(BINDING, CLASS_SUCCESS, request.transaction_id, attrs), password.encode())


def binding_error(request: StunMessage, code: int, reason: str, password: str | None = None) -> bytes:
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()
    message = StunMessage(BINDING, CLASS_ERROR, request.transaction_id, ((ERROR_CODE, value),))
    return finalize(message, password.encode() if password else None)
