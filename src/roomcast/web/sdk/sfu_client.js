import {RoomcastError} from './errors.js';
import {ServerPeer} from './server_peer.js';
import {SIMULCAST_BY_DEFAULT, simulcastLayers} from './simulcast.js';

/**
 * SFU rooms: one publisher connection (we offer our tracks, sendonly) and one subscriber connection
 * (we offer a recvonly m-line per remote track; the server answers sendonly). Negotiations are queued
 * so they never overlap.
 */
export class SfuClient {
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
