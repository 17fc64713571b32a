// A live trace per wavemeter channel: the frequency readings of the last minutes.
//
// Points are kept sorted by read time without duplicates, so readings that arrive
// twice (a replay, a gap filled from the logger) or late land where they belong.

import { serverNow } from "./clock.js";
import { epochSeconds } from "./format.js";
import { timePlot } from "./plot.js";

export const TRACE_WINDOW_S = 300;
const MIN_WINDOW_S = 60;
const MAX_POINTS = 10_000;
const MIN_SPAN_THZ = 2e-6;

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

export class Trace {
  constructor(parent, channel) {
    this.channel = channel;
    this.name = "";
    this.t = [];
    this.f = [];
    this.reference = null;
    const { figure, heading, plot } = timePlot(parent, {
      title: `channel ${channel}`,
      height: matchMedia("(max-width: 40rem)").matches ? 120 : 170,
      series: [{ label: "THz", value: (u, v) => (v == null ? "–" : v.toFixed(6)) }],
      yValues: (u, splits, axis, space, step) => this.offsetLabels(splits, step),
      // Up to the window, at least a minute, ending now: a stale trace shows its age.
      xRange: (u, min) => {
        const now = serverNow();
        return [Math.max(Math.min(min ?? now, now - MIN_WINDOW_S), now - TRACE_WINDOW_S), now];
      },
      // At least a couple of MHz tall, so noise is not magnified into a false alarm.
      yRange: (u, min, max) => {
        const pad = Math.max((max - min) * 0.1, (MIN_SPAN_THZ - (max - min)) / 2);
        return [min - pad, max + pad];
      },
      legend: false,
    });
    figure.id = `trace-${channel}`;
    this.heading = heading;
    this.plot = plot;
  }

  /** Axis labels: MHz from the reference, with as many decimals as the tick step needs. */
  offsetLabels(splits, stepThz) {
    if (this.reference === null) return splits.map(() => "");
    const digits = Math.min(Math.max(0, -Math.floor(Math.log10(stepThz * 1e6) + 1e-9)), 6);
    return splits.map((v) => ((v - this.reference) * 1e6).toFixed(digits));
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
    if (thz !== null && this.reference === null) {
      this.reference = Math.round(thz * 1e6) / 1e6;
    }
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
    const ref = this.reference === null ? "" : ` — MHz from ${this.reference.toFixed(6)} THz`;
    const heading = `${this.channel} ${this.name}${ref}`;
    if (this.heading.textContent !== heading) this.heading.textContent = heading;
    this.plot.setData([this.t.slice(), this.f.slice()]);
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
