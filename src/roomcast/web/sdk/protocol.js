/**
 * The signaling protocol, mirrored from src/roomcast/signaling/messages.py (msgspec structs tagged by `type`,
 * every message also carries `v`). Each map names a message `type` (or a nested struct) and its fields as
 * sent on the wire. tests/signaling/test_protocol_js.py compares these objects with the schema and fails on
 * any difference: keep them plain JSON (double-quoted keys, no comments inside) so it can read them.
 */

export const PROTOCOL_VERSION = 1;

/** What a client sends. */
export const CLIENT_MESSAGES = {
  "join": ["room", "metadata", "resume"],
  "offer": ["sdp", "to", "tracks", "subscriptions"],
  "answer": ["sdp", "to"],
  "ice_candidate": ["candidate", "sdp_mid", "sdp_mline_index", "to"],
  "data": ["payload", "topic", "binary", "to"],
  "mute": ["track_sid", "muted"],
  "moderate": ["identity", "action"],
  "track_settings": ["track_sid", "quality", "width", "height", "enabled"],
  "leave": [],
  "ping": ["ts"]
};

/** What the server sends. */
export const SERVER_MESSAGES = {
  "joined": ["room", "sid", "participant", "participants", "ice_servers", "mode", "resume_token", "resumed"],
  "participant_joined": ["participant"],
  "participant_left": ["identity", "reason"],
  "offer": ["sdp", "from"],
  "answer": ["sdp", "from"],
  "ice_candidate": ["candidate", "sdp_mid", "sdp_mline_index", "from"],
  "data": ["payload", "from", "topic", "binary", "ts"],
  "tracks": ["tracks"],
  "permissions": ["can_publish", "by"],
  "participant_updated": ["participant"],
  "publisher_layers": ["track_id", "active"],
  "pong": ["ts", "server_ts"],
  "server_shutdown": ["reason", "grace"],
  "error": ["code", "message", "fatal", "ref"]
};

/** Structs nested in messages (`tracks`, `participant`, `ice_servers`, ...). */
export const STRUCTS = {
  "TrackMeta": ["track_id", "source", "name", "simulcast", "width", "height"],
  "ParticipantInfo": ["identity", "name", "sid", "joined_at", "metadata", "can_publish"],
  "IceServer": ["urls", "username", "credential"],
  "RemoteTrack": ["sid", "participant", "kind", "source", "name", "muted", "track_id"]
};
