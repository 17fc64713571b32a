// The server's clock as the page sees it. Readings carry the server's read time and how
// old they were when sent, so ages and live time axes do not depend on the browser's own
// clock being right (a phone's may be seconds off).
//
// The offset is the smallest (browser time − read time − age) seen over the last half
// minute or so: the event that spent least time in transit, forgotten in time to follow
// a clock that is being corrected.

const WINDOW_S = 30;
let current = Infinity;
let previous = Infinity;
let windowStart = -Infinity;
let offset = 0;

/** Note a reading read at `readAt` (server clock, s since the epoch), `ageS` old when sent. */
export function observe(readAt, ageS) {
  if (readAt === null || !Number.isFinite(ageS)) return;
  const now = Date.now() / 1000;
  if (now - windowStart > WINDOW_S) {
    previous = current;
    current = Infinity;
    windowStart = now;
  }
  current = Math.min(current, now - readAt - ageS);
  offset = Math.min(current, previous);
}

/** Now on the server's clock, in seconds since the epoch. */
export function serverNow() {
  return Date.now() / 1000 - offset;
}
