"""SRTP/SRTCP (RFC 3711, AEAD-GCM RFC 7714) through libsrtp, keyed from the DTLS handshake (RFC 5764).

Two libsrtp sessions per connection: inbound with a replay window (RFC 3711 §3.3.2), outbound with
``allow_repeat_tx`` so a packet can be protected again when a NACK asks for it (RFC 4585 retransmission
of the very same packet). ``SSRC_ANY_INBOUND``/``ANY_OUTBOUND`` templates create one stream per SSRC on
first use; libsrtp clones the inbound template only after a packet authenticated, so forged SSRCs cost
nothing. Every failure surfaces as :class:`SrtpError`, never as a libsrtp or cffi exception.

:meth:`SrtpContext.protect_rewritten` is the SFU's hot path: it copies the source packet straight into
libsrtp's working buffer, rewrites the header there and protects it, instead of building a rewritten
copy, converting it to ``bytes`` and having pylibsrtp copy it again (2.8 -> 1.3 µs per packet here).
It reaches into pylibsrtp's session (its cffi buffer and ``srtp_t``); if a pylibsrtp release changes
those, the context falls back to the public API with identical output (tests compare both).

Packet sizes: pylibsrtp's working buffer is 1500 bytes and ``protect`` keeps 144 of them free for the
largest possible trailer (16-byte tag + 128-byte MKI), so on its own it refuses to protect RTP over 1356
bytes, which is below what encoders send (GStreamer's payloaders fill 1400-byte packets). Each session
gets a larger buffer here instead: any SRTP packet of up to :data:`MAX_SRTP_PACKET` bytes is accepted,
and anything accepted can be protected again for forwarding, even grown by RTX's 2-byte OSN.
:attr:`SrtpContext.native_protect` hands the same ``srtp_t`` and libsrtp's ``srtp_protect`` (as addresses)
to native code that protects in its own buffers (:mod:`roomcast.runtime.sendmmsg`), only while
``srtp_protect`` has the libsrtp 2 signature that code calls it with.
"""

from __future__ import annotations

import struct
from typing import Any

from pylibsrtp import SRTP_MAX_TRAILER_LEN, Error, Policy, Session

MAX_SRTP_PACKET = 2048
"""The largest SRTP/SRTCP packet accepted (as libwebrtc's ``kMaxRtpPacketLen``): more than any 1500-byte
MTU carries, so loopback and jumbo-frame senders are not cut short either."""
_SRTCP_MAX_TRAILER_LEN = 4 + 16 + 128  # E-flag/index, tag, MKI (pylibsrtp's SRTP_MAX_SRTCP_TRAILER_LEN)
_BUFFER_LEN = MAX_SRTP_PACKET + _SRTCP_MAX_TRAILER_LEN

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


_REWRITE = struct.Struct("!BHII")  # byte 1 (marker | payload type), sequence number, timestamp, SSRC
_TWCC = struct.Struct("!BH")  # a one-byte header extension element: id << 4 | (length - 1), 2-byte value
_PROTECT_SIGNATURE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"  # libsrtp 2.x


def _enlarge(session: Session) -> None:
    """Give ``session`` a working buffer of :data:`_BUFFER_LEN` bytes (see the module docstring); if
    pylibsrtp's internals moved, its own 1500 bytes stay and larger packets fail as :class:`SrtpError`."""
    try:
        from pylibsrtp._binding import ffi  # private: only here and in _InPlace, with a fallback

        if len(session._cdata) < _BUFFER_LEN:
            session._cdata = ffi.new("char[]", _BUFFER_LEN)
            session._buffer = ffi.buffer(session._cdata)
    except (ImportError, AttributeError, TypeError):
        pass


class _InPlace:
    """pylibsrtp's own buffer and libsrtp's protect function, for protecting without copies."""

    __slots__ = ("buffer", "cdata", "length", "limit", "native", "protect", "srtp")

    def __init__(self, session: Session) -> None:
        from pylibsrtp._binding import ffi, lib  # private: only here, with a fallback

        self.cdata: Any = session._cdata
        self.buffer: Any = session._buffer
        self.srtp: Any = session._srtp[0]
        self.protect: Any = lib.srtp_protect
        self.length: Any = ffi.new("int *")
        self.limit = len(self.cdata) - SRTP_MAX_TRAILER_LEN
        self.native: tuple[int, int, int] | None = None
        if ffi.typeof(lib.srtp_protect).cname == _PROTECT_SIGNATURE:
            fn, ctx = int(ffi.cast("uintptr_t", lib.srtp_protect)), int(ffi.cast("uintptr_t", self.srtp))
            self.native = (fn, ctx, self.limit)

    @classmethod
    def of(cls, session: Session) -> _InPlace | None:
        try:
            return cls(session)
        except (ImportError, AttributeError, TypeError):
            return None


class SrtpContext:
    """SRTP for one DTLS association: ``local_key`` protects what we send, ``remote_key`` checks what
    we receive (both key || salt, as :class:`roomcast.proto.dtls.HandshakeComplete` gives them)."""

    __slots__ = ("_in_place", "_rx", "_tx", "native_protect", "profile")

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
            _enlarge(self._rx)
            _enlarge(self._tx)
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"cannot create SRTP session: {exc}") from None
        self._in_place = _InPlace.of(self._tx)
        self.native_protect: tuple[int, int, int] | None = None if self._in_place is None else self._in_place.native
        """``(address of srtp_protect, address of the outbound srtp_t, largest RTP packet it protects in
        place)``, valid while this context lives."""

    def protect(self, rtp: Packet) -> bytes:
        """RTP -> SRTP. The same packet may be protected again (retransmission)."""
        try:
            return self._tx.protect(rtp if type(rtp) is bytes else bytes(rtp))
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"protect failed: {exc}") from None

    def protect_rewritten(
        self, rtp: bytes | bytearray, b1: int, seq: int, ts: int, ssrc: int, twcc_at: int = -1, twcc: int = 0
    ) -> bytes:
        """:meth:`protect` of ``rtp`` with byte 1 (marker and payload type), sequence number,
        timestamp and SSRC replaced, and, when ``twcc_at`` is an offset, the one-byte header extension
        element there (id nibble before it, 2-byte value at it) set to ``twcc`` (``(id << 16) | sequence``:
        the transport-wide sequence number of this receiver's transport); ``rtp`` itself is not modified."""
        n = len(rtp)
        fast = self._in_place
        if fast is None or n > fast.limit or n < 12:
            buf = bytearray(rtp)
            if n >= 12:
                _REWRITE.pack_into(buf, 1, b1, seq, ts, ssrc)
                if twcc_at > 12:
                    _TWCC.pack_into(buf, twcc_at - 1, (twcc >> 12) & 0xF0 | 1, twcc & 0xFFFF)
            return self.protect(buf)
        buffer = fast.buffer
        buffer[0:n] = rtp
        _REWRITE.pack_into(buffer, 1, b1, seq, ts, ssrc)
        if twcc_at > 12:
            _TWCC.pack_into(buffer, twcc_at - 1, (twcc >> 12) & 0xF0 | 1, twcc & 0xFFFF)
        length = fast.length
        length[0] = n
        status = fast.protect(fast.srtp, fast.cdata, length)
        if status:
            raise SrtpError(f"protect failed: libsrtp status {status}")
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    def unprotect(self, srtp: Packet) -> bytes:
        """SRTP -> RTP; :class:`SrtpError` on a bad tag, a replay, a malformed packet or one longer than
        :data:`MAX_SRTP_PACKET`."""
        if len(srtp) > MAX_SRTP_PACKET:
            raise SrtpError(f"unprotect failed: {len(srtp)}-byte packet, more than {MAX_SRTP_PACKET}")
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
        """SRTCP -> RTCP; :class:`SrtpError` on a bad tag, a replayed index, a malformed packet or one
        longer than :data:`MAX_SRTP_PACKET`."""
        if len(srtcp) > MAX_SRTP_PACKET:
            raise SrtpError(f"unprotect_rtcp failed: {len(srtcp)}-byte packet, more than {MAX_SRTP_PACKET}")
        try:
            return self._rx.unprotect_rtcp(srtcp if type(srtcp) is bytes else bytes(srtcp))
        except (Error, ValueError, TypeError) as exc:
            raise SrtpError(f"unprotect_rtcp failed: {exc}") from None
