/*
 * The admin dashboard (/admin; the server side is src/roomcast/app/dashboard.py).
 *
 * Logs in with the API key and secret (a session cookie the script never sees), then polls
 * /admin/api/overview every second: per-node and per-room charts (rates computed here from the server's
 * counters), rooms with their participants and tracks, and actions (mute, remove, end a room, mint a
 * token) sent as JSON with the session's CSRF token. `window.adminState` exposes what the page shows.
 */
(function () {
  'use strict';
  const POINTS = 60;
  const state = {loggedIn: false, polls: 0, csrf: '', series: {}, overview: null, errors: []};
  window.adminState = state;
  const $ = (id) => document.getElementById(id);

  function setStatus(text, bad) {
    $('status').textContent = text;
    $('status').classList.toggle('error', !!bad);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === 'class') node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function call(action, fields) {
    const response = await fetch('/admin/api/action', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': state.csrf},
      body: JSON.stringify(Object.assign({action}, fields)),
    });
    if (response.status === 204) return null;
    const body = await response.json();
    if (!response.ok) {
      state.errors.push(body.error.code);
      setStatus(body.error.code + ': ' + body.error.message, true);
      throw new Error(body.error.code);
    }
    return body;
  }

  // ------------------------------------------------------------------ charts

  function push(key, metric, value) {
    const series = state.series[key] || (state.series[key] = {});
    const points = series[metric] || (series[metric] = []);
    points.push(value);
    if (points.length > POINTS) points.shift();
  }

  function chart(container, key, metric, title, unit) {
    let box = container.querySelector(`[data-metric="${metric}"]`);
    if (!box) {
      box = el('div', {class: 'chart', 'data-metric': metric}, el('div', {class: 'title'}), el('canvas', {width: '240', height: '70'}));
      container.append(box);
    }
    const points = (state.series[key] || {})[metric] || [];
    const last = points.length ? points[points.length - 1] : null;
    box.querySelector('.title').textContent = `${title}: ${last === null ? '–' : (Math.round(last * 10) / 10) + ' ' + unit}`;
    const canvas = box.querySelector('canvas');
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const max = Math.max(1e-9, ...points.filter((v) => v !== null));
    ctx.strokeStyle = '#4f8cff';
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((v, i) => {
      const x = (i / (POINTS - 1)) * canvas.width;
      const y = canvas.height - 4 - ((v || 0) / max) * (canvas.height - 8);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  // ------------------------------------------------------------------ rendering

  function renderNodes(overview, rate) {
    push('node', 'loop_lag_ms', overview.server.loop_lag_ms);
    push('node', 'forwarded_pps', rate(overview.server.forwarded_packets, 'node/packets'));
    push('node', 'forwarded_kbps', rate(overview.server.forwarded_bytes, 'node/bytes') * 8 / 1000);
    const charts = $('node-charts');
    chart(charts, 'node', 'forwarded_kbps', 'forwarded', 'kbit/s');
    chart(charts, 'node', 'forwarded_pps', 'forwarded', 'pkt/s');
    chart(charts, 'node', 'loop_lag_ms', 'event-loop lag', 'ms');
    // every node of the cluster (this one alone without Redis): its own load, as it reports it
    const perNode = $('per-node-charts');
    for (const n of overview.nodes) {
      const key = 'node:' + n.node_id;
      push(key, 'forwarded_pps', n.forwarded_pps);
      push(key, 'loop_lag_ms', n.loop_lag_ms);
      push(key, 'participants', n.participants);
      let box = perNode.querySelector(`[data-node="${CSS.escape(n.node_id)}"]`);
      if (!box) {
        box = el('div', {class: 'charts', 'data-node': n.node_id});
        perNode.append(el('h3', {}, n.node_id), box);
      }
      chart(box, key, 'forwarded_pps', n.node_id + ' forwarded', 'pkt/s');
      chart(box, key, 'loop_lag_ms', n.node_id + ' loop lag', 'ms');
      chart(box, key, 'participants', n.node_id + ' participants', '');
    }
    const body = $('nodes').querySelector('tbody');
    body.textContent = '';
    for (const n of overview.nodes) {
      body.append(el('tr', {'data-node': n.node_id}, ...[n.node_id + (n.draining ? ' (draining)' : ''), n.participants, n.rooms, n.forwarded_pps, n.loop_lag_ms]
        .map((v) => el('td', {}, String(v)))));
    }
  }

  function renderRoom(room, rate) {
    const key = 'room:' + room.name;
    push(key, 'bitrate_kbps', room.media.bitrate / 1000);
    push(key, 'forwarded_pps', rate(room.media.packets_forwarded, key + '/packets'));
    push(key, 'loss_pct', room.media.loss_pct);
    push(key, 'rtt_ms', room.media.rtt_ms);
    let box = document.querySelector(`.room[data-room="${CSS.escape(room.name)}"]`);
    if (!box) {
      const end = el('button', {class: 'off', type: 'button', 'data-action': 'end_room'}, 'End room');
      end.addEventListener('click', () => call('end_room', {room: room.name}).catch(() => {}));
      box = el('div', {class: 'room', 'data-room': room.name},
        el('h3', {}, el('span', {class: 'name'}, room.name), el('span', {class: 'count'}), end),
        el('div', {class: 'charts'}),
        el('table', {class: 'checks'}, el('thead', {}, el('tr', {}, ...['participant', 'tracks', ''].map((h) => el('th', {}, h)))), el('tbody')));
      $('rooms').append(box);
    }
    box.querySelector('.count').textContent = `${room.num_participants} participants, ${room.mode}`;
    const charts = box.querySelector('.charts');
    chart(charts, key, 'bitrate_kbps', 'incoming bitrate', 'kbit/s');
    chart(charts, key, 'forwarded_pps', 'forwarded', 'pkt/s');
    chart(charts, key, 'loss_pct', 'subscriber loss', '%');
    chart(charts, key, 'rtt_ms', 'RTT', 'ms');
    const body = box.querySelector('tbody');
    const seen = new Set();
    for (const p of room.participants) {
      seen.add(p.sid);
      let row = body.querySelector(`tr[data-sid="${CSS.escape(p.sid)}"]`);
      if (!row) {
        const buttons = ['mute', 'unmute', 'remove'].map((action) => {
          const button = el('button', {type: 'button', class: action === 'remove' ? 'off' : 'secondary', 'data-action': action}, action);
          button.addEventListener('click', () => call(action, {room: room.name, identity: p.identity}).catch(() => {}));
          return button;
        });
        row = el('tr', {'data-sid': p.sid, 'data-identity': p.identity}, el('td', {}, p.identity), el('td', {class: 'tracks'}), el('td', {}, ...buttons));
        body.append(row);
      }
      row.querySelector('.tracks').textContent = p.tracks.map((t) =>
        `${t.kind}${t.muted ? ' (muted)' : ''} ${Math.round((t.bitrate || 0) / 1000)} kbit/s → ${t.subscribers}`).join(', ') || 'none';
    }
    for (const row of Array.from(body.querySelectorAll('tr'))) if (!seen.has(row.dataset.sid)) row.remove();
  }

  const previous = {};
  function rater(now) {
    return (value, key) => {
      const last = previous[key];
      previous[key] = {value, now};
      if (!last || now <= last.now) return 0;
      return Math.max(0, (value - last.value) / (now - last.now));
    };
  }

  async function poll() {
    let response;
    try {
      response = await fetch('/admin/api/overview', {cache: 'no-store'});
    } catch (err) {
      setStatus('server unreachable', true);
      return;
    }
    if (response.status === 401) {
      showLogin();
      return;
    }
    const overview = await response.json();
    state.overview = overview;
    state.csrf = overview.csrf;
    const rate = rater(overview.time);
    renderNodes(overview, rate);
    const names = new Set(overview.rooms.map((r) => r.name));
    for (const room of overview.rooms) renderRoom(room, rate);
    for (const box of Array.from(document.querySelectorAll('.room'))) if (!names.has(box.dataset.room)) box.remove();
    $('no-rooms').hidden = overview.rooms.length > 0;
    state.polls += 1;
    if (!state.errors.length) setStatus(`node ${overview.server.node_id} · ${overview.rooms.length} rooms · updated ${new Date().toLocaleTimeString()}`);
  }

  // ------------------------------------------------------------------ login

  let timer = null;
  function showLogin() {
    state.loggedIn = false;
    clearInterval(timer);
    $('dashboard').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    setStatus('log in with the API key and secret');
  }

  function showDashboard() {
    state.loggedIn = true;
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('logout').hidden = false;
    clearInterval(timer);
    timer = setInterval(poll, 1000);
    poll();
  }

  $('login').addEventListener('submit', async (event) => {
    event.preventDefault();
    const response = await fetch('/admin/login', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({key: $('key').value, secret: $('secret').value}),
    });
    const body = await response.json();
    if (!response.ok) {
      $('login-error').textContent = body.error.code + ': ' + body.error.message;
      $('login-error').dataset.code = body.error.code;
      return;
    }
    $('secret').value = '';
    state.csrf = body.csrf;
    showDashboard();
  });

  $('logout').addEventListener('click', async () => {
    await fetch('/admin/logout', {method: 'POST', headers: {'X-CSRF-Token': state.csrf}});
    showLogin();
  });

  $('mint').addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const body = await call('mint_token', {room: $('mint-room').value, identity: $('mint-identity').value, ttl: $('mint-ttl').value});
      $('minted').textContent = body.token;
    } catch (err) { /* shown in the status line */ }
  });

  fetch('/admin/api/overview', {cache: 'no-store'}).then((r) => (r.ok ? showDashboard() : showLogin()), showLogin);
})();
