"""O5 for an authenticated peer (tests/security/test_authenticated_media.py found both): its RTCP has a
byte budget checked before SRTCP or parsing, and at most MAX_INBOUND_SSRCS SSRCs get a libsrtp stream.
Fake clock, datagrams handed over by hand."""

from __future__ import annotations

import struct

from roomcast.proto.webrtc import MAX_INBOUND_SSRCS, RTCP_BURST, RTCP_RATE, WebRtcTransport
from tests.proto.test_ice_restart import CLIENT, connected_pair


def protected_rtp(client: WebRtcTransport, ssrc: int, seq: int) -> bytes:
    assert client.srtp is not None
    return client.srtp.protect(struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + bytes(20))


def test_rtcp_past_its_byte_budget_is_dropped_before_any_work_then_refills() -> None:
    server, client = connected_pair()
    assert client.srtp is not None
    got: list[bytes] = []
    server.on_rtcp = got.append
    nack = struct.pack("!BBHII", 0x81, 205, 2 + 256, 1, 2) + struct.pack("!HH", 0, 0xFFFF) * 256
    packets = [client.srtp.protect_rtcp(nack) for _ in range(200)]  # each its own SRTCP index
    fits = RTCP_BURST // len(packets[0])
    for packet in packets[: fits + 50]:
        server.handle_datagram(packet, CLIENT, 1.0)  # a burst: no time passes
    assert len(got) == fits and server.counters["rtcp_rate_limited"] == 50
    assert server.counters["srtp_unprotect_failed"] == 0  # refused before SRTCP, not by it
    refill = len(packets[0]) / RTCP_RATE
    server.handle_datagram(client.srtp.protect_rtcp(nack), CLIENT, 1.0 + 1.01 * refill)
    assert len(got) == fits + 1  # the budget refills at RTCP_RATE


def test_only_max_inbound_ssrcs_get_a_libsrtp_stream() -> None:
    server, client = connected_pair()
    got: list[bytes] = []
    server.on_rtp = got.append
    for ssrc in range(1, MAX_INBOUND_SSRCS + 101):
        server.handle_datagram(protected_rtp(client, ssrc, 1), CLIENT, 1.0)
    assert len(got) == MAX_INBOUND_SSRCS and server.counters["srtp_ssrc_limit"] == 100
    server.handle_datagram(protected_rtp(client, 1, 2), CLIENT, 1.0)  # a known SSRC still flows
    assert len(got) == MAX_INBOUND_SSRCS + 1
    bad = bytearray(protected_rtp(client, 99_999, 1))
    bad[-1] ^= 0xFF
    server.handle_datagram(bytes(bad), CLIENT, 1.0)  # failed authentication takes no slot either
    assert server.counters["srtp_ssrc_limit"] == 101
