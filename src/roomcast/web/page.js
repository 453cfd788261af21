/*
 * Shared helpers for the demo pages: read ?room=&identity= and a token, and ask before the camera.
 *
 * Tokens belong in the URL fragment (`/call#token=JWT`): a fragment never reaches the server, so it is in
 * no access log and no Referer (issue 12 M6). `?token=` still works; the page then moves it into the
 * fragment so a reload or a copied link does not send it again.
 *
 * A page that is framed by another site, or opened with a token from its URL (a link anyone can send),
 * joins a room someone else chose: it starts the camera and microphone only after the user clicks a
 * button that names that room (issue 12 M7). The dev-token flow at the top level starts them at once.
 */
import {devToken, RoomcastError} from '/sdk/index.js';

const params = new URLSearchParams(window.location.search);
const fragment = new URLSearchParams(window.location.hash.slice(1));
const urlToken = fragment.get('token') || params.get('token') || null;
const framed = (() => {
  try { return window.top !== window.self; } catch (err) { return true; }
})();

if (params.has('token')) {
  const query = new URLSearchParams(window.location.search);
  query.delete('token');
  if (urlToken) fragment.set('token', urlToken);
  const search = query.toString();
  const hash = fragment.toString();
  window.history.replaceState(null, '', window.location.pathname + (search ? '?' + search : '') + (hash ? '#' + hash : ''));
}

/** A login session (server with --users or --oidc-issuer) gets a token for its user; else a dev token. */
async function sessionToken(room, grants = {}) {
  const q = new URLSearchParams({room});
  if (grants.canPublish === false) q.set('can_publish', 'false');
  if (grants.roomAdmin) q.set('room_admin', 'true');
  const res = await fetch('/api/session-token?' + q.toString(), {headers: {'X-Roomcast-Page': '1'}, cache: 'no-store'});
  if (res.status === 404) return null;  // no login on this server
  const body = await res.json();
  if (!res.ok) throw new RoomcastError(body.error.code, body.error.message);
  return body.token;
}

async function pageToken(grants) {
  if (urlToken) return urlToken;
  const room = params.get('room');
  if (room) {
    const token = await sessionToken(room, grants);
    if (token) return token;
  }
  const identity = params.get('identity');
  if (!room || !identity) throw new RoomcastError('missing_params', 'open this page with ?room=R&identity=I');
  return devToken(room, identity, params.get('name'), '', grants);
}

/** Room and identity a token claims (unverified, for the consent button's label only). */
function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const body = JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)));
    return {room: String((body.grants || {}).room || ''), identity: String(body.sub || '')};
  } catch (err) {
    return {room: '', identity: ''};
  }
}

let consent = null;

/**
 * Resolves when this page may start the camera and microphone: at once for the dev-token flow at the
 * top level, else once the user clicked "#start-media" (asked once per page, then remembered).
 */
function mediaConsent() {
  if (!framed && !urlToken) return Promise.resolve();
  if (consent) return consent;
  consent = new Promise((resolve) => {
    const who = urlToken ? claims(urlToken) : {room: params.get('room') || '', identity: params.get('identity') || ''};
    const where = who.room ? ' in room “' + who.room + '”' + (who.identity ? ' as “' + who.identity + '”' : '') : '';
    const button = el('button', {id: 'start-media', type: 'button'}, 'Start camera and microphone');
    const why = framed ? 'This page is embedded in another site. ' : 'This link carries its own access token. ';
    const panel = el('div', {class: 'consent', id: 'consent', role: 'dialog'},
      el('p', {}, why + 'Your camera and microphone will be sent' + where + ' only after you click:'), button);
    button.addEventListener('click', () => { panel.remove(); resolve(); }, {once: true});
    (document.querySelector('main') || document.body).prepend(panel);
    setStatus('waiting for you to start the camera and microphone');
  });
  return consent;
}

function setStatus(text, isError) {
  const el = document.getElementById('status');
  if (!el) return;
  el.textContent = text;
  el.classList.toggle('error', !!isError);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === 'class') node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** Connection options from the URL: ?relay=1 forces TURN, ?turn=udp|tcp picks the TURN transport. */
function connectOptions() {
  const options = {room: params.get('room') || undefined};
  if (params.get('relay')) options.iceTransportPolicy = 'relay';
  if (params.get('turn')) options.turnTransport = params.get('turn');
  if (params.get('simulcast')) options.simulcast = params.get('simulcast') !== '0';
  if (params.get('rejoin')) options.rejoin = params.get('rejoin') !== '0';  // a cluster: join again if a node dies
  return options;
}

/** The video tile `id` in #tiles (made on first use, with `label`) showing `stream`; `muted` for our own. */
function tile(id, label, stream, muted) {
  let node = document.getElementById(id);
  if (!node) {
    node = el('div', {class: 'tile', id}, el('video', {autoplay: '', playsinline: ''}), el('span', {class: 'label'}, label));
    document.getElementById('tiles').append(node);
  }
  node.querySelector('video').muted = !!muted;
  node.querySelector('video').srcObject = stream;
}

function button(text, onclick, cls) { const b = el('button', {class: cls || 'secondary'}, text); b.onclick = onclick; return b; }

export {params, pageToken, mediaConsent, setStatus, el, tile, button, connectOptions, framed};
// the pages' inline scripts read the same helpers from here
window.RoomcastPage = {params, pageToken, mediaConsent, setStatus, el, tile, button, connectOptions, framed, urlToken: !!urlToken};
