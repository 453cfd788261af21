"""SrtpContext keyed by a real DTLS handshake: round trips, tampering, replay, retransmission, bad input."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from roomcast.proto.common import Addr
from roomcast.proto.dtls import DtlsCertificate, DtlsConnection, HandshakeComplete
from roomcast.proto.srtp import MAX_SRTP_PACKET, REPLAY_WINDOW, SrtpContext, SrtpError
from tests.support.simnet import DtlsEndpoint, SimNetwork

SERVER: Addr = ("10.0.0.1", 7882)
CLIENT: Addr = ("10.0.0.2", 50000)
GCM, CM = "SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"
PROFILES = [GCM, CM]


def dtls_keys(profile: str) -> tuple[SrtpContext, SrtpContext]:
    """(server, client) SRTP contexts from the keys of a handshake that negotiated ``profile``."""
    s_cert, c_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    server = DtlsConnection(
        s_cert,
        role="server",
        remote_fingerprints=[c_cert.fingerprint],
        srtp_profiles=(profile,),
    )
    client = DtlsConnection(c_cert, role="client", remote_fingerprints=[s_cert.fingerprint])
    server.start(0.0)
    client.start(0.0)
    eps = [DtlsEndpoint(SERVER, CLIENT, server), DtlsEndpoint(CLIENT, SERVER, client)]
    net = SimNetwork(seed=1)
    net.link(SERVER, CLIENT)
    assert net.run_until(lambda: len(net.events) == 2, eps, max_time=10)
    contexts = []
    for addr in (SERVER, CLIENT):
        (done,) = net.events_at(addr)
        assert isinstance(done, HandshakeComplete) and done.srtp_profile == profile
        contexts.append(SrtpContext(done.srtp_profile, done.local_key, done.remote_key))
    return contexts[0], contexts[1]


def rtp(seq: int, ssrc: int = 0x1234, size: int = 200) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, ssrc) + bytes([seq & 0xFF]) * size


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHI", 0x81, 201, 7, ssrc) + struct.pack("!IIIIII", 0x5678, 1, 2, 3, 4, 5)


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_rtp_and_rtcp_round_trip_both_ways(profile: str) -> None:
    server, client = dtls_keys(profile)
    for sender, receiver in ((server, client), (client, server)):
        for seq in range(100, 110):
            protected = sender.protect(rtp(seq))
            assert protected[:12] == rtp(seq)[:12]  # the header stays in the clear (RFC 3711 §3.1)
            assert protected[12:212] != rtp(seq)[12:]
            assert len(protected) == len(rtp(seq)) + (16 if profile == GCM else 10)
            assert receiver.unprotect(protected) == rtp(seq)
        protected_rtcp = sender.protect_rtcp(rtcp_rr())
        assert receiver.unprotect_rtcp(protected_rtcp) == rtcp_rr()


def test_a_context_cannot_read_its_own_output(profile: str) -> None:
    server, _ = dtls_keys(profile)
    with pytest.raises(SrtpError):
        server.unprotect(server.protect(rtp(1)))  # local and remote keys differ per RFC 5764 §4.2


@pytest.mark.parametrize("where", [1, 4, 8, 20, -1])  # marker/PT, timestamp, SSRC, payload, tag
def test_tampered_rtp_is_rejected(profile: str, where: int) -> None:
    server, client = dtls_keys(profile)
    tampered = bytearray(server.protect(rtp(5)))
    tampered[where] ^= 0x01
    with pytest.raises(SrtpError):
        client.unprotect(bytes(tampered))
    assert client.unprotect(server.protect(rtp(6))) == rtp(6)  # the context survives


def test_tampered_rtcp_is_rejected(profile: str) -> None:
    server, client = dtls_keys(profile)
    protected = bytearray(server.protect_rtcp(rtcp_rr()))
    protected[10] ^= 0x80
    with pytest.raises(SrtpError):
        client.unprotect_rtcp(bytes(protected))


def test_replayed_rtp_and_rtcp_are_rejected(profile: str) -> None:
    server, client = dtls_keys(profile)
    packet = server.protect(rtp(7))
    assert client.unprotect(packet) == rtp(7)
    with pytest.raises(SrtpError, match="replay"):
        client.unprotect(packet)
    control = server.protect_rtcp(rtcp_rr())
    assert client.unprotect_rtcp(control) == rtcp_rr()
    with pytest.raises(SrtpError, match="replay"):
        client.unprotect_rtcp(control)


def test_the_same_packet_can_be_protected_again_for_retransmission(profile: str) -> None:
    server, client = dtls_keys(profile)
    first = server.protect(rtp(9))
    for later in range(10, 20):
        client.unprotect(server.protect(rtp(later)))
    again = server.protect(rtp(9))  # a NACK asked for it (RFC 4585): same index, same bytes
    assert again == first
    assert client.unprotect(again) == rtp(9)  # lost the first time, so not a replay


def test_reordering_within_the_window_is_accepted_and_older_is_not(profile: str) -> None:
    server, client = dtls_keys(profile)
    protected = {seq: server.protect(rtp(seq)) for seq in range(REPLAY_WINDOW + 200)}
    newest = REPLAY_WINDOW + 199
    assert client.unprotect(protected[newest]) == rtp(newest)
    assert client.unprotect(protected[newest - REPLAY_WINDOW + 10]) == rtp(newest - REPLAY_WINDOW + 10)
    with pytest.raises(SrtpError):
        client.unprotect(protected[newest - REPLAY_WINDOW - 10])


def test_many_ssrcs_share_one_context(profile: str) -> None:
    server, client = dtls_keys(profile)
    for ssrc in (1, 2, 0xFFFFFFFF):
        assert client.unprotect(server.protect(rtp(1, ssrc=ssrc))) == rtp(1, ssrc=ssrc)


def test_bytearray_and_memoryview_inputs_are_accepted(profile: str) -> None:
    server, client = dtls_keys(profile)
    packet = bytearray(rtp(3))
    protected = server.protect(packet)
    assert client.unprotect(memoryview(protected)) == rtp(3)
    assert client.unprotect_rtcp(server.protect_rtcp(bytearray(rtcp_rr()))) == rtcp_rr()


def test_bad_input_raises_srtp_error_only(profile: str) -> None:
    server, client = dtls_keys(profile)
    rng = random.Random(11)
    calls: list[Callable[[bytes], bytes]] = [
        server.protect,
        server.protect_rtcp,
        client.unprotect,
        client.unprotect_rtcp,
    ]
    inputs = [b"", b"\x80", rtp(1)[:11], bytes(8), rtp(1, size=1490), bytes(4000)]
    inputs += [rng.randbytes(rng.randrange(0, 1600)) for _ in range(300)]
    for data in inputs:
        for call in calls[2:]:
            with pytest.raises(SrtpError):
                call(data)
    for data in (b"", b"\x80", rtp(1, size=MAX_SRTP_PACKET), bytes(4000)):
        for call in calls[:2]:
            with pytest.raises(SrtpError):
                call(data)
    with pytest.raises(SrtpError):
        client.unprotect("not bytes")  # type: ignore[arg-type]


def test_wrong_keys_and_mismatched_profiles_fail_authentication() -> None:
    gcm_server, _ = dtls_keys(GCM)
    cm_server, _ = dtls_keys(CM)
    stranger = SrtpContext(GCM, bytes(28), bytes(28))
    with pytest.raises(SrtpError):
        stranger.unprotect(gcm_server.protect(rtp(1)))
    with pytest.raises(SrtpError):
        SrtpContext(CM, bytes(30), bytes(30)).unprotect(gcm_server.protect(rtp(2)))
    with pytest.raises(SrtpError):
        stranger.unprotect(cm_server.protect(rtp(1)))


@pytest.mark.parametrize(
    ("profile_name", "local", "remote"),
    [
        ("SRTP_NULL_NULL", bytes(30), bytes(30)),
        (GCM, bytes(30), bytes(28)),  # a CM-sized key for GCM
        (CM, bytes(30), bytes(31)),
        (CM, b"", b""),
    ],
)
def test_constructor_rejects_unknown_profiles_and_wrong_key_lengths(
    profile_name: str, local: bytes, remote: bytes
) -> None:
    with pytest.raises(SrtpError):
        SrtpContext(profile_name, local, remote)
    assert issubclass(SrtpError, ValueError)


@pytest.mark.parametrize("profile", PROFILES)
def test_protect_rewritten_equals_protecting_a_rewritten_copy_and_leaves_the_source_alone(profile: str) -> None:
    """The in-place fast path (libsrtp's own buffer) and the public-API fallback give the same bytes,
    and the receiver reads exactly the rewritten header."""
    key = bytes(range(28 if profile == GCM else 30))
    other = bytes(reversed(key))
    fast, slow, receiver = (
        SrtpContext(profile, key, other),
        SrtpContext(profile, key, other),
        SrtpContext(profile, other, key),
    )
    slow._in_place = None
    source = struct.pack("!BBHII", 0x80, 96, 7, 1000, 0x1234) + bytes(range(200))
    for seq in (1, 2, 65535):
        wire = fast.protect_rewritten(source, 0x80 | 100, seq, 90000 + seq, 0xAAAA)
        assert wire == slow.protect_rewritten(source, 0x80 | 100, seq, 90000 + seq, 0xAAAA)
        clear = receiver.unprotect(wire)
        assert clear[:12] == struct.pack("!BBHII", 0x80, 0x80 | 100, seq, 90000 + seq, 0xAAAA)
        assert clear[12:] == source[12:]
    assert source[:12] == struct.pack("!BBHII", 0x80, 96, 7, 1000, 0x1234)


def test_protect_rewritten_refuses_what_is_not_rtp() -> None:
    ctx = SrtpContext(GCM, bytes(28), bytes(28))
    with pytest.raises(SrtpError):
        ctx.protect_rewritten(b"\x80\x60\x00", 0x60, 1, 1, 1)
    with pytest.raises(SrtpError):
        ctx.protect_rewritten(bytes(MAX_SRTP_PACKET + 200), 0x60, 1, 1, 1)


TAG = {GCM: 16, CM: 10}


@pytest.mark.parametrize("profile", PROFILES)
def test_packets_as_large_as_encoders_send_are_received_and_forwarded(profile: str) -> None:
    """Issue 21: GStreamer's payloaders fill 1400-byte packets; pylibsrtp alone refuses to protect RTP
    over 1356 bytes (1500-byte buffer less a 144-byte worst-case trailer), so every such packet was
    received but failed to be forwarded or retransmitted. Any packet that unprotects must protect again:
    as itself (an SFU's rewrite), as a retransmission of the same packet, and grown by RTX's 2-byte OSN."""
    key = bytes(range(28 if profile == GCM else 30))
    other = bytes(reversed(key))
    publisher, server, subscriber = (
        SrtpContext(profile, key, other),
        SrtpContext(profile, other, key),
        SrtpContext(profile, key, other),
    )
    plain_subscriber = SrtpContext(profile, key, other)
    plain_subscriber._in_place = None  # the public-API path gets the same buffer
    largest = MAX_SRTP_PACKET - TAG[profile]
    for seq, size in enumerate((1357, 1400, 1472, largest), start=1):
        packet = rtp(seq, size=size - 12)
        clear = server.unprotect(publisher.protect(packet))
        assert clear == packet
        forwarded = server.protect_rewritten(clear, 0x80 | 100, seq, 90000 + seq, 0xAAAA)
        assert subscriber.unprotect(forwarded)[12:] == packet[12:]
        assert server.protect_rewritten(clear, 0x80 | 100, seq, 90000 + seq, 0xAAAA) == forwarded  # a NACK
        rtx = struct.pack("!BBHII", 0x80, 97, seq, 90000 + seq, 0xBBBB) + struct.pack("!H", seq) + clear[12:]
        protected = server.protect(rtx)  # (the largest one's RTX is then too long for any receiver)
        assert len(protected) == len(rtx) + TAG[profile]
        if size < largest:
            assert subscriber.unprotect(protected) == rtx
        assert plain_subscriber.unprotect(forwarded)[12:] == packet[12:]
    too_long = publisher.protect(rtp(99, size=largest - 12)) + b"\x00"
    with pytest.raises(SrtpError, match="more than"):
        server.unprotect(too_long)
    with pytest.raises(SrtpError, match="more than"):
        server.unprotect_rtcp(bytes(MAX_SRTP_PACKET + 1))
