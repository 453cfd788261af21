/* Shared helpers for the demo pages: read ?room=&identity=&token= and get a token. */
(function (global) {
  'use strict';
  const params = new URLSearchParams(global.location.search);

  async function pageToken(grants) {
    const room = params.get('room');
    const identity = params.get('identity');
    if (params.get('token')) return params.get('token');
    if (!room || !identity) throw new Roomcast.RoomcastError('missing_params', 'open this page with ?room=R&identity=I');
    return Roomcast.devToken(room, identity, params.get('name'), '', grants);
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
    return options;
  }

  global.RoomcastPage = {params, pageToken, setStatus, el, connectOptions};
})(window);
