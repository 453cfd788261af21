/** When a connection repairs its path by an ICE restart (RFC 8445 §9). */

export const ICE_DISCONNECTED_GRACE_MS = 2000;  // 'disconnected' this long (not back by itself): restart ICE
export const ICE_RESTART_ATTEMPTS = 5;
