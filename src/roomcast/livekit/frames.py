"""LiveKit's signal frames: one protobuf ``SignalRequest`` per binary WebSocket message in, one
``SignalResponse`` out, and the ``join_request`` query parameter of ``/rtc/v1`` (a base64url
``WrappedJoinRequest``, its ``JoinRequest`` maybe gzip-compressed). Sizes are capped before decoding;
decoding raises :class:`FrameError` only."""

from __future__ import annotations

import base64
import binascii
import zlib

from google.protobuf.message import DecodeError
from livekit.protocol import rtc

from roomcast.errors import CodedError

MAX_FRAME = 256 * 1024  # an offer with many m-lines is ~20 kB; LiveKit's own server reads up to 1 MB
MAX_JOIN_REQUEST = 64 * 1024  # decompressed: a client's offer with its initial receive-only m-lines


class FrameError(CodedError):
    """A frame we cannot decode; ``code`` goes to the client (a LeaveRequest, or HTTP at validate)."""


def decode_request(data: bytes) -> rtc.SignalRequest:
    if len(data) > MAX_FRAME:
        raise FrameError("message_too_large", f"signal frames are at most {MAX_FRAME} bytes")
    request = rtc.SignalRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise FrameError("invalid_message", f"not a LiveKit SignalRequest: {exc}") from None
    return request


def encode(response: rtc.SignalResponse) -> bytes:
    return response.SerializeToString()


def decode_join_request(param: str) -> rtc.JoinRequest:
    """``join_request`` of ``/rtc/v1``: base64url (padding optional) of a WrappedJoinRequest."""
    if len(param) > 2 * MAX_JOIN_REQUEST:
        raise FrameError("message_too_large", "join_request parameter too long")
    try:
        raw = base64.b64decode(param + "=" * (-len(param) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("invalid_message", "join_request is not base64url") from None
    wrapped = rtc.WrappedJoinRequest()
    try:
        wrapped.ParseFromString(raw)
    except DecodeError:
        raise FrameError("invalid_message", "join_request is not a WrappedJoinRequest") from None
    body = wrapped.join_request
    if wrapped.compression == rtc.WrappedJoinRequest.Compression.GZIP:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_JOIN_REQUEST + 1)
        except zlib.error:
            raise FrameError("invalid_message", "join_request is not valid gzip") from None
        if len(body) > MAX_JOIN_REQUEST:
            raise FrameError("message_too_large", f"join_request over {MAX_JOIN_REQUEST} bytes uncompressed")
    elif wrapped.compression != rtc.WrappedJoinRequest.Compression.NONE:
        raise FrameError("invalid_message", "join_request compression is unknown")
    request = rtc.JoinRequest()
    try:
        request.ParseFromString(body)
    except DecodeError:
        raise FrameError("invalid_message", "join_request does not hold a JoinRequest") from None
    return request
