import {RoomcastError} from './errors.js';
import {ServerPeer} from './server_peer.js';

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

export function encodeEnvelope(header, payload) {
  const head = encoder.encode(JSON.stringify(header));
  const out = new Uint8Array(2 + head.length + payload.length);
  out[0] = head.length >> 8; out[1] = head.length & 0xff;
  out.set(head, 2);
  out.set(payload, 2 + head.length);
  return out;
}

export function decodeEnvelope(bytes) {
  const size = (bytes[0] << 8) | bytes[1];
  const header = JSON.parse(decoder.decode(bytes.subarray(2, 2 + size)));
  return [header, bytes.subarray(2 + size)];
}

export class DataClient {
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
