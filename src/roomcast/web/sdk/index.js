/*
 * Roomcast JS SDK, as ES modules served without a build step. The entry point:
 *
 *   import {connect} from '/sdk/index.js';   // or <script type="module" src="/sdk/index.js">: sets window.Roomcast
 *   const room = await connect(url, token, {iceServers: []});
 *   room.on('participantJoined' | 'participantLeft' | 'track' | 'trackEnded' | 'data' | 'disconnected' | 'error', cb);
 *   room.on('serverShutdown', ({reason, grace}) => ...);   // the server drains: reconnect elsewhere
 *   room.on('rejoined', () => ...);   // with {rejoin: true}: the room's node died, joined (and published) again
 *   room.on('iceRestarted', ({target | peer, reason}) => ...);   // ICE restarted ('manual' | 'failed' | 'disconnected')
 *   await room.publish(mediaStream);
 *   room.sendData('hello', {topic: 'chat'});
 *   room.participants;            // Map identity -> {identity, name, sid, metadata, streams}
 *   await room.getStats();        // RTCStatsReport entries as plain objects, each with `participant`
 *   room.leave();
 *
 * A classic `<script src="/sdk/roomcast.js">` (no modules) gets the same API through a shim (web/roomcast.js).
 * The wire protocol mirrors src/roomcast/signaling/messages.py: protocol.js, checked by a test.
 * In peer-to-peer rooms every pair of participants shares one RTCPeerConnection negotiated with the
 * "perfect negotiation" pattern (peer.js), so either side may (re)negotiate at any time without glare. In SFU
 * rooms media only goes through the server (server_peer.js, sfu_client.js, data_channels.js): the SDK never
 * builds a connection to another participant there, and ignores any offer, answer or candidate a participant
 * sends (the server refuses to relay them). room.js is the room a connection joined, connect.js the join.
 */
import {connect, devToken} from './connect.js';
import {RoomcastError} from './errors.js';
import {PROTOCOL_VERSION} from './protocol.js';
import {ServerPeer} from './server_peer.js';

export {connect, devToken, RoomcastError, ServerPeer, PROTOCOL_VERSION};

// The same object the classic shim handed out (if it loaded us): its waiting functions become the real ones.
globalThis.Roomcast = Object.assign(globalThis.Roomcast || {}, {connect, devToken, RoomcastError, ServerPeer, PROTOCOL_VERSION});
