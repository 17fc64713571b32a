// How values, times and statuses are shown: the instrument's precision, SI prefixes,
// 24-hour times with seconds in the chosen zone, tick labels that never repeat.

import { prefs } from "./prefs.js";

/** Exact speed of light in nm·THz: nm = C_NM_THZ / THz. */
export const C_NM_THZ = 299792.458;

/** The server's precision table (unit -> {decimals} or {significant}), set at load. */
const PRECISION = new Map();
const DEFAULT_PRECISION = { significant: 6 };

export function setPrecision(table) {
  for (const [unit, spec] of Object.entries(table ?? {})) PRECISION.set(unit, spec);
}

export function precisionOf(unit) {
  return PRECISION.get(unit) ?? DEFAULT_PRECISION;
}

/** Decimals a value shows that was multiplied by `factor` for a prefix (1000: mW from W). */
function decimalsFor(spec, value, factor = 1) {
  if ("decimals" in spec) {
    return Math.max(0, spec.decimals - Math.round(Math.log10(factor)));
  }
  const magnitude = value ? Math.floor(Math.log10(Math.abs(value))) : 0;
  return Math.max(0, spec.significant - 1 - magnitude);
}

/** A value (already in display units) with the digits its instrument resolves. */
export function formatValue(value, spec, factor = 1) {
  if (!Number.isFinite(value)) return "–";
  const digits = decimalsFor(spec, value, factor);
  const magnitude = value ? Math.floor(Math.log10(Math.abs(value))) : 0;
  if ("significant" in spec && (magnitude < -3 || magnitude >= spec.significant)) {
    return scientific(value, spec.significant - 1);
  }
  const text = value.toFixed(Math.min(digits, 15));
  return Number(text) === 0 ? text.replace("-", "") : text;  // never "-0.0"
}

const SUPERSCRIPT = { "-": "⁻", "+": "", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵",
                      6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };

/** 1.2×10⁻¹⁰: scientific notation as a physicist writes it. */
function scientific(value, digits) {
  const [mantissa, exponent] = value.toExponential(digits).split("e");
  return `${mantissa}×10${[...exponent].map((c) => SUPERSCRIPT[c]).join("")}`;
}

const PREFIXES = [[1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "µ"],
                  [1e-9, "n"], [1e-12, "p"]];
/** Units that take an SI prefix chosen for the data (mW, µW, mV, kHz, ...). */
const PREFIXED = new Set(["W", "V", "A", "Hz", "s", "m", "F", "Ω"]);

/** The display of a unit for data up to `largest` in size: {unit, factor, convert(v)}. */
export function displayUnit(unit, largest) {
  if (unit === "K" && prefs.temperature === "°C") {
    return { unit: "°C", factor: 1, convert: (v) => v - 273.15 };
  }
  if (PREFIXED.has(unit) && Number.isFinite(largest) && largest > 0) {
    const [factor, prefix] = PREFIXES.find(([f]) => largest >= f) ?? PREFIXES.at(-1);
    return { unit: `${prefix}${unit}`, factor: 1 / factor, convert: (v) => v / factor };
  }
  return { unit, factor: 1, convert: (v) => v };
}

/** What a unit measures, for an axis label. */
export function quantity(unit) {
  return { mbar: "pressure", Torr: "pressure", Pa: "pressure", K: "temperature",
           W: "power", V: "voltage", A: "current", THz: "frequency", nm: "wavelength",
           MHz: "offset" }[unit] ?? "value";
}

/**
 * Tick labels for `splits` a step `step` apart, with as many decimals as it takes for no
 * two labels to read the same ("0.0030, 0.0025", never "0.003, 0.003").
 */
export function tickLabels(splits, step, log = false) {
  const values = new Set(splits.filter((v) => v != null).map((v) => v.toPrecision(12)));
  const first = log ? 1 : Math.max(0, -Math.floor(Math.log10(Math.abs(step) || 1)));
  let labels = [];
  for (let digits = first; digits <= 12; digits += 1) {
    labels = splits.map((v) => {
      if (v == null) return "";
      const text = log ? scientific(v, Math.max(digits - 1, 0)) : v.toFixed(digits);
      return /^-0\.?0*$/.test(text) ? text.slice(1) : text;
    });
    if (new Set(labels.filter(Boolean)).size === values.size) break;
  }
  return labels;
}

// -- time ------------------------------------------------------------------------------

export function zoneName() {
  return prefs.zone === "UTC" ? "UTC" : Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** "UTC+01:00" for the chosen zone at time `t` (seconds since the epoch). */
function offsetName(t) {
  if (prefs.zone === "UTC") return "UTC";
  const minutes = -new Date(t * 1000).getTimezoneOffset();
  const sign = minutes < 0 ? "−" : "+";
  const abs = Math.abs(minutes);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** "Europe/Berlin, UTC+01:00" or "UTC": the zone times are shown in. */
export function zoneLabel(t = Date.now() / 1000) {
  return prefs.zone === "UTC" ? "UTC" : `${zoneName()}, ${offsetName(t)}`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** The parts of time `t` (seconds since the epoch) on the chosen zone's clock. */
function clockParts(t) {
  const d = new Date(t * 1000);
  const utc = prefs.zone === "UTC";
  return {
    year: utc ? d.getUTCFullYear() : d.getFullYear(),
    month: (utc ? d.getUTCMonth() : d.getMonth()) + 1,
    day: utc ? d.getUTCDate() : d.getDate(),
    hours: utc ? d.getUTCHours() : d.getHours(),
    minutes: utc ? d.getUTCMinutes() : d.getMinutes(),
    seconds: utc ? d.getUTCSeconds() : d.getSeconds(),
    ms: d.getUTCMilliseconds(),
  };
}

/** 14:03:27 (24-hour, seconds; `ms` adds .123, `date` puts 2026-12-01 in front). */
export function clock(t, { date = false, ms = false, seconds = true } = {}) {
  if (!Number.isFinite(t)) return "–";
  const p = clockParts(t);
  let text = `${pad(p.hours)}:${pad(p.minutes)}`;
  if (seconds) text += `:${pad(p.seconds)}`;
  if (ms) text += `.${pad(p.ms, 3)}`;
  return date ? `${p.year}-${pad(p.month)}-${pad(p.day)} ${text}` : text;
}

/** Seconds since a reading, in the largest unit that keeps it short. */
export function age(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 10) return `${Math.max(seconds, 0).toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

// -- wavemeter values ------------------------------------------------------------------

/** A frequency (THz) in the chosen unit: {text, unit}. */
export function optical(thz) {
  if (prefs.frequency === "nm") {
    return { text: formatValue(Number.isFinite(thz) ? C_NM_THZ / thz : NaN, precisionOf("nm")),
             unit: "nm" };
  }
  return { text: formatValue(thz, precisionOf("THz")), unit: "THz" };
}

// -- statuses and elements -------------------------------------------------------------

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
