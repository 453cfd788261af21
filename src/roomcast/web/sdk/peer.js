import {RoomcastError} from './errors.js';
import {ICE_DISCONNECTED_GRACE_MS} from './ice_restart.js';

/** One RTCPeerConnection to one remote participant (peer-to-peer rooms). */
export class Peer {
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
