"""Every refusal a client can see, by its stable code: one base class and one registry.

Signaling ``error`` messages, admin/REST JSON errors, the Python SDK's and the JS SDK's exceptions all carry
one of these codes, so a client can branch on ``code`` wherever the error came from. A new code is added
here first: ``tests/signaling/test_error_codes.py`` fails on any code raised in ``src/`` or thrown by the
JS SDK that is missing from :data:`CODES`. Imports nothing of ours: every layer may use it.
"""

from __future__ import annotations

from typing import Final


class CodedError(Exception):
    """A refused operation: ``code`` (a key of :data:`CODES`) is stable and sent to clients as is."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# code -> (HTTP status when it answers a REST call, what it means). Grouped by where it is usually raised.
CODES: Final[dict[str, tuple[int, str]]] = {
    # tokens and credentials (rooms/tokens.py, app/admin_api.py)
    "missing_token": (401, "no access token was given"),
    "invalid_token": (401, "the token is malformed, or a claim in it is invalid"),
    "invalid_signature": (401, "the token was not signed with this server's secret"),
    "token_expired": (401, "the token's exp is in the past"),
    "token_not_yet_valid": (401, "the token's nbf is in the future"),
    "token_revoked": (401, "the token was revoked (its holder was removed from the room, or by the admin API)"),
    "missing_credentials": (401, "no Authorization header on an admin call"),
    "invalid_credentials": (401, "unknown API key, wrong secret, or malformed Basic credentials"),
    "permission_denied": (403, "the token's grants do not allow this"),
    "missing_grant": (403, "the token has no grant for this room"),
    "dev_mode_off": (404, "dev tokens exist only with the built-in dev credentials"),
    # rooms (rooms/manager.py, signaling/session.py)
    "invalid_room": (400, "a room name is 1-128 characters of A-Z a-z 0-9 _ . -"),
    "room_not_found": (404, "no such room"),
    "room_exists": (409, "a room of that name exists already"),
    "room_full": (429, "the room has max_participants participants already"),
    "too_many_rooms": (429, "the server's, or this client's, room quota is used up"),
    "participant_not_found": (404, "no such participant in the room"),
    "unknown_participant": (404, "no such participant in the room"),
    "unknown_track": (404, "no such track"),
    "already_joined": (409, "this connection joined a room already"),
    "not_joined": (409, "join a room before this message"),
    "target_required": (400, "a peer-to-peer message needs a target participant"),
    "nothing_to_mute": (409, "the participant has no track of that kind"),
    "wrong_mode": (409, "the operation belongs to the other room mode (SFU or peer-to-peer)"),
    # media (rtc/service.py, signaling/relay.py)
    "invalid_sdp": (400, "the SDP could not be parsed or negotiated"),
    "unknown_endpoint": (404, "no such media endpoint for this participant"),
    "too_many_transports": (429, "the participant has as many media connections as allowed"),
    "too_many_tracks": (429, "the offer publishes more tracks than allowed"),
    "too_many_publishers": (429, "the room has as many publishers as allowed"),
    "no_data_channel": (400, "the offer has no application m-line for the server's data channels"),
    "media_unavailable": (503, "the media service is not available (the server is draining or starting)"),
    "unsupported_codec": (415, "no codec in common"),
    # WHIP/WHEP resources (whip/, RFC 9725)
    "invalid_sdpfrag": (400, "the PATCH body is not a trickle-ice-sdpfrag this session can use"),
    "no_media": (422, "the offer has no audio or video m-line the resource can use"),
    "unknown_session": (404, "no such WHIP/WHEP session (it ended, or never existed)"),
    "not_your_session": (403, "the session belongs to another participant"),
    "wrong_room": (403, "the token is for another room"),
    "etag_mismatch": (412, "If-Match does not match the session's ETag"),
    "too_many_sessions": (429, "as many WHIP/WHEP sessions as allowed are open"),
    # recordings (egress/, app/recordings_api.py)
    "recording_not_found": (404, "no such recording in this room"),
    "recordings_disabled": (409, "the server was started without --recordings-dir"),
    "recording_failed": (502, "the recorder could not join the room"),
    "recording_write_failed": (507, "the recording file could not be written (disk full, permissions)"),
    "recording_bad_stream": (422, "a track could not be muxed as it is (no keyframe header, no timing)"),
    # protocol and limits (signaling/messages.py, signaling/session.py, app/)
    "invalid_json": (400, "the frame is not JSON"),
    "invalid_message": (400, "the message does not match the schema"),
    "unknown_type": (400, "no message of that type in this protocol version"),
    "unsupported_version": (400, "the client speaks a protocol version this server does not"),
    "message_too_large": (413, "the frame is over the message size limit"),
    "sdp_too_large": (413, "the SDP is over the size limit"),
    "data_too_large": (413, "the data payload is over the size limit"),
    "too_deep": (400, "the JSON nests too deeply"),
    "rate_limited": (429, "over a rate limit; the request was dropped"),
    "invalid_request": (400, "the request body is not what the endpoint takes"),
    "unsupported_media_type": (415, "wrong Content-Type"),
    "body_too_large": (413, "the request body is over the size limit"),
    "body_timeout": (408, "the request body did not arrive in time"),
    "invalid_host": (400, "the Host header is not one of the allowed hosts"),
    # the LiveKit adapter (livekit/): sent as RequestResponse messages, "code: reason"
    "unsupported_request": (501, "a LiveKit request this server does not carry out (docs/livekit.md)"),
    "unknown_message": (400, "an empty or unknown LiveKit SignalRequest"),
    # cluster (routing/, app/cluster.py, app/cluster_api.py)
    "routing_unavailable": (503, "the cluster cannot place the room or reach its node now; try again shortly"),
    "node_unreachable": (502, "the node hosting the room did not answer"),
    # raised by the clients themselves (sdk/, web/sdk/*.js, web/page.js)
    "connection_failed": (502, "the signaling or media connection failed"),
    "connection_timeout": (504, "the media connection was not established in time"),
    "not_connected": (409, "the room is not connected"),
    "negotiation_failed": (500, "creating or applying an offer/answer failed in the client"),
    "answer_timeout": (504, "the server did not answer an offer in time"),
    "ice_restart_failed": (502, "an ICE restart did not bring the media connection back"),
    "data_channel_failed": (502, "a data channel did not open"),
    "bad_source": (400, "the media source could not be opened or decoded"),
    "no_track": (404, "the stream has no track of that kind"),
    "missing_params": (400, "the page needs ?room=R&identity=I"),
    "login_required": (401, "log in at /login first (the pages need a login on this server)"),
    "login_off": (404, "that login method is not configured on this server"),
    "no_tcp_candidate": (502, "ICE over TCP was asked for, but the server announced no TCP candidate"),
}


def http_status(code: str) -> int:
    """The HTTP status a REST endpoint answers ``code`` with (400 for a code not in the registry)."""
    entry = CODES.get(code)
    return entry[0] if entry else 400
