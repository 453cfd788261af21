/*
 * Roomcast JS SDK for a classic `<script src="/sdk/roomcast.js">`: exposes the global `Roomcast`.
 *
 * The SDK is ES modules (/sdk/index.js and the files it imports, web/sdk/), served as they are, without a
 * build step. A classic script cannot hold an `import` statement (loading a module file with a plain
 * `<script src>` is a SyntaxError), so this shim stays a classic script and loads the modules with a
 * dynamic import(), which a classic script may use:
 *
 *   Roomcast.connect(url, token, options), Roomcast.devToken(...)   usable at once (they wait for the modules)
 *   await Roomcast.ready;   then everything else too: Roomcast.RoomcastError, ServerPeer, PROTOCOL_VERSION
 *
 * Pages that can load modules use `<script type="module" src="/sdk/index.js">` (or import from it) instead.
 */
(function (global) {
  'use strict';
  const script = document.currentScript;
  const base = script && script.src ? script.src : global.location.origin + '/sdk/roomcast.js';
  const api = global.Roomcast = global.Roomcast || {};
  api.ready = import(new URL('index.js', base).href).then(() => api);
  for (const name of ['connect', 'devToken']) {
    if (!api[name]) api[name] = (...args) => api.ready.then(() => api[name](...args));
  }
})(typeof window !== 'undefined' ? window : globalThis);
