import {Emitter} from './emitter.js';
import {RoomcastError} from './errors.js';
import {ICE_DISCONNECTED_GRACE_MS, ICE_RESTART_ATTEMPTS} from './ice_restart.js';

const ANSWER_TIMEOUT_MS = 15000;

/**
 * A peer connection terminated by the server's own media endpoint (the echo endpoint today, SFU
 * publishing/subscribing later). The server is ICE-lite and puts its candidates in the answer.
 */
export class ServerPeer extends Emitter {
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
