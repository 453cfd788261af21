import struct

import pytest

from roomcast.wire import ParseError
from roomcast.wire.stun import (
    BINDING,
    CLASS_REQUEST,
    CLASS_SUCCESS,
    USE_CANDIDATE,
    StunMessage,
    binding_request,
    binding_success,
    check_fingerprint,
    check_integrity,
    is_stun,
    message_type,
    peek_username,
    split_type,
)

# RFC 5769 §2.1 sample request (software "STUN test client", password "VOkJxbRl1RmTxUk/WvJxBt")
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff"
    "80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249"
    "c1b571a280280004e57a3bcf"
)


def test_rfc5769_sample_request_integrity_and_fingerprint() -> None:
    msg = StunMessage.parse(RFC5769_REQUEST)
    assert (msg.method, msg.klass) == (BINDING, CLASS_REQUEST)
    assert msg.username == "evtj:h6vY"
    assert msg.priority == 0x6E0001FF
    assert check_integrity(RFC5769_REQUEST, b"VOkJxbRl1RmTxUk/WvJxBt")
    assert not check_integrity(RFC5769_REQUEST, b"wrong")
    assert check_fingerprint(RFC5769_REQUEST)
    assert peek_username(RFC5769_REQUEST) == b"evtj:h6vY"


def test_our_request_and_response_verify() -> None:
    req = binding_request(
        b"\x07" * 12, "srv:cli", "p" * 22, priority=99, controlling=True, tie_breaker=5, use_candidate=True
    )
    assert is_stun(req) and check_integrity(req, b"p" * 22) and check_fingerprint(req)
    parsed = StunMessage.parse(req)
    assert parsed.has(USE_CANDIDATE)
    resp = binding_success(parsed, ("192.0.2.7", 40000), "srvpwd")
    reply = StunMessage.parse(resp)
    assert reply.klass == CLASS_SUCCESS and reply.transaction_id == b"\x07" * 12
    assert reply.xor_mapped_address() == ("192.0.2.7", 40000)
    assert check_integrity(resp, b"srvpwd") and check_fingerprint(resp)


def test_ipv6_xor_mapped_address() -> None:
    req = StunMessage.parse(binding_request(b"\x09" * 12, "a:b", "x", priority=1, controlling=False, tie_breaker=1))
    assert StunMessage.parse(binding_success(req, ("2001:db8::1", 5), "x")).xor_mapped_address() == ("2001:db8::1", 5)


@pytest.mark.parametrize("method", [1, 0x0ABC, 0xFFF])
@pytest.mark.parametrize("klass", [0x000, 0x010, 0x100, 0x110])
def test_type_bits_round_trip(method: int, klass: int) -> None:
    assert split_type(message_type(method, klass)) == (method, klass)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        RFC5769_REQUEST[:24],
        RFC5769_REQUEST[:4] + b"\x00\x00\x00\x00" + RFC5769_REQUEST[8:],  # wrong magic cookie
        RFC5769_REQUEST[:2] + struct.pack("!H", 0x1000) + RFC5769_REQUEST[4:],  # length lies
        RFC5769_REQUEST[:20] + struct.pack("!HH", 6, 0xFFF0) + b"x" * 64,  # attribute runs past the end
    ],
)
def test_malformed_stun_raises_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        StunMessage.parse(data)
