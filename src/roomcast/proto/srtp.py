"""SRTP/SRTCP (RFC 3711, AEAD-GCM RFC 7714) through libsrtp, keyed from the DTLS handshake (RFC 5764).

Two libsrtp sessions per connection: inbound with replay protection (RFC 3711 §3.3.2), outbound with
``allow_repeat_tx`` so a packet can be protected again when a NACK asks for it.
"""

from __future__ import annotations

from pylibsrtp import Error, Policy, Session

_PROFILES = {
    "SRTP_AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "SRTP_AES128_CM_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
}
REPLAY_WINDOW = 1024


class SrtpError(ValueError):
    """Authentication failure, replay, or a malformed packet: the packet is dropped."""


class SrtpContext:
    __slots__ = ("_rx", "_tx", "profile")

    def __init__(self, profile: str, local_key: bytes, remote_key: bytes) -> None:
        libsrtp_profile = _PROFILES.get(profile)
        if libsrtp_profile is None:
            raise ValueError(f"unsupported SRTP profile {profile!r}")
        self.profile = profile
        rx = Policy(key=remote_key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=libsrtp_profile)
        rx.window_size = REPLAY_WINDOW
        tx = Policy(key=local_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=libsrtp_profile)
        tx.allow_repeat_tx = True
        tx.window_size = REPLAY_WINDOW
        self._rx = Session(rx)
        self._tx = Session(tx)

    def protect(self, rtp: bytes | bytearray) -> bytes:
        try:
            return self._tx.protect(bytes(rtp))
        except Error as exc:
            raise SrtpError(f"protect failed: {exc}") from None

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return self._rx.unprotect(srtp)
        except Error as exc:
            raise SrtpError(f"unprotect failed: {exc}") from None

    def protect_rtcp(self, rtcp: bytes | bytearray) -> bytes:
        try:
            return self._tx.protect_rtcp(bytes(rtcp))
        except Error as exc:
            raise SrtpError(f"protect_rtcp failed: {exc}") from None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            return self._rx.unprotect_rtcp(srtcp)
        except Error as exc:
            raise SrtpError(f"unprotect_rtcp failed: {exc}") from None
