// History: chosen sensors over a chosen time range, one plot per unit.
//
// The server downsamples: the bucket width is the range divided by the plot's
// width in pixels, so a year costs as much to draw as a minute. For a range that
// ends now, the newest samples (`logger/<sensor>` events) are appended live and
// the window slides. Pressures go on a log axis.

import { getJson } from "./api.js";
import { serverNow } from "./clock.js";
import { element, epochSeconds } from "./format.js";
import { timePlot } from "./plot.js";

const LOG_UNITS = new Set(["mbar", "Torr", "Pa", "hPa", "bar", "psi"]);
const MAX_LIVE_POINTS = 20_000;

function localInputValue(seconds) {
  const date = new Date(seconds * 1000);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

/** One plot of the sensors that share a unit. */
class UnitPlot {
  /** `span()` gives the time range to show, [start, end] in seconds since the epoch. */
  constructor(parent, unit, sensors, span) {
    this.unit = unit;
    this.sensors = sensors;
    this.log = LOG_UNITS.has(unit);
    this.data = new Map(sensors.map((name) => [name, [[], []]]));
    const { figure, plot } = timePlot(parent, {
      title: `${sensors.join(", ")} (${unit || "no unit"}${this.log ? ", log axis" : ""})`,
      series: sensors.map((name) => ({ label: name, spanGaps: true })),
      xRange: () => span(),
      log: this.log,
      height: 240,
    });
    figure.dataset.unit = unit;
    this.plot = plot;
    this.dirty = true;
  }

  value(v) {
    return this.log && !(v > 0) ? null : v;
  }

  set(name, times, values) {
    this.data.set(name, [times, values.map((v) => this.value(v))]);
    this.dirty = true;
  }

  append(name, t, v, since) {
    const [times, values] = this.data.get(name);
    if (times.length && t <= times[times.length - 1]) return;
    times.push(t);
    values.push(this.value(v));
    let drop = 0;
    while (drop < times.length && times[drop] < since) drop += 1;
    drop = Math.max(drop, times.length - MAX_LIVE_POINTS);
    if (drop > 0) {
      times.splice(0, drop);
      values.splice(0, drop);
    }
    this.dirty = true;
  }

  redraw() {
    if (!this.dirty) return;
    this.dirty = false;
    this.plot.setData(uPlot.join(this.sensors.map((name) => this.data.get(name))));
  }
}

export class History {
  constructor({ form, sensorList, range, custom, start, end, message, plots }) {
    Object.assign(this, { form, sensorList, range, custom, start, end, message, plots });
    this.units = new Map();
    this.plotsByUnit = new Map();
    this.live = null;
    this.request = 0;
    range.addEventListener("change", () => {
      custom.hidden = range.value !== "custom";
      if (!custom.hidden && !start.value) {
        const now = serverNow();
        start.value = localInputValue(now - 3600);
        end.value = localInputValue(now);
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.show();
    });
  }

  /** List the sensors the logger knows (GET /api/v1/sensors), keeping what is ticked. */
  setSensors(sensors) {
    const same = sensors.length === this.units.size
      && sensors.every((s) => this.units.get(s.sensor) === (s.unit ?? ""));
    if (same) return;  // leave the list (and what is being clicked) alone
    const ticked = new Set(this.chosen());
    const first = this.units.size === 0;
    this.units = new Map(sensors.map((s) => [s.sensor, s.unit ?? ""]));
    this.sensorList.replaceChildren(...sensors.map((s, i) => {
      const box = element("input", { type: "checkbox", name: "sensor", value: s.sensor,
                                     id: `sensor-${i}` });
      box.checked = ticked.has(s.sensor) || (first && LOG_UNITS.has(s.unit));
      const text = s.unit ? `${s.sensor} (${s.unit})` : s.sensor;
      return element("label", { htmlFor: box.id }, box, ` ${text}`);
    }));
  }

  chosen() {
    return [...this.sensorList.querySelectorAll("input:checked")].map((box) => box.value);
  }

  /** [start, end] in seconds since the epoch, and whether the range ends now. */
  span() {
    if (this.range.value !== "custom") {
      const end = serverNow();
      return [end - Number(this.range.value), end, true];
    }
    const start = Date.parse(this.start.value) / 1000;
    const end = Date.parse(this.end.value) / 1000;
    if (!Number.isFinite(start) || !Number.isFinite(end)) {
      throw new Error("give both a start and an end time");
    }
    if (end <= start) throw new Error("the end must come after the start");
    return [start, end, false];
  }

  say(text, ok = false) {
    this.message.textContent = text;
    this.message.className = ok ? "message ok" : "message";
  }

  async show() {
    const sensors = this.chosen();
    const request = ++this.request;
    let start;
    let end;
    let live;
    try {
      if (!sensors.length) throw new Error("tick at least one sensor");
      [start, end, live] = this.span();
    } catch (error) {
      this.say(error.message);
      return;
    }
    this.say("loading…", true);
    this.live = null;
    this.plotsByUnit.clear();
    this.plots.replaceChildren();
    const byUnit = new Map();
    for (const name of sensors) {
      const unit = this.units.get(name) ?? "";
      byUnit.set(unit, [...(byUnit.get(unit) ?? []), name]);
    }
    const span = live ? () => [serverNow() - (end - start), serverNow()] : () => [start, end];
    for (const [unit, names] of byUnit) {
      this.plotsByUnit.set(unit, new UnitPlot(this.plots, unit, names, span));
    }
    const width = Math.max(this.plots.clientWidth, 200);
    const every = Math.max(1, Math.ceil((end - start) / width));
    try {
      const series = await Promise.all(sensors.map((name) => getJson(
        `/api/v1/series?${new URLSearchParams({
          sensor: name, start: new Date(start * 1000).toISOString(),
          end: new Date(end * 1000).toISOString(), every: `${every}s`, agg: "avg",
        })}`)));
      if (request !== this.request) return;
      let points = 0;
      sensors.forEach((name, i) => {
        const rows = series[i].points;
        points += rows.length;
        this.plotsByUnit.get(this.units.get(name) ?? "").set(
          name, rows.map(([time]) => epochSeconds(time)), rows.map(([, value]) => value));
      });
      this.live = live ? { sensors: new Set(sensors), seconds: end - start } : null;
      this.redraw();
      this.say(`${points} points, ${every} s per point${live ? ", live" : ""}`, true);
    } catch (error) {
      if (request === this.request) this.say(`history: ${error.message}`);
    }
  }

  /** A `logger/<sensor>` event: appended when that sensor is plotted over a range ending now. */
  sample(data) {
    if (!this.live?.sensors.has(data.sensor) || data.status !== "ok") return;
    const t = epochSeconds(data.timestamp);
    if (t === null) return;
    const plot = this.plotsByUnit.get(this.units.get(data.sensor) ?? "");
    plot?.append(data.sensor, t, data.value, serverNow() - this.live.seconds);
  }

  redraw() {
    for (const plot of this.plotsByUnit.values()) {
      if (this.live) plot.dirty = true;  // the window slides
      plot.redraw();
    }
  }
}
