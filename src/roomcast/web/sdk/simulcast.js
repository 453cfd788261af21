/**
 * Simulcast (RFC 8853) for camera video: rids `q`, `h`, `f` at 1/4, 1/2 and full resolution, each with a
 * bitrate cap, so the server can give every viewer the layer its network carries. Captures under 540
 * lines get `h` and `f` only, under 270 no simulcast: libwebrtc sends at most that many layers at those
 * sizes and would drop the top ones, the full resolution first.
 */
// On by default: the server gives each viewer the layer its bandwidth estimate and shown size allow
// (`publish(stream, {simulcast: false})` or `connect(url, token, {simulcast: false})` sends one encoding).
export const SIMULCAST_BY_DEFAULT = true;

export function simulcastLayers(track) {
  const height = (track.getSettings && track.getSettings().height) || 480;
  // a layer's bitrate cap follows its own size (about 150 kbit/s at 180 lines, 450 at 360, 900 at 540)
  const cap = (lines) => (lines <= 200 ? 150000 : lines <= 400 ? 450000 : lines <= 600 ? 900000 : 1700000);
  const layers = [4, 2, 1].map((scale, i) => ({rid: 'qhf'[i], scaleResolutionDownBy: scale,
    maxBitrate: cap(height / scale)}));
  if (height >= 540) return layers;
  return height >= 270 ? layers.slice(1) : null;
}
