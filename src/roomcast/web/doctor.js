/*
 * The /doctor page: the checks of `roomcast doctor` (src/roomcast/tools/doctor.py), run in the user's browser.
 *
 * It speaks the signaling protocol itself (join, then one offer per path to the server's `$echo`), so each
 * ICE path is tested alone: the answer's candidates are filtered to UDP only, then TCP only (RFC 6544
 * passive), then TURN with `iceTransportPolicy: 'relay'` when the server hands out TURN servers. The video
 * is drawn on a canvas (no camera prompt). Results: the table, and `window.doctorState` ({done, checks,
 * exitCode, verdict}) with the same names, statuses and exit codes as the CLI: 0 everything passed, 1 a
 * call can still connect, 2 no call can connect.
 */
(function () {
  'use strict';
  const params = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const TIMEOUT_MS = 1000 * Number(params.get('timeout') || 8);
  const MEDIA_MS = 1000 * Number(params.get('media_seconds') || 3);
  const FATAL = ['http', 'token', 'signaling'];
  const PATHS = ['ice_udp', 'ice_tcp', 'turn'];
  const MARKS = {pass: '✔ pass', fail: '✘ FAIL', warn: '! warn', skip: '- skip', running: '… running'};
  const state = {done: false, checks: [], exitCode: null, verdict: ''};
  window.doctorState = state;

  function render() {
    const body = document.querySelector('#checks tbody');
    body.textContent = '';
    for (const check of state.checks) {
      const row = document.createElement('tr');
      row.dataset.name = check.name;
      row.dataset.status = check.status;
      const cells = [MARKS[check.status], check.title, check.detail, check.ms === null ? '' : String(check.ms)];
      cells.forEach((text, i) => {
        const cell = document.createElement('td');
        cell.textContent = text;
        if (i === 0) cell.className = 'check-' + check.status;
        if (i === 3) cell.className = 'ms';
        row.append(cell);
      });
      body.append(row);
    }
  }

  async function run(name, title, body) {
    const check = {name, title, status: 'running', detail: '', ms: null, data: {}};
    state.checks.push(check);
    render();
    const started = performance.now();
    try {
      check.status = 'pass';
      await body(check);
    } catch (err) {
      check.status = 'fail';
      check.detail = check.detail || (err && err.message) || String(err);
    }
    check.ms = Math.round(performance.now() - started);
    render();
    return check;
  }

  function skip(name, title, why) {
    state.checks.push({name, title, status: 'skip', detail: why, ms: null, data: {}});
    render();
  }

  function within(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what)), ms); });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /** The signaling socket: join, then request/answer pairs to `$echo`. */
  class Signaling {
    constructor(token) {
      this.url = location.origin.replace(/^http/, 'ws') + '/rtc?access_token=' + encodeURIComponent(token);
      this.waiting = [];
    }

    open() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url);
        this.ws = ws;
        ws.onerror = () => reject(new Error('the WebSocket to /rtc did not open (a proxy without WebSocket support?)'));
        ws.onclose = (event) => reject(new Error('the WebSocket closed (' + event.code + ')'));
        ws.onopen = () => ws.send(JSON.stringify({type: 'join', v: 1}));
        ws.onmessage = (event) => {
          const msg = JSON.parse(event.data);
          if (msg.type === 'joined') resolve(msg);
          else if (msg.type === 'error' && !msg.ref) reject(new Error('join refused: ' + msg.code + ': ' + msg.message));
          else if (msg.type === 'answer' || (msg.type === 'error' && msg.ref)) {
            const next = this.waiting.shift();
            if (next) next(msg);
          }
        };
      });
    }

    async offer(sdp) {
      const reply = new Promise((resolve) => this.waiting.push(resolve));
      this.ws.send(JSON.stringify({type: 'offer', v: 1, to: '$echo', sdp}));
      const msg = await within(reply, TIMEOUT_MS, 'the server did not answer the offer');
      if (msg.type === 'error') throw new Error(msg.code + ': ' + msg.message);
      return msg.sdp;
    }
  }

  function canvasTrack() {
    const canvas = document.getElementById('source');
    const ctx = canvas.getContext('2d');
    let frame = 0;
    setInterval(() => {  // something that changes every frame, so the encoder keeps sending
      frame += 1;
      ctx.fillStyle = `hsl(${(frame * 7) % 360}, 70%, 45%)`;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = '#fff';
      ctx.font = '32px sans-serif';
      ctx.fillText('roomcast ' + frame, 20, 100);
    }, 1000 / 30);
    return canvas.captureStream(30).getVideoTracks()[0];
  }

  /** An echo connection whose answer keeps only candidates of `protocol` ('udp'/'tcp'), or all for TURN. */
  async function echoPath(signaling, track, protocol, iceServers) {
    const config = protocol === 'relay' ? {iceServers, iceTransportPolicy: 'relay'} : {iceServers: []};
    const pc = new RTCPeerConnection(config);
    pc.addTransceiver(track, {direction: 'sendrecv'});
    await pc.setLocalDescription(await pc.createOffer());
    await within(new Promise((resolve) => {  // TURN needs its relay candidate in the offer's gathering
      if (protocol !== 'relay' || pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    }), TIMEOUT_MS, 'no relay candidate from the TURN servers (unreachable, or the credentials were refused)');
    let sdp = await signaling.offer(pc.localDescription.sdp);
    if (protocol !== 'relay') {
      const lines = sdp.split('\r\n');
      const kept = lines.filter((l) => !l.startsWith('a=candidate:') || l.split(' ')[2].toLowerCase() === protocol);
      if (!kept.some((l) => l.startsWith('a=candidate:'))) {
        pc.close();
        throw new Error('the server announces no ' + protocol.toUpperCase() + ' candidate');
      }
      sdp = kept.join('\r\n');
    }
    await pc.setRemoteDescription({type: 'answer', sdp});
    try {
      await within(new Promise((resolve, reject) => {
        const check = () => {
          if (pc.connectionState === 'connected') resolve();
          else if (pc.connectionState === 'failed') reject(new Error('ICE/DTLS failed'));
        };
        pc.addEventListener('connectionstatechange', check);
        check();
      }), TIMEOUT_MS, `no ICE/DTLS over ${protocol === 'relay' ? 'TURN' : protocol.toUpperCase()} within ${TIMEOUT_MS / 1000} s`);
    } catch (err) {
      pc.close();
      throw err;
    }
    return pc;
  }

  async function selectedPair(pc) {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
    if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId) || {};
    const remote = stats.get(pair.remoteCandidateId) || {};
    return {pair, local, remote};
  }

  async function inbound(pc) {
    const stats = await pc.getStats();
    const out = {framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, packetsLost: 0};
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        for (const key of Object.keys(out)) out[key] += s[key] || 0;
      }
    });
    return out;
  }

  async function describePath(check, pc, protocol) {
    const selected = await selectedPair(pc);
    if (!selected) return;
    check.data.local = selected.local.protocol;
    check.data.remote = [selected.remote.address || selected.remote.ip, selected.remote.port, selected.remote.protocol];
    check.data.relayProtocol = selected.local.relayProtocol || null;
    const via = protocol === 'relay' ? ` through a ${selected.local.relayProtocol || ''} relay` : '';
    check.detail = `ICE and DTLS connected to ${check.data.remote[0]}:${check.data.remote[1]} (${selected.remote.protocol})${via}`;
    if (protocol !== 'relay' && selected.remote.protocol !== protocol) {
      throw new Error(`connected over ${selected.remote.protocol}, not ${protocol}`);
    }
  }

  async function mediaRoundTrip(check, pc) {
    const before = await inbound(pc);
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, MEDIA_MS));  // the measurement window
    const after = await inbound(pc);
    const seconds = (performance.now() - started) / 1000;
    const selected = await selectedPair(pc);
    const frames = after.framesDecoded - before.framesDecoded;
    const received = after.packetsReceived - before.packetsReceived;
    const lost = Math.max(0, after.packetsLost - before.packetsLost);
    const rtt = selected && selected.pair.currentRoundTripTime !== undefined ? selected.pair.currentRoundTripTime * 1000 : null;
    Object.assign(check.data, {
      frames_decoded: frames,
      fps: Math.round(frames / seconds),
      loss: received + lost ? lost / (received + lost) : 0,
      rtt_ms: rtt,
      throughput_kbps: Math.round((after.bytesReceived - before.bytesReceived) * 8 / seconds / 1000),
    });
    if (frames <= 0) throw new Error('no echoed frame was decoded: the path connects but carries no video');
    check.detail = `${check.data.fps} fps echoed and decoded, ${check.data.throughput_kbps} kbit/s, loss ` +
      `${(check.data.loss * 100).toFixed(1)} %` + (rtt !== null ? `, RTT ${rtt.toFixed(1)} ms` : '');
    if (check.data.loss > 0.05) check.status = 'warn';
  }

  function verdict() {
    const failed = state.checks.filter((c) => c.status === 'fail');
    const fatal = failed.filter((c) => FATAL.includes(c.name));
    if (fatal.length) return [2, `No call can connect: ${fatal[0].title} failed (${fatal[0].detail})`];
    const paths = state.checks.filter((c) => PATHS.includes(c.name) && (c.status === 'pass' || c.status === 'warn'));
    const media = state.checks.find((c) => c.name === 'media');
    if (!paths.length || !media || media.status === 'fail') return [2, 'No call can connect: no media path (UDP, TCP or TURN) works from here'];
    if (failed.length) {
      return [1, `A call can connect, over ${paths.map((c) => c.title).join(', ')}; but ${failed.map((c) => c.title).join(', ')} failed`];
    }
    return [0, 'Every check passed: calls can connect from here'];
  }

  async function main() {
    await run('secure', 'Secure context', async (check) => {
      if (!window.isSecureContext) throw new Error('not https: browsers give camera and microphone only to https pages (or localhost)');
      check.detail = location.protocol + ' (camera and microphone allowed)';
    });
    await run('http', 'HTTP /healthz', async (check) => {
      const sent = Date.now();
      const response = await fetch('/healthz', {cache: 'no-store'});
      const received = Date.now();
      if (!response.ok) throw new Error('/healthz answered ' + response.status);
      const body = await response.json();
      check.detail = `roomcast ${body.version}, ${body.rooms} rooms`;
      const date = response.headers.get('date');
      if (date) {
        const skew = (Date.parse(date) - (sent + received) / 2) / 1000;
        await run('clock', 'Clock skew', async (clock) => {
          clock.data.skew_s = Math.round(skew * 10) / 10;
          clock.detail = `server clock ${skew >= 0 ? '+' : ''}${skew.toFixed(1)} s from this device's`;
          if (Math.abs(skew) > 60) throw new Error(clock.detail + ': tokens would look expired (fix the clock)');
          if (Math.abs(skew) > 5) clock.status = 'warn';
        });
      }
    });
    let token = fragment.get('token');
    await run('token', 'Access token', async (check) => {
      if (token) { check.detail = 'from the page link'; return; }
      const q = new URLSearchParams({room: 'doctor-' + Math.random().toString(36).slice(2, 10), identity: 'doctor-' + Math.random().toString(36).slice(2, 8)});
      const session = await fetch('/api/session-token?room=' + q.get('room'), {headers: {'X-Roomcast-Page': '1'}});
      if (session.ok) {  // a server with a page login: a token for the logged-in user
        token = (await session.json()).token;
        check.detail = 'for the logged-in user';
        return;
      }
      const response = await fetch('/api/dev-token?' + q);
      if (!response.ok) throw new Error('this server mints no dev tokens: open /doctor#token=<a token for any room>');
      token = (await response.json()).token;
      check.detail = 'dev token from /api/dev-token';
    });
    if (!token) return finish();
    const signaling = new Signaling(token);
    let joined = null;
    await run('signaling', 'Signaling WebSocket + join', async (check) => {
      joined = await within(signaling.open(), TIMEOUT_MS, 'no answer to join');
      check.detail = `joined room ${joined.room} (${joined.mode})`;
    });
    if (!joined) return finish();
    const track = canvasTrack();
    let media = null;
    for (const [name, title, protocol] of [['ice_udp', 'ICE over UDP', 'udp'], ['ice_tcp', 'ICE over TCP', 'tcp']]) {
      let pc = null;
      await run(name, title, async (check) => {
        pc = await echoPath(signaling, track, protocol, []);
        await describePath(check, pc, protocol);
      });
      if (pc && !media) {
        await run('media', `Media round trip (${protocol.toUpperCase()})`, (check) => mediaRoundTrip(check, pc));
        media = true;
      }
      if (pc) pc.close();
    }
    if (!media) skip('media', 'Media round trip', 'no media path connected');
    const turn = (joined.ice_servers || []).filter((s) => s.username && [].concat(s.urls).some((u) => /^turns?:/.test(u)));
    if (!turn.length) {
      skip('turn', 'TURN', 'the server hands out no TURN servers (fine when ICE over TCP works)');
    } else {
      await run('turn', 'TURN relay', async (check) => {
        const servers = turn.map((s) => ({urls: s.urls, username: s.username, credential: s.credential}));
        const pc = await echoPath(signaling, track, 'relay', servers);
        await describePath(check, pc, 'relay');
        pc.close();
      });
    }
    signaling.ws.onclose = null;
    signaling.ws.close(1000, 'done');
    return finish();
  }

  function finish() {
    [state.exitCode, state.verdict] = verdict();
    state.done = true;
    const el = document.getElementById('verdict');
    el.textContent = state.verdict;
    el.className = 'check-' + ['pass', 'warn', 'fail'][state.exitCode];
    document.getElementById('status').textContent = 'done';
  }

  main().catch((err) => {
    skip('internal', 'Connection test', 'stopped: ' + ((err && err.message) || String(err)));
    finish();
  });
})();
