// How values and statuses are shown: fixed decimals, ages, and a status class.

export function fixed(value, digits) {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/** Seconds since a reading, in the largest unit that keeps it short. */
export function age(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 10) return `${Math.max(seconds, 0).toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

const WARN = new Set(["underexposed", "overexposed", "no value yet", "railed"]);
const STALE = new Set(["stale", "unlocked", "off"]);

/** The badge class of a status text: ok, warn, stale or bad (never shown by colour alone). */
export function statusClass(status) {
  if (status === "ok" || status === "locked") return "ok";
  if (WARN.has(status)) return "warn";
  if (STALE.has(status)) return "stale";
  return "bad";
}

/** Seconds since the epoch of an ISO 8601 time (null when absent or invalid). */
export function epochSeconds(iso) {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

export function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}
