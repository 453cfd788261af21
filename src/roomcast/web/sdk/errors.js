/** Every failure the SDK reports: a stable machine-readable `code` (registered in src/roomcast/errors.py). */

export class RoomcastError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'RoomcastError';
    this.code = code;
  }
}
