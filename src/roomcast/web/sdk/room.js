import {fromBase64, toBase64} from './base64.js';
import {DataClient} from './data_channels.js';
import {Emitter} from './emitter.js';
import {RoomcastError} from './errors.js';
import {Peer} from './peer.js';
import {PROTOCOL_VERSION} from './protocol.js';
import {ServerPeer} from './server_peer.js';
import {SfuClient} from './sfu_client.js';

export class Room extends Emitter {
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
