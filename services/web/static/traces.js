// A live trace per wavemeter channel: its frequency over the last five minutes, as MHz
// from the channel's reference (its setpoint, or a value chosen here).
//
// Points are kept sorted by read time without duplicates, so readings that arrive
// twice (a replay, a gap filled from the logger) or late land where they belong.

import { serverNow } from "./clock.js";
import { C_NM_THZ, element, epochSeconds, optical, precisionOf } from "./format.js";
import { timePlot } from "./plot.js";
import { prefs } from "./prefs.js";
import { references } from "./references.js";

export const TRACE_WINDOW_S = 300;
const MAX_POINTS = 10_000;
const MIN_SPAN_MHZ = 2;
const GAP_S = 5;  // readings further apart than this are not joined by a line

/** Index of the first element of the sorted array `xs` that is >= `x`. */
function lowerBound(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** "MHz from 755.222700 THz (setpoint)": what a channel's offsets are measured from. */
export function referenceText(channel) {
  const ref = references.of(channel);
  if (ref === null) return "MHz from the first reading";
  const { text, unit } = optical(ref.thz);
  return `MHz from ${text} ${unit} (${ref.kind})`;
}

/** A typed frequency (THz) or vacuum wavelength (nm) in THz; NaN if it is not a number. */
export function typedThz(text, unit) {
  const value = Number.parseFloat(String(text).replace(",", "."));
  if (!Number.isFinite(value) || value <= 0) return NaN;
  return unit === "nm" ? C_NM_THZ / value : value;
}

export class Trace {
  constructor(parent, channel) {
    this.channel = channel;
    this.name = "";
    this.t = [];
    this.f = [];
    this.view = timePlot(parent, {
      title: `channel ${channel}`,
      height: matchMedia("(max-width: 40rem)").matches ? 150 : 180,
      axes: [{
        scale: "y",
        label: () => "offset (MHz)",
        // At least a couple of MHz tall, so noise is not magnified into a false alarm.
        range: (u, min, max) => {
          if (!Number.isFinite(min)) return [-MIN_SPAN_MHZ / 2, MIN_SPAN_MHZ / 2];
          const pad = Math.max((max - min) * 0.1, (MIN_SPAN_MHZ - (max - min)) / 2);
          return [min - pad, max + pad];
        },
      }],
      series: [{ label: "offset", spec: () => precisionOf("MHz"), unit: () => "MHz" }],
      // Always the whole window, ending now: the title's five minutes, a gap where none came.
      xRange: () => {
        const now = serverNow();
        return [now - TRACE_WINDOW_S, now];
      },
      ms: true,
    });
    this.view.figure.id = `trace-${channel}`;
    this.title = element("span", { className: "title" });
    this.reference = element("span", { className: "sub" });
    this.view.heading.replaceChildren(this.title, " ", this.reference);
    this.referenceForm();
  }

  /** A small form to choose the reference (in the page's unit) or go back to the setpoint. */
  referenceForm() {
    const field = element("input", { type: "text", inputMode: "decimal", size: 12,
                                     className: "reference", id: `reference-${this.channel}` });
    field.setAttribute("aria-label", `reference of channel ${this.channel}`);
    const unit = element("span", { className: "unit" });
    const use = element("button", { type: "submit", textContent: "Use" });
    const reset = element("button", { type: "button", textContent: "Setpoint" });
    reset.title = "offsets from the lock's setpoint (or the first reading)";
    const message = element("span", { className: "hint", role: "status" });
    const form = element("form", { className: "reference-form", hidden: true },
                         element("label", { htmlFor: field.id, textContent: "reference " }),
                         field, unit, use, reset, message);
    const toggle = element("button", { type: "button", textContent: "Reference…",
                                       className: "small" });
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-label", `choose the reference of channel ${this.channel}`);
    toggle.addEventListener("click", () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      unit.textContent = prefs.frequency;
      const ref = references.of(this.channel);
      field.value = ref ? optical(ref.thz).text : "";
      if (!form.hidden) field.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const thz = typedThz(field.value, prefs.frequency);
      if (!Number.isFinite(thz)) {
        message.textContent = `type a ${prefs.frequency === "nm" ? "wavelength" : "frequency"}`;
        return;
      }
      message.textContent = "";
      prefs.setReference(this.channel, thz);
    });
    reset.addEventListener("click", () => {
      prefs.setReference(this.channel, null);
      const ref = references.of(this.channel);
      field.value = ref ? optical(ref.thz).text : "";
    });
    this.view.tools.append(toggle);
    this.view.figure.append(form);
  }

  /** Add a reading: seconds since the epoch and THz (null for a reading without a value). */
  add(t, thz) {
    if (t === null) return;
    const n = this.t.length;
    if (n === 0 || t > this.t[n - 1]) {
      this.t.push(t);
      this.f.push(thz);
    } else {
      const i = lowerBound(this.t, t);
      if (this.t[i] === t) return;
      this.t.splice(i, 0, t);
      this.f.splice(i, 0, thz);
    }
    if (thz !== null) references.note(this.channel, thz);
  }

  /** A `wavemeter/<n>` event or channel object; only ok readings carry a value. */
  addReading(data) {
    this.add(epochSeconds(data.timestamp), data.status === "ok" ? data.frequency_thz : null);
    if (data.name) this.name = data.name;
  }

  /** Time of the newest reading, seconds since the epoch (null when empty). */
  get newest() {
    return this.t.length ? this.t[this.t.length - 1] : null;
  }

  /** Drop what left the window and draw; the time axis slides with the clock. */
  redraw(now) {
    const drop = Math.max(lowerBound(this.t, now - TRACE_WINDOW_S), this.t.length - MAX_POINTS);
    if (drop > 0) {
      this.t.splice(0, drop);
      this.f.splice(0, drop);
    }
    const heading = `${this.channel} · ${this.name}`;
    if (this.title.textContent !== heading) this.title.textContent = heading;
    const reference = referenceText(this.channel);
    if (this.reference.textContent !== reference) this.reference.textContent = reference;
    const ref = references.of(this.channel)?.thz ?? null;
    const times = [];
    const offsets = [];
    this.t.forEach((t, i) => {
      if (i && t - this.t[i - 1] > GAP_S) {  // no reading for a while: a gap, not a line
        times.push(this.t[i - 1] + GAP_S / 2);
        offsets.push(null);
      }
      times.push(t);
      offsets.push(this.f[i] === null || ref === null ? null : (this.f[i] - ref) * 1e6);
    });
    this.view.plot.setData([times, offsets]);
  }
}

export class Traces {
  constructor(parent) {
    this.parent = parent;
    this.byChannel = new Map();
  }

  get(channel) {
    let trace = this.byChannel.get(channel);
    if (!trace) {
      trace = new Trace(this.parent, channel);
      this.byChannel.set(channel, trace);
      const figures = [...this.parent.children].sort(
        (a, b) => Number(a.id.split("-")[1]) - Number(b.id.split("-")[1]));
      this.parent.append(...figures);
    }
    return trace;
  }

  redraw(now) {
    for (const trace of this.byChannel.values()) trace.redraw(now);
  }
}
