import {RoomcastError} from './errors.js';
import {Room} from './room.js';

/**
 * The grants a token claims, read (not verified: the server does that) so the SDK can stay inside
 * them, e.g. offer nothing it may not receive; defaults to full grants for a token it cannot read.
 */
export function tokenGrants(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)));
    const grants = claims.grants || {};
    return {canPublish: grants.canPublish !== false, canSubscribe: grants.canSubscribe !== false};
  } catch (err) {
    return {canPublish: true, canSubscribe: true};
  }
}

export function signalingUrl(url, token) {
  let base = url || globalThis.location.origin;
  base = base.replace(/^http(s?):/, 'ws$1:').replace(/\/+$/, '');
  if (!/\/rtc$/.test(base)) base += '/rtc';
  return base + '?access_token=' + encodeURIComponent(token);
}

/** Connect and join the room named in `token`; resolves once joined, rejects with a RoomcastError. */
export function connect(url, token, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalingUrl(url, token));
    const room = new Room(ws, options);
    room._url = signalingUrl(url, token);
    room._urls = [url, ...(options.urls || [])].map((u) => signalingUrl(u, token));
    room.grants = tokenGrants(token);
    let settled = false;
    ws.onopen = () => room._send({type: 'join', room: options.room || null, metadata: options.metadata || null});
    ws.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (err) { return; }
      if (msg.type === 'error') room._lastError = msg.code;
      if (!settled) {
        if (msg.type === 'joined') {
          settled = true;
          room._onJoined(msg);
          resolve(room);
        } else if (msg.type === 'error') {
          settled = true;
          reject(new RoomcastError(msg.code, msg.message));
        }
        return;
      }
      room._onMessage(msg);
    };
    ws.onclose = (event) => {
      if (!settled) {
        settled = true;
        reject(new RoomcastError(event.reason || 'connection_closed', 'signaling closed (' + event.code + ')'));
        return;
      }
      room._onClose(event);
    };
  });
}

/** Ask a dev-mode server for a token (only works with the built-in dev credentials). */
export async function devToken(room, identity, name, base, grants = {}) {
  const q = new URLSearchParams({room, identity});
  if (name) q.set('name', name);
  if (grants.canPublish === false) q.set('can_publish', 'false');
  if (grants.roomAdmin) q.set('room_admin', 'true');
  const res = await fetch((base || '') + '/api/dev-token?' + q.toString());
  const body = await res.json();
  if (!res.ok) throw new RoomcastError(body.error.code, body.error.message);
  return body.token;
}
