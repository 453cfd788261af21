/*
 * Roomcast JS SDK (no build step). Exposes the global `Roomcast`.
 *
 *   const room = await Roomcast.connect(url, token, {iceServers: []});
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
 * The wire protocol mirrors src/roomcast/signaling/messages.py (protocol version 1).
 * In peer-to-peer rooms every pair of participants shares one RTCPeerConnection negotiated with the
 * "perfect negotiation" pattern, so either side may (re)negotiate at any time without glare. In SFU rooms
 * media only goes through the server: the SDK never builds a connection to another participant there,
 * and ignores any offer, answer or candidate a participant sends (the server refuses to relay them).
 */
(function (global) {
  'use strict';

  const PROTOCOL_VERSION = 1;
  const ICE_DISCONNECTED_GRACE_MS = 2000;  // 'disconnected' this long (not back by itself): restart ICE
  const ANSWER_TIMEOUT_MS = 15000;
  const ICE_RESTART_ATTEMPTS = 5;

  class RoomcastError extends Error {
    constructor(code, message) {
      super(message || code);
      this.name = 'RoomcastError';
      this.code = code;
    }
  }

  /**
   * Simulcast (RFC 8853) for camera video: rids `q`, `h`, `f` at 1/4, 1/2 and full resolution, each with a
   * bitrate cap, so the server can give every viewer the layer its network carries. Captures under 540
   * lines get `h` and `f` only, under 270 no simulcast: libwebrtc sends at most that many layers at those
   * sizes and would drop the top ones, the full resolution first.
   */
  // On by default: the server gives each viewer the layer its bandwidth estimate and shown size allow
  // (`publish(stream, {simulcast: false})` or `connect(url, token, {simulcast: false})` sends one encoding).
  const SIMULCAST_BY_DEFAULT = true;

  function simulcastLayers(track) {
    const height = (track.getSettings && track.getSettings().height) || 480;
    // a layer's bitrate cap follows its own size (about 150 kbit/s at 180 lines, 450 at 360, 900 at 540)
    const cap = (lines) => (lines <= 200 ? 150000 : lines <= 400 ? 450000 : lines <= 600 ? 900000 : 1700000);
    const layers = [4, 2, 1].map((scale, i) => ({rid: 'qhf'[i], scaleResolutionDownBy: scale,
      maxBitrate: cap(height / scale)}));
    if (height >= 540) return layers;
    return height >= 270 ? layers.slice(1) : null;
  }

  class Emitter {
    constructor() { this._handlers = new Map(); }
    on(event, cb) {
      if (!this._handlers.has(event)) this._handlers.set(event, new Set());
      this._handlers.get(event).add(cb);
      return this;
    }
    off(event, cb) {
      const set = this._handlers.get(event);
      if (set) set.delete(cb);
      return this;
    }
    emit(event, ...args) {
      const set = this._handlers.get(event);
      if (!set) return;
      for (const cb of Array.from(set)) {
        try { cb(...args); } catch (err) { console.error('roomcast handler for', event, 'failed:', err); }
      }
    }
  }

  function toBase64(bytes) {
    let binary = '';
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
  }

  function fromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /**
   * The grants a token claims, read (not verified: the server does that) so the SDK can stay inside
   * them, e.g. offer nothing it may not receive; defaults to full grants for a token it cannot read.
   */
  function tokenGrants(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const claims = JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)));
      const grants = claims.grants || {};
      return {canPublish: grants.canPublish !== false, canSubscribe: grants.canSubscribe !== false};
    } catch (err) {
      return {canPublish: true, canSubscribe: true};
    }
  }

  function signalingUrl(url, token) {
    let base = url || global.location.origin;
    base = base.replace(/^http(s?):/, 'ws$1:').replace(/\/+$/, '');
    if (!/\/rtc$/.test(base)) base += '/rtc';
    return base + '?access_token=' + encodeURIComponent(token);
  }

  /** One RTCPeerConnection to one remote participant (peer-to-peer rooms). */
  class Peer {
    constructor(room, info) {
      this.room = room;
      this.identity = info.identity;
      this.polite = room.identity < info.identity;
      this.makingOffer = false;
      this.ignoreOffer = false;
      this.queue = Promise.resolve();
      this.senders = new Map();
      this.pc = new RTCPeerConnection({iceServers: room.iceServers, iceTransportPolicy: room.iceTransportPolicy});
      const pc = this.pc;
      pc.onnegotiationneeded = async () => {
        try {
          this.makingOffer = true;
          this._fitDirections();
          await pc.setLocalDescription();
          room._send({type: 'offer', sdp: pc.localDescription.sdp, to: this.identity});
        } catch (err) {
          room.emit('error', new RoomcastError('negotiation_failed', String(err)));
        } finally {
          this.makingOffer = false;
        }
      };
      pc.onicecandidate = ({candidate}) => {
        room._send({
          type: 'ice_candidate',
          to: this.identity,
          candidate: candidate ? candidate.candidate : null,
          sdp_mid: candidate ? candidate.sdpMid : null,
          sdp_mline_index: candidate ? candidate.sdpMLineIndex : null,
        });
      };
      pc.ontrack = ({track, streams}) => {
        const participant = room.participants.get(this.identity);
        const stream = streams[0] || new MediaStream([track]);
        if (participant) participant.streams.add(stream);
        track.addEventListener('ended', () => room.emit('trackEnded', track, participant));
        room.emit('track', track, stream, participant);
      };
      pc.onconnectionstatechange = () => room.emit('connectionStateChanged', this.identity, pc.connectionState);
      // ICE restart (RFC 8445 §9) after 'failed', or 'disconnected' for ~2 s: restartIce() fires
      // negotiationneeded, and perfect negotiation carries the new credentials either way.
      this.disconnectedTimer = null;
      pc.oniceconnectionstatechange = () => {
        clearTimeout(this.disconnectedTimer);
        if (pc.iceConnectionState === 'failed') this.restartIce('failed');
        else if (pc.iceConnectionState === 'disconnected') {
          this.disconnectedTimer = setTimeout(() => {
            if (pc.iceConnectionState === 'disconnected') this.restartIce('disconnected');
          }, ICE_DISCONNECTED_GRACE_MS);
        }
      };
      for (const track of room.localTracks) this.addTrack(track);
    }

    restartIce(reason = 'manual') {
      if (this.pc.signalingState === 'closed') return;
      this.pc.restartIce();
      this.room.emit('iceRestarted', {peer: this.identity, reason});
    }

    addTrack(track) {
      if (!this.senders.has(track)) this.senders.set(track, this.pc.addTrack(track, this.room.localStream));
    }

    removeTrack(track) {
      const sender = this.senders.get(track);
      if (sender) {
        this.senders.delete(track);
        this.pc.removeTrack(sender);
      }
    }

    /**
     * Without canSubscribe the server relays only m-lines that do not receive (issue 12 H3): send what
     * we publish, nothing else. (Without canPublish nothing is added, so every m-line is recvonly already.)
     */
    _fitDirections() {
      if (this.room.grants.canSubscribe) return;
      for (const transceiver of this.pc.getTransceivers()) {
        if (transceiver.stopped || transceiver.currentDirection === 'stopped') continue;
        const want = transceiver.sender.track ? 'sendonly' : 'inactive';
        if (transceiver.direction !== want) transceiver.direction = want;
      }
    }

    /** Signaling messages for one peer are applied strictly in order. */
    handle(msg) {
      this.queue = this.queue.then(() => this._handle(msg)).catch((err) => {
        this.room.emit('error', new RoomcastError('negotiation_failed', String(err)));
      });
    }

    async _handle(msg) {
      const pc = this.pc;
      if (msg.type === 'offer' || msg.type === 'answer') {
        const collision = msg.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
        this.ignoreOffer = !this.polite && collision;
        if (this.ignoreOffer) return;
        await pc.setRemoteDescription({type: msg.type, sdp: msg.sdp});
        if (msg.type === 'offer') {
          this._fitDirections();
          await pc.setLocalDescription();
          this.room._send({type: 'answer', sdp: pc.localDescription.sdp, to: this.identity});
        }
      } else if (msg.type === 'ice_candidate') {
        try {
          if (msg.candidate === null) await pc.addIceCandidate();
          else await pc.addIceCandidate({candidate: msg.candidate, sdpMid: msg.sdp_mid, sdpMLineIndex: msg.sdp_mline_index});
        } catch (err) {
          if (!this.ignoreOffer) throw err;
        }
      }
    }

    close() { clearTimeout(this.disconnectedTimer); this.pc.close(); }
  }

  /**
   * A peer connection terminated by the server's own media endpoint (the echo endpoint today, SFU
   * publishing/subscribing later). The server is ICE-lite and puts its candidates in the answer.
   */
  class ServerPeer extends Emitter {
    constructor(room, target) {
      super();
      this.room = room;
      this.target = target;
      this.pc = new RTCPeerConnection({iceServers: room.iceServers, iceTransportPolicy: room.iceTransportPolicy,
        bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require'});
      this.remoteStream = new MediaStream();
      this._answered = null;
      this._extra = null;               // the fields of the last offer (tracks, subscriptions): a restart repeats them
      this._chain = Promise.resolve();  // one offer/answer at a time
      this._restarting = null;
      this._disconnectedTimer = null;
      this.pc.ontrack = ({track, transceiver}) => {
        this.remoteStream.addTrack(track);
        this.emit('track', track, this.remoteStream, transceiver);
      };
      this.pc.onconnectionstatechange = () => this.emit('connectionStateChanged', this.pc.connectionState);
      // RFC 8445 §9: a path that failed (or stays disconnected ~2 s, e.g. a network change) is repaired by
      // an ICE restart; the server keeps DTLS, SRTP and every track, so only ICE starts over.
      this.pc.oniceconnectionstatechange = () => {
        const state = this.pc.iceConnectionState;
        clearTimeout(this._disconnectedTimer);
        if (state === 'failed') this._autoRestart('failed');
        else if (state === 'disconnected') {
          this._disconnectedTimer = setTimeout(() => {
            if (this.pc.iceConnectionState === 'disconnected') this._autoRestart('disconnected');
          }, ICE_DISCONNECTED_GRACE_MS);
        }
      };
    }

    /** Offer, wait for the server's answer, apply it. `extra()` adds fields once mids are known. */
    negotiate(extra) {
      if (extra) this._extra = extra;
      const run = this._chain.then(() => this._negotiate(false));
      this._chain = run.catch(() => {});
      return run;
    }

    async _negotiate(iceRestart) {
      const answered = new Promise((resolve, reject) => { this._answered = {resolve, reject}; });
      await this.pc.setLocalDescription(await this.pc.createOffer({iceRestart}));
      const fields = this._extra ? this._extra() : {};
      const timer = setTimeout(() => this._onError(new RoomcastError('answer_timeout', 'no answer from the server')),
        ANSWER_TIMEOUT_MS);
      try {
        if (!this.room._send(Object.assign({type: 'offer', sdp: this.pc.localDescription.sdp, to: this.target}, fields))) {
          this._onError(new RoomcastError('not_connected', 'the room is not connected'));
        }
        const sdp = await answered;
        await this.pc.setRemoteDescription({type: 'answer', sdp});
      } catch (err) {
        if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({type: 'rollback'});
        throw err;
      } finally {
        clearTimeout(timer);
      }
    }

    /**
     * ICE restart: new ICE credentials offered to the server, which answers with its own new ones on the
     * same connection. Resolves once the answer is applied; emits 'iceRestarted' on the room.
     */
    restartIce(reason = 'manual') {
      // never negotiated (e.g. a subscriber connection with nothing to receive yet): no ICE to restart
      if (this.pc.signalingState === 'closed' || !this.pc.currentRemoteDescription) return Promise.resolve();
      if (this._restarting) return this._restarting;
      this.pc.restartIce();
      const run = this._chain.then(() => this._negotiate(true));
      this._chain = run.catch(() => {});
      this._restarting = run.then(() => {
        this.room.emit('iceRestarted', {target: this.target, reason});
      }).finally(() => { this._restarting = null; });
      return this._restarting;
    }

    _autoRestart(reason, attempt = 0) {
      this.restartIce(reason).catch((err) => {
        this.room.emit('error', err instanceof RoomcastError ? err : new RoomcastError('ice_restart_failed', String(err)));
        // e.g. the signaling socket was down too: try again while ICE is still broken
        const state = this.pc.iceConnectionState;
        if ((state === 'failed' || state === 'disconnected') && attempt + 1 < ICE_RESTART_ATTEMPTS) {
          this._disconnectedTimer = setTimeout(() => this._autoRestart(reason, attempt + 1), ICE_DISCONNECTED_GRACE_MS);
        }
      });
    }

    _onAnswer(sdp) { if (this._answered) this._answered.resolve(sdp); this._answered = null; }
    _onError(err) { if (this._answered) this._answered.reject(err); this._answered = null; }

    /** Resolves once ICE+DTLS are connected, rejects if the connection fails. */
    connected(timeoutMs = 15000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const state = this.pc.connectionState;
          if (state === 'connected') { cleanup(); resolve(); }
          else if (state === 'failed' || state === 'closed') { cleanup(); reject(new RoomcastError('connection_failed', 'media connection ' + state)); }
        };
        const timer = setTimeout(() => { cleanup(); reject(new RoomcastError('connection_timeout', 'media connection not established')); }, timeoutMs);
        const cleanup = () => { clearTimeout(timer); this.pc.removeEventListener('connectionstatechange', check); };
        this.pc.addEventListener('connectionstatechange', check);
        check();
      });
    }

    async getStats() {
      const out = [];
      (await this.pc.getStats()).forEach((entry) => out.push(Object.assign({participant: this.target}, entry)));
      return out;
    }

    close() {
      clearTimeout(this._disconnectedTimer);
      this.pc.close();
      this.room.serverPeers.delete(this.target);
    }
  }

  /**
   * SFU rooms: one publisher connection (we offer our tracks, sendonly) and one subscriber connection
   * (we offer a recvonly m-line per remote track; the server answers sendonly). Negotiations are queued
   * so they never overlap.
   */
  class SfuClient {
    constructor(room) {
      this.room = room;
      this.publisher = null;
      this.subscriber = null;
      this.published = new Map();      // local track -> metadata
      this.remote = new Map();         // track sid -> info (other participants' tracks)
      this.own = new Map();            // local track id -> sid
      this.receivers = new Map();      // track sid -> transceiver
      this.midToSid = new Map();
      this.streams = new Map();        // identity -> MediaStream
      this.senders = new Map();        // local track id -> RTCRtpSender (dynacast turns its layers on and off)
      this.queue = Promise.resolve();
    }

    enqueue(fn) {
      const next = this.queue.then(fn);
      this.queue = next.catch((err) => {
        this.room.emit('error', err instanceof RoomcastError ? err : new RoomcastError('negotiation_failed', String(err)));
      });
      return next;
    }

    _peer(target) {
      const peer = new ServerPeer(this.room, target);
      this.room.serverPeers.set(target, peer);
      return peer;
    }

    publish(stream, options = {}) {
      return this.enqueue(async () => {
        if (!this.publisher) this.publisher = this._peer('$publish');
        for (const track of stream.getTracks()) {
          if (this.published.has(track)) continue;
          const source = options.source || (track.kind === 'audio' ? 'microphone' : 'camera');
          const init = {direction: 'sendonly', streams: [stream]};
          const simulcast = options.simulcast ?? this.room.options.simulcast ?? SIMULCAST_BY_DEFAULT;
          const layers = track.kind === 'video' && source === 'camera' && simulcast ? simulcastLayers(track) : null;
          if (layers) init.sendEncodings = layers;
          const transceiver = this.publisher.pc.addTransceiver(track, init);
          const settings = track.getSettings ? track.getSettings() : {};
          this.published.set(track, {track_id: track.id, source, name: options.name || track.label || '',
            simulcast: layers ? layers.map((l) => l.rid) : null, width: settings.width || null,
            height: settings.height || null});
          this.senders.set(track.id, transceiver.sender);
        }
        await this.publisher.negotiate(() => ({tracks: Array.from(this.published.values())}));
      });
    }

    onTracks(list) {
      const mine = this.room.identity;
      const before = this.remote;
      this.remote = new Map();
      for (const info of list) {
        if (info.participant === mine) { this.own.set(info.track_id, info.sid); continue; }
        this.remote.set(info.sid, info);
        const old = before.get(info.sid);
        if (old && old.muted !== info.muted) {
          this.room.emit('trackMuted', info, this.room.participants.get(info.participant));
        }
      }
      return this.enqueue(() => this._sync());
    }

    async _sync() {
      if (!this.subscriber) {
        this.subscriber = this._peer('$subscribe');
        this.subscriber.on('track', (track, _stream, transceiver) => this._onTrack(track, transceiver));
      }
      const pc = this.subscriber.pc;
      let changed = false;
      for (const [sid, transceiver] of Array.from(this.receivers)) {
        if (this.remote.has(sid)) continue;
        transceiver.direction = 'inactive';
        this.receivers.delete(sid);
        this._endTrack(transceiver.receiver.track, sid);
        changed = true;
      }
      const used = new Set(this.receivers.values());
      for (const [sid, info] of this.remote) {
        if (this.receivers.has(sid)) continue;
        let transceiver = pc.getTransceivers().find((t) => !used.has(t) && t.receiver.track.kind === info.kind
          && t.direction === 'inactive' && !t.stopped);
        if (transceiver) transceiver.direction = 'recvonly';
        else transceiver = pc.addTransceiver(info.kind, {direction: 'recvonly'});
        used.add(transceiver);
        this.receivers.set(sid, transceiver);
        changed = true;
      }
      if (!changed) return;
      await this.subscriber.negotiate(() => {
        const subscriptions = {};
        for (const [sid, transceiver] of this.receivers) subscriptions[transceiver.mid] = sid;
        this.midToSid = new Map(Object.entries(subscriptions));
        return {subscriptions};
      });
    }

    _onTrack(track, transceiver) {
      const sid = this.midToSid.get(transceiver.mid);
      const info = sid && this.remote.get(sid);
      if (!info) return;
      const participant = this.room.participants.get(info.participant);
      let stream = this.streams.get(info.participant);
      if (!stream) { stream = new MediaStream(); this.streams.set(info.participant, stream); }
      for (const old of stream.getTracks()) if (old.kind === track.kind) stream.removeTrack(old);
      stream.addTrack(track);
      if (participant) participant.streams.add(stream);
      this.room.emit('track', track, stream, participant, info);
    }

    _endTrack(track, sid) {
      for (const [identity, stream] of this.streams) {
        if (stream.getTracks().includes(track)) {
          stream.removeTrack(track);
          this.room.emit('trackEnded', track, this.room.participants.get(identity), sid);
        }
      }
    }

    /** The server took our right to publish: drop the publisher connection so a later publish starts fresh. */
    stopPublishing() {
      if (this.publisher) this.publisher.close();
      this.publisher = null;
      this.published.clear();
      this.own.clear();
    }

    setMuted(track, muted) {
      const sid = this.own.get(track.id);
      if (!sid) throw new RoomcastError('unknown_track', 'this track is not published (yet)');
      this.room._send({type: 'mute', track_sid: sid, muted});
    }

    /** Adaptive stream: how we want a remote track (quality, shown size, or disabled while hidden). */
    trackSettings(trackSid, settings) {
      if (!this.remote.has(trackSid)) throw new RoomcastError('unknown_track', 'no such remote track');
      this.room._send(Object.assign({type: 'track_settings', track_sid: trackSid}, settings));
    }

    /**
     * Dynacast: the server names the simulcast layers someone receives; the others stop being encoded
     * (`encodings[i].active = false`) until they are named again, which saves the publisher's CPU and uplink.
     */
    async onPublisherLayers(trackId, active) {
      const sender = this.senders.get(trackId);
      if (!sender) return;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length < 2) return;
      let changed = false;
      for (const encoding of params.encodings) {
        const on = active.includes(encoding.rid);
        if (encoding.active !== on) { encoding.active = on; changed = true; }
      }
      if (changed) await sender.setParameters(params);
      this.room.emit('publisherLayers', {trackId, active});
    }
  }

  /**
   * Room data over server-terminated data channels (SFU rooms): a reliable ordered channel and a lossy
   * one on a dedicated `$data` connection. Each message is an envelope (2-byte header length, JSON
   * header, payload); payloads above CHUNK bytes are split and reassembled here, transparently, with
   * backpressure from `bufferedAmount`.
   */
  const CHUNK = 60 * 1024;
  const MAX_BUFFERED = 1024 * 1024;
  const MAX_ASSEMBLY = 64 * 1024 * 1024;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  function encodeEnvelope(header, payload) {
    const head = encoder.encode(JSON.stringify(header));
    const out = new Uint8Array(2 + head.length + payload.length);
    out[0] = head.length >> 8; out[1] = head.length & 0xff;
    out.set(head, 2);
    out.set(payload, 2 + head.length);
    return out;
  }

  function decodeEnvelope(bytes) {
    const size = (bytes[0] << 8) | bytes[1];
    const header = JSON.parse(decoder.decode(bytes.subarray(2, 2 + size)));
    return [header, bytes.subarray(2 + size)];
  }

  class DataClient {
    constructor(room) {
      this.room = room;
      this.peer = new ServerPeer(room, '$data');
      room.serverPeers.set('$data', this.peer);
      this.reliable = this.peer.pc.createDataChannel('_roomcast', {ordered: true});
      this.lossy = this.peer.pc.createDataChannel('_roomcast_lossy', {ordered: false, maxRetransmits: 0});
      this.assembling = new Map();
      this.nextId = 1;
      for (const channel of [this.reliable, this.lossy]) {
        channel.binaryType = 'arraybuffer';
        channel.bufferedAmountLowThreshold = MAX_BUFFERED / 4;
        channel.onmessage = (event) => this._onMessage(new Uint8Array(event.data));
      }
      this.ready = Promise.all([this.peer.negotiate(), new Promise((resolve, reject) => {
        this.reliable.onopen = resolve;
        this.reliable.onerror = () => reject(new RoomcastError('data_channel_failed', 'data channel failed to open'));
      })]);
    }

    async _drain(channel) {
      while (channel.bufferedAmount > MAX_BUFFERED) {
        await new Promise((resolve) => { channel.onbufferedamountlow = resolve; });
      }
    }

    async send(payload, options) {
      await this.ready;
      const binary = typeof payload !== 'string';
      const bytes = binary ? (payload instanceof Uint8Array ? payload : new Uint8Array(payload.buffer || payload)) : encoder.encode(payload);
      const channel = options.reliable === false ? this.lossy : this.reliable;
      const header = {t: options.topic || null, b: binary};
      if (options.to) header.to = options.to;
      if (bytes.length <= CHUNK) {
        await this._drain(channel);
        channel.send(encodeEnvelope(header, bytes));
        return;
      }
      header.id = this.nextId++;
      header.n = Math.ceil(bytes.length / CHUNK);
      for (let i = 0; i < header.n; i++) {
        await this._drain(channel);
        channel.send(encodeEnvelope(Object.assign({}, header, {i}), bytes.subarray(i * CHUNK, (i + 1) * CHUNK)));
      }
    }

    _onMessage(bytes) {
      let header, payload;
      try { [header, payload] = decodeEnvelope(bytes); } catch (err) { return; }
      if (header.e) { this.room.emit('error', new RoomcastError(header.e, header.m)); return; }
      if (header.n) {
        const key = header.f + '/' + header.id;
        let entry = this.assembling.get(key);
        if (!entry) { entry = {parts: new Array(header.n), got: 0, size: 0}; this.assembling.set(key, entry); }
        if (!entry.parts[header.i]) { entry.parts[header.i] = payload.slice(); entry.got++; entry.size += payload.length; }
        if (entry.size > MAX_ASSEMBLY) { this.assembling.delete(key); return; }
        if (entry.got < header.n) return;
        this.assembling.delete(key);
        payload = new Uint8Array(entry.size);
        let offset = 0;
        for (const part of entry.parts) { payload.set(part, offset); offset += part.length; }
      }
      const value = header.b ? payload.slice() : decoder.decode(payload);
      this.room.emit('data', {payload: value, from: header.f, topic: header.t, binary: !!header.b, ts: header.ts});
    }
  }

  class Room extends Emitter {
    constructor(ws, options) {
      super();
      this.ws = ws;
      this.options = options;
      this.name = null;
      this.sid = null;
      this.identity = null;
      this.localParticipant = null;
      this.participants = new Map();
      this.peers = new Map();
      this.serverPeers = new Map();
      this.localStream = null;
      this.localTracks = [];
      this.iceServers = options.iceServers || [];
      this.iceTransportPolicy = options.iceTransportPolicy || 'all';  // 'relay': only through TURN
      this.grants = {canPublish: true, canSubscribe: true};  // what the token claims (set by connect)
      this.state = 'connecting';
      this._pingTimer = null;
    }

    _send(msg) {
      if (this.ws.readyState !== WebSocket.OPEN) return false;
      msg.v = PROTOCOL_VERSION;
      this.ws.send(JSON.stringify(msg));
      return true;
    }

    _resume(attempt) {
      this.state = 'reconnecting';
      if (attempt === 0) this.emit('reconnecting');
      const delays = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000];
      if (attempt >= delays.length) {
        this._rejoinOrClose({code: 1006, reason: 'resume_failed'});
        return;
      }
      setTimeout(() => {
        const urls = this._urls || [this._url];
        const ws = new WebSocket(urls[attempt % urls.length]);  // the fallbacks in turn (a node is gone)
        let resumed = false;
        ws.onopen = () => ws.send(JSON.stringify({type: 'join', v: PROTOCOL_VERSION, resume: this.resumeToken}));
        ws.onmessage = (event) => {
          let msg;
          try { msg = JSON.parse(event.data); } catch (err) { return; }
          if (!resumed) {
            if (msg.type === 'joined' && msg.resumed) {
              resumed = true;
              this.ws = ws;
              this.resumeToken = msg.resume_token;
              this.state = 'connected';
              this._reconcile(msg.participants);
              this.emit('reconnected');
            } else if (msg.type === 'error') {
              this._lastError = msg.code;
            }
            return;
          }
          this._onMessage(msg);
        };
        ws.onclose = (event) => {
          if (!resumed) {
            if (this._lastError === 'resume_failed') this._rejoinOrClose({code: 1008, reason: 'resume_failed'});
            else this._resume(attempt + 1);
          } else {
            this._onClose(event);
          }
        };
      }, delays[attempt]);
    }

    /**
     * The session is gone (the room's node died, or the resume window passed): with `options.urls`
     * (fallback servers, e.g. the other nodes of a cluster) or `options.rejoin`, join the room again,
     * through each URL in turn, and publish the same stream again; emits 'rejoined'. Else: disconnected.
     */
    _rejoinOrClose(event) {
      const rejoin = this.options.rejoin ?? Boolean(this.options.urls && this.options.urls.length);
      if (!rejoin || !this._urls) { this._finishClose(event); return; }
      this._rejoin(0, event);
    }

    _rejoin(attempt, event) {
      const delays = [0, 250, 500, 1000, 1000, 2000, 2000, 2000];
      if (attempt >= delays.length) { this._finishClose(event); return; }
      setTimeout(() => {
        const urls = this._urls || [this._url];
        const ws = new WebSocket(urls[(attempt + 1) % urls.length]);  // start with the next server
        let joined = false;
        ws.onopen = () => ws.send(JSON.stringify({type: 'join', v: PROTOCOL_VERSION, room: this.options.room || null,
          metadata: this.options.metadata || null}));
        ws.onmessage = (message) => {
          let msg;
          try { msg = JSON.parse(message.data); } catch (err) { return; }
          if (joined) { this._onMessage(msg); return; }
          if (msg.type === 'joined') {
            joined = true;
            this._restart(ws, msg);
          } else if (msg.type === 'error') {
            this._lastError = msg.code;
          }
        };
        ws.onclose = (closed) => { if (joined) this._onClose(closed); else this._rejoin(attempt + 1, event); };
      }, delays[attempt]);
    }

    /** A fresh session after a rejoin: the old connections go, the same local stream is published again. */
    _restart(ws, msg) {
      for (const peer of Array.from(this.serverPeers.values())) peer.close();
      this.serverPeers.clear();
      clearInterval(this._pingTimer);
      for (const identity of Array.from(this.participants.keys())) this._removeParticipant(identity, 'rejoined');
      this.ws = ws;
      this._lastError = null;
      this._onJoined(msg);
      this.emit('rejoined');
      const stream = this.localStream;
      if (stream && this.sfu && msg.participant.can_publish !== false) {
        this.sfu.publish(stream).catch((err) => this.emit('error', err));
      }
    }

    /** After a resume: whoever left or joined while we were away. */
    _reconcile(now) {
      const present = new Set(now.map((p) => p.identity));
      for (const identity of Array.from(this.participants.keys())) {
        if (!present.has(identity)) this._removeParticipant(identity, 'left');
      }
      for (const info of now) if (!this.participants.has(info.identity)) this._addParticipant(info, true);
    }

    _onJoined(msg) {
      this.name = msg.room;
      this.sid = msg.sid;
      this.identity = msg.participant.identity;
      this.localParticipant = msg.participant;
      this.resumeToken = msg.resume_token || null;
      this.mode = msg.mode;
      this.sfu = msg.mode === 'sfu' ? new SfuClient(this) : null;
      this.data = null;
      if (!this.options.iceServers) {
        this.iceServers = (msg.ice_servers || []).map((s) => ({urls: s.urls, username: s.username, credential: s.credential}));
        const only = this.options.turnTransport;  // 'udp' | 'tcp': keep only TURN URLs of that transport
        if (only) {
          this.iceServers = this.iceServers
            .map((s) => Object.assign({}, s, {urls: s.urls.filter((u) => u.startsWith('turn') && u.endsWith('transport=' + only))}))
            .filter((s) => s.urls.length);
        }
      }
      this.state = 'connected';
      for (const info of msg.participants) this._addParticipant(info, false);
      this._pingTimer = setInterval(() => this._send({type: 'ping', ts: Date.now() / 1000}), 15000);
      if (this.sfu) {
        this.data = new DataClient(this);  // receive room data from the start
        this.data.ready.catch((err) => this.emit('error', err));
      }
    }

    _addParticipant(info, announce) {
      const participant = Object.assign({streams: new Set()}, info);
      this.participants.set(info.identity, participant);
      if (!this.sfu && !this.peers.has(info.identity)) this.peers.set(info.identity, new Peer(this, info));
      if (announce) this.emit('participantJoined', participant);
      return participant;
    }

    _removeParticipant(identity, reason) {
      const peer = this.peers.get(identity);
      if (peer) {
        peer.close();
        this.peers.delete(identity);
      }
      const participant = this.participants.get(identity);
      this.participants.delete(identity);
      if (participant) {
        for (const stream of participant.streams) {
          for (const track of stream.getTracks()) this.emit('trackEnded', track, participant);
        }
        this.emit('participantLeft', participant, reason);
      }
    }

    _onMessage(msg) {
      switch (msg.type) {
        case 'participant_joined':
          this._addParticipant(msg.participant, true);
          break;
        case 'participant_left':
          this._removeParticipant(msg.identity, msg.reason);
          break;
        case 'tracks':
          if (this.sfu) this.sfu.onTracks(msg.tracks);
          break;
        case 'publisher_layers':
          if (this.sfu) this.sfu.onPublisherLayers(msg.track_id, msg.active).catch(() => {});
          break;
        case 'permissions':
          this.localParticipant.can_publish = msg.can_publish;
          if (!msg.can_publish && this.sfu) this.sfu.stopPublishing();
          this.emit('permissionsChanged', {canPublish: msg.can_publish, by: msg.by});
          break;
        case 'participant_updated': {
          const known = this.participants.get(msg.participant.identity);
          if (known) Object.assign(known, msg.participant);
          this.emit('participantUpdated', known || msg.participant);
          break;
        }
        case 'answer':
          if (this.serverPeers.has(msg.from)) { this.serverPeers.get(msg.from)._onAnswer(msg.sdp); break; }
          // fall through: an answer from a participant
        case 'offer':
        case 'ice_candidate': {
          // SFU rooms: media only ever goes through the server. A participant's offer must never get our
          // camera, our addresses or a connection around canSubscribe and moderation (issue 12 H3).
          if (this.sfu) break;
          let peer = this.peers.get(msg.from);
          if (!peer && this.participants.has(msg.from)) {
            peer = new Peer(this, this.participants.get(msg.from));
            this.peers.set(msg.from, peer);
          }
          if (peer) peer.handle(msg);
          break;
        }
        case 'data': {
          const payload = msg.binary ? fromBase64(msg.payload) : msg.payload;
          this.emit('data', {payload, from: msg.from, topic: msg.topic, binary: msg.binary, ts: msg.ts});
          break;
        }
        case 'server_shutdown':
          // The server drains (SIGTERM): new joins are refused, this socket closes within `grace` seconds.
          this.emit('serverShutdown', {reason: msg.reason, grace: msg.grace});
          break;
        case 'error': {
          const err = new RoomcastError(msg.code, msg.message);
          if (msg.ref && this.serverPeers.has(msg.ref)) this.serverPeers.get(msg.ref)._onError(err);
          this.emit('error', err);
          break;
        }
        default:
          break;
      }
    }

    _onClose(event) {
      // A drop (not a leave, not closed by the server with a reason) is resumed: media keeps flowing
      // over UDP meanwhile, and the server keeps our place for its resume window.
      const dropped = this.state === 'connected' && event.code !== 1000 && event.code !== 1008 && event.code !== 1009;
      if (dropped && this.resumeToken && this.options.resume !== false) {
        this._resume(0);
        return;
      }
      this._finishClose(event);
    }

    _finishClose(event) {
      const wasConnected = this.state !== 'disconnected';
      this.state = 'disconnected';
      clearInterval(this._pingTimer);
      for (const identity of Array.from(this.peers.keys())) this._removeParticipant(identity, 'disconnected');
      for (const peer of Array.from(this.serverPeers.values())) peer.close();
      if (wasConnected) this.emit('disconnected', {code: event.code, reason: event.reason || this._lastError || ''});
    }

    /** Send every track of `stream` to every participant (and to those who join later). */
    async publish(stream, options = {}) {
      if (this.localParticipant && this.localParticipant.can_publish === false) {
        throw new RoomcastError('permission_denied', 'token lacks the canPublish grant');
      }
      this.localStream = stream;
      if (this.sfu) {
        for (const track of stream.getTracks()) if (!this.localTracks.includes(track)) this.localTracks.push(track);
        return this.sfu.publish(stream, options);
      }
      for (const track of stream.getTracks()) {
        if (!this.localTracks.includes(track)) this.localTracks.push(track);
        for (const peer of this.peers.values()) peer.addTrack(track);
      }
    }

    /** Tell the server to stop (or resume) forwarding a published track (SFU rooms); also disables it locally. */
    setMuted(track, muted) {
      track.enabled = !muted;
      if (this.sfu) this.sfu.setMuted(track, muted);
    }

    /** SFU rooms: receive remote video track `trackSid` at 'low' | 'medium' | 'high' quality (a layer). */
    setVideoQuality(trackSid, quality) {
      if (!this.sfu) throw new RoomcastError('wrong_mode', 'video quality is chosen by the server in SFU rooms only');
      this.sfu.trackSettings(trackSid, {quality});
    }

    /** SFU rooms: the size remote track `trackSid` is shown at; the server sends the smallest layer that fills it. */
    setVideoDimensions(trackSid, width, height) {
      if (!this.sfu) throw new RoomcastError('wrong_mode', 'video dimensions matter in SFU rooms only');
      this.sfu.trackSettings(trackSid, {width: Math.round(width), height: Math.round(height)});
    }

    /** SFU rooms: stop receiving remote track `trackSid` while it is not shown (`enabled: false`), and back. */
    setTrackEnabled(trackSid, enabled) {
      if (!this.sfu) throw new RoomcastError('wrong_mode', 'track enabling is an SFU room feature');
      this.sfu.trackSettings(trackSid, {enabled});
    }

    /**
     * Room admins only (checked by the server): 'allow_publish' | 'deny_publish' (stage, speaking turn),
     * 'mute' | 'unmute' (the server stops forwarding all of that participant's tracks), 'remove'.
     */
    moderate(identity, action) {
      if (!this._send({type: 'moderate', identity, action})) throw new RoomcastError('not_connected', 'the room is not connected');
    }

    /** Stop sending `tracks` (default: all published tracks). */
    unpublish(tracks) {
      const list = tracks || this.localTracks.slice();
      for (const track of list) {
        this.localTracks = this.localTracks.filter((t) => t !== track);
        for (const peer of this.peers.values()) peer.removeTrack(track);
      }
    }

    /**
     * Send text, or binary (ArrayBuffer / typed array), to the room or to `to` / `destinationIdentities`.
     * SFU rooms: over data channels, `reliable: false` for the lossy channel, any size (chunked); resolves
     * when handed to the browser. Peer-to-peer rooms: over the signaling socket (48 KiB limit).
     */
    sendData(payload, options = {}) {
      if (this.sfu) {
        if (!this.data) this.data = new DataClient(this);
        const to = options.to || options.destinationIdentities;
        return this.data.send(payload, Object.assign({}, options, {to}));
      }
      return Promise.resolve(this._sendDataOverSignaling(payload, options));
    }

    /** Open the data connection now (it is otherwise opened by the first sendData). */
    connectData() {
      if (!this.sfu) return Promise.resolve();
      if (!this.data) this.data = new DataClient(this);
      return this.data.ready;
    }

    _sendDataOverSignaling(payload, options) {
      const msg = {type: 'data', topic: options.topic || null};
      if (typeof payload === 'string') {
        msg.payload = payload;
      } else {
        const bytes = payload instanceof Uint8Array ? payload : new Uint8Array(payload.buffer || payload);
        msg.payload = toBase64(bytes);
        msg.binary = true;
      }
      if (options.to) msg.to = options.to;
      if (!this._send(msg)) throw new RoomcastError('not_connected', 'the room is not connected');
    }

    /** All stats of all peer connections, as plain objects tagged with the remote participant. */
    async getStats() {
      const out = [];
      for (const [identity, peer] of this.peers) {
        const report = await peer.pc.getStats();
        report.forEach((entry) => out.push(Object.assign({participant: identity}, entry)));
      }
      for (const peer of this.serverPeers.values()) out.push(...(await peer.getStats()));
      return out;
    }

    /**
     * ICE restart on every connection (RFC 8445 §9), e.g. after a network change: new ICE credentials,
     * same DTLS, tracks and subscriptions. Connections also do this by themselves when ICE fails or stays
     * disconnected. Resolves once the server connections have their answers; emits 'iceRestarted'.
     */
    restartIce() {
      for (const peer of this.peers.values()) peer.restartIce('manual');
      return Promise.all(Array.from(this.serverPeers.values()).map((peer) => peer.restartIce('manual')));
    }

    /**
     * Echo test: send `stream` to the server, which sends the same packets straight back.
     * Resolves with {peer, stream}: `stream` holds the echoed tracks.
     */
    async startEcho(stream) {
      const peer = new ServerPeer(this, '$echo');
      this.serverPeers.set('$echo', peer);
      for (const track of stream.getTracks()) peer.pc.addTransceiver(track, {direction: 'sendrecv', streams: [stream]});
      await peer.negotiate();
      return {peer, stream: peer.remoteStream};
    }

    leave() {
      for (const peer of Array.from(this.serverPeers.values())) peer.close();
      this._send({type: 'leave'});
      this.state = 'disconnected';
      clearInterval(this._pingTimer);
      for (const identity of Array.from(this.peers.keys())) this._removeParticipant(identity, 'left');
      this.ws.close(1000, 'left');
    }
  }

  /** Connect and join the room named in `token`; resolves once joined, rejects with a RoomcastError. */
  function connect(url, token, options = {}) {
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
  async function devToken(room, identity, name, base, grants = {}) {
    const q = new URLSearchParams({room, identity});
    if (name) q.set('name', name);
    if (grants.canPublish === false) q.set('can_publish', 'false');
    if (grants.roomAdmin) q.set('room_admin', 'true');
    const res = await fetch((base || '') + '/api/dev-token?' + q.toString());
    const body = await res.json();
    if (!res.ok) throw new RoomcastError(body.error.code, body.error.message);
    return body.token;
  }

  global.Roomcast = {connect, devToken, RoomcastError, ServerPeer, PROTOCOL_VERSION};
})(typeof window !== 'undefined' ? window : globalThis);
