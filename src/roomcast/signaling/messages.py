"""The signaling schema: every message on ``WS /rtc``, typed and versioned.

One module holds the whole protocol so the JS SDK can mirror it (``web/sdk/protocol.js``, compared with this
module by ``tests/signaling/test_protocol_js.py``). Each message is a JSON object with a ``type`` tag and
the protocol version ``v``. Input is capped in size and nesting depth *before* it is parsed, so a hostile
client cannot make the decoder do unbounded work.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

import msgspec

from roomcast.errors import CodedError

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_SDP_BYTES = 60 * 1024
MAX_DATA_PAYLOAD = 48 * 1024


class SchemaError(CodedError, ValueError):
    """A message that cannot be accepted; ``code`` is sent back in the typed ``error`` message."""


class Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=False, kw_only=True):
    """Base of every message; ``v`` is the protocol version."""

    v: int = PROTOCOL_VERSION


# ---------------------------------------------------------------- client → server


class Join(Message, tag="join", kw_only=True):
    """First message on a socket: enter the room named by the token (``room``, if given, must match it)."""

    room: str | None = None
    metadata: str | None = None
    resume: str | None = None  # the resume_token of a session whose socket dropped


class TrackMeta(msgspec.Struct, kw_only=True):
    """What a publisher says about a track it offers, keyed by the track id in its SDP's a=msid."""

    track_id: str
    source: Literal["camera", "microphone", "screen", "screen_audio", "unknown"] = "unknown"
    name: str = ""
    simulcast: list[str] | None = None  # the rids it sends, lowest resolution first (RFC 8853)
    width: int | None = None  # capture size: with the rids' scales, the size of each layer
    height: int | None = None


class Offer(Message, tag="offer", kw_only=True):
    """An SDP offer: relayed to a participant ``to`` (peer-to-peer rooms), or answered by a server endpoint
    (``$publish`` with ``tracks``, ``$subscribe`` with ``subscriptions`` mid → track sid, ``$echo``)."""

    sdp: str
    to: str | None = None
    tracks: list[TrackMeta] | None = None
    subscriptions: dict[str, str] | None = None


class Answer(Message, tag="answer", kw_only=True):
    sdp: str
    to: str | None = None


class IceCandidate(Message, tag="ice_candidate", kw_only=True):
    """A trickled candidate; ``candidate`` is ``None`` for end-of-candidates."""

    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    to: str | None = None


class SendData(Message, tag="data", kw_only=True):
    """A data message for the room: ``payload`` is text, or base64 when ``binary`` is set."""

    payload: str
    topic: str | None = None
    binary: bool = False
    to: list[str] | None = None


class Mute(Message, tag="mute", kw_only=True):
    """Stop (or resume) forwarding one of my published tracks."""

    track_sid: str
    muted: bool


class Moderate(Message, tag="moderate", kw_only=True):
    """A room admin's action on another participant: allow/deny publishing, mute all its tracks, remove it."""

    identity: str
    action: Literal["allow_publish", "deny_publish", "mute", "unmute", "remove"]


class TrackSettings(Message, tag="track_settings", kw_only=True):
    """How a subscriber wants a remote video track (adaptive stream): a ``quality``, or the size it is shown
    at (the server picks the smallest layer at least that tall), or ``enabled: false`` while it is hidden."""

    track_sid: str
    quality: Literal["low", "medium", "high"] | None = None
    width: int | None = None
    height: int | None = None
    enabled: bool = True


class Leave(Message, tag="leave", kw_only=True):
    pass


class Ping(Message, tag="ping", kw_only=True):
    ts: float | None = None


ClientMessage = Join | Offer | Answer | IceCandidate | SendData | Mute | Moderate | TrackSettings | Leave | Ping

# ---------------------------------------------------------------- server → client


class ParticipantInfo(msgspec.Struct, kw_only=True):
    identity: str
    name: str
    sid: str
    joined_at: float
    metadata: str | None = None
    can_publish: bool = True


class IceServer(msgspec.Struct, kw_only=True):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Joined(Message, tag="joined", kw_only=True):
    room: str
    sid: str
    participant: ParticipantInfo
    participants: list[ParticipantInfo]
    ice_servers: list[IceServer] = []
    mode: Literal["p2p", "sfu"] = "p2p"
    resume_token: str = ""
    resumed: bool = False


class ParticipantJoined(Message, tag="participant_joined", kw_only=True):
    participant: ParticipantInfo


class ParticipantLeft(Message, tag="participant_left", kw_only=True):
    identity: str
    reason: str = "left"


class RelayedOffer(Message, tag="offer", kw_only=True):
    sdp: str
    sender: str = msgspec.field(name="from")


class RelayedAnswer(Message, tag="answer", kw_only=True):
    sdp: str
    sender: str = msgspec.field(name="from")


class RelayedIceCandidate(Message, tag="ice_candidate", kw_only=True):
    candidate: str | None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    sender: str = msgspec.field(name="from")


class DataReceived(Message, tag="data", kw_only=True):
    payload: str
    sender: str = msgspec.field(name="from")
    topic: str | None = None
    binary: bool = False
    ts: float = 0.0


class RemoteTrack(msgspec.Struct, kw_only=True):
    sid: str
    participant: str
    kind: str
    source: str
    name: str = ""
    muted: bool = False
    track_id: str = ""


class Tracks(Message, tag="tracks", kw_only=True):
    """Every track published in the room (SFU mode), sent on join and whenever it changes."""

    tracks: list[RemoteTrack]


class Permissions(Message, tag="permissions", kw_only=True):
    """Your grants changed (a moderator invited you on stage, or sent you back)."""

    can_publish: bool
    by: str


class ParticipantUpdated(Message, tag="participant_updated", kw_only=True):
    participant: ParticipantInfo


class PublisherLayers(Message, tag="publisher_layers", kw_only=True):
    """Dynacast: the simulcast layers (rids) of your track ``track_id`` someone receives; stop encoding the
    others until they are named again."""

    track_id: str
    active: list[str]


class Pong(Message, tag="pong", kw_only=True):
    ts: float | None = None
    server_ts: float = 0.0


class ServerShutdown(Message, tag="server_shutdown", kw_only=True):
    """The server is draining (SIGTERM): finish or move within ``grace`` seconds; new joins are refused."""

    reason: str = "draining"
    grace: float = 0.0


class Error(Message, tag="error", kw_only=True):
    """Typed error: ``code`` is stable and machine-readable, ``message`` is for humans."""

    code: str
    message: str
    fatal: bool = False
    ref: str | None = None


ServerMessage = (
    Joined
    | ParticipantJoined
    | ParticipantLeft
    | RelayedOffer
    | RelayedAnswer
    | RelayedIceCandidate
    | DataReceived
    | Tracks
    | Permissions
    | ParticipantUpdated
    | PublisherLayers
    | Pong
    | ServerShutdown
    | Error
)

_client_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
# every client message's tag, from the union itself (a hand-kept list missed track_settings: its malformed
# messages were answered unknown_type instead of invalid_message)
_KNOWN_TYPES = frozenset(str(t.__struct_config__.tag) for t in get_args(ClientMessage))


def json_depth(raw: bytes) -> int:
    """Nesting depth of a JSON document, counted without parsing it (string contents ignored)."""
    stripped = _STRINGS.sub(b"", raw).translate(None, delete=b'"\\ \t\r\n,:0123456789-+.eEtrufalsn')
    depth = deepest = 0
    for byte in stripped:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def decode_client(raw: bytes | str) -> ClientMessage:
    """Parse one client message, or raise :class:`SchemaError` with a stable code."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_MESSAGE_BYTES:
        raise SchemaError("message_too_large", f"message is {len(data)} bytes, limit {MAX_MESSAGE_BYTES}")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise SchemaError("too_deep", f"JSON nesting deeper than {MAX_JSON_DEPTH}")
    try:
        message: ClientMessage = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify_validation(data, exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SchemaError("invalid_json", f"not valid JSON: {exc}") from None
    if message.v != PROTOCOL_VERSION:
        raise SchemaError("unsupported_version", f"protocol version {message.v} unsupported, use {PROTOCOL_VERSION}")
    _check_sizes(message)
    return message


def _classify_validation(data: bytes, exc: msgspec.ValidationError) -> SchemaError:
    try:
        obj = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return SchemaError("invalid_json", "not valid JSON (or not UTF-8)")
    if not isinstance(obj, dict):
        return SchemaError("invalid_message", "a message must be a JSON object")
    kind = obj.get("type")
    if kind is None:
        return SchemaError("invalid_message", "missing field 'type'")
    if not isinstance(kind, str) or kind not in _KNOWN_TYPES:
        return SchemaError("unknown_type", f"unknown message type {str(kind)[:40]!r}")
    return SchemaError("invalid_message", f"invalid {kind!r} message: {exc}")


def _check_sizes(message: ClientMessage) -> None:
    if isinstance(message, Offer | Answer) and len(message.sdp) > MAX_SDP_BYTES:
        raise SchemaError("sdp_too_large", f"SDP larger than {MAX_SDP_BYTES} bytes")
    if isinstance(message, Offer) and (len(message.tracks or ()) > 64 or len(message.subscriptions or {}) > 256):
        raise SchemaError("invalid_message", "too many tracks or subscriptions in one offer")
    if isinstance(message, SendData) and len(message.payload) > MAX_DATA_PAYLOAD:
        raise SchemaError("data_too_large", f"data payload larger than {MAX_DATA_PAYLOAD} bytes")
    if isinstance(message, IceCandidate) and message.candidate is not None and len(message.candidate) > 1024:
        raise SchemaError("invalid_message", "ICE candidate too long")


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def encode_text(message: Message) -> str:
    return _encoder.encode(message).decode()
