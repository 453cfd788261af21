"""SRTP/SRTCP (RFC 3711, AEAD-GCM RFC 7714) through libsrtp, keyed from the DTLS handshake (RFC 5764).

Two libsrtp sessions per connection: inbound with a replay window (RFC 3711 §3.3.2), outbound with
``allow_repeat_tx`` so a packet can be protected again when a NACK asks for it (RFC 4585 retransmission
of the very same packet). ``SSRC_ANY_INBOUND``/``ANY_OUTBOUND`` templates create one stream per SSRC on
first use; libsrtp clones the inbound template only after a packet authenticated, so forged SSRCs cost
nothing. Every failure surfaces as :class:`SrtpError`, never as a libsrtp or cffi exception.
"""

from __future__ import annotations

from pylibsrtp import Error, Policy, Session

# DTLS-SRTP profile name (RFC 5764 §4.1.2, RFC 7714 §14.2) -> (libsrtp profile, key+salt length)
_PROFILES: dict[str, tuple[int, int]] = {
    "SRTP_AEAD_AES_128_GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16 + 12),
    "SRTP_AES128_CM_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16 + 14),
}
REPLAY_WINDOW = 1024
"""Packets this far behind the newest are still accepted once (video bursts reorder); libsrtp's default
of 128 drops late retransmissions."""

Packet = bytes | bytearray | memoryview


class SrtpError(ValueError):
    """Authentication failure, replay, or a malformed packet or key: the packet is dropped."""


class SrtpContext:
    """SRTP for one DTLS association: ``local_key`` protects what we send, ``remote_key`` checks what
    we receive (both key || salt, as :class:`roomcast.proto.dtls.HandshakeComplete` gives them)."""

    __slots__ = ("_rx", "_tx", "profile")

    def __init__(self, profile: str, local_key: bytes, remote_key: bytes) -> None:
        spec = _PROFILES.get(profile)
        if spec is None:
            raise SrtpError(f"unsupported SRTP profile {profile!r}")
        libsrtp_profile, key_len = spec
        if len(local_key) != key_len or len(remote_key) != key_len:
            lengths = f"{len(local_key)}/{len(remote_key)}"
            raise SrtpError(f"{profile} needs {key_len}-byte key+salt, got {lengths}")
        self.profile = profile
        try:
            rx = Policy(bytes(remote_key), Policy.SSRC_ANY_INBOUND, srtp_profile=libsrtp_profile)
            rx.window_size = REPLAY_WINDOW
            tx = Policy(bytes(local_key), Policy.SSRC_ANY_OUTBOUND, srtp_profile=libsrtp_profile)
            tx.allow_repeat_tx = True
            tx.window_size = REPLAY_WINDOW
            self._rx = Session(rx)
            self._tx = Session(tx)
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"cannot create SRTP session: {exc}") from None

    def protect(self, rtp: Packet) -> bytes:
        """RTP -> SRTP. The same packet may be protected again (retransmission)."""
        try:
            return self._tx.protect(rtp if type(rtp) is bytes else bytes(rtp))
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"protect failed: {exc}") from None

    def unprotect(self, srtp: Packet) -> bytes:
        """SRTP -> RTP; :class:`SrtpError` on a bad tag, a replay or a malformed packet."""
        try:
            return self._rx.unprotect(srtp if type(srtp) is bytes else bytes(srtp))
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"unprotect failed: {exc}") from None

    def protect_rtcp(self, rtcp: Packet) -> bytes:
        """RTCP (compound) -> SRTCP (RFC 3711 §3.4: encrypted, with index and tag)."""
        try:
            return self._tx.protect_rtcp(rtcp if type(rtcp) is bytes else bytes(rtcp))
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"protect_rtcp failed: {exc}") from None

    def unprotect_rtcp(self, srtcp: Packet) -> bytes:
        """SRTCP -> RTCP; :class:`SrtpError` on a bad tag, a replayed index or a malformed packet."""
        try:
            return self._rx.unprotect_rtcp(srtcp if type(srtcp) is bytes else bytes(srtcp))
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"unprotect_rtcp failed: {exc}") from None
