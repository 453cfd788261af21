/** A tiny event emitter: a failing handler is logged, never breaks the others. */

export class Emitter {
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
