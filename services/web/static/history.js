// History: chosen sensors over a typed time range, one plot per unit, each exportable.
//
// Ranges are typed as people say them (-1h, today, 2026-12-01Z, ISO 8601) and resolved
// by the server (/api/v1/range) in the zone the page shows. The server downsamples:
// the bucket width is the range divided by the plot's width in pixels, so a year costs
// as much to draw as a minute. For a range that ends now the newest samples
// (`logger/<sensor>` events) are appended live and the window slides. Pressures go on
// a log axis, wavemeter frequencies are MHz offsets from each channel's reference.
// The address bar holds the view (sensors and range as typed); the permalink holds the
// same view with the range fixed.

import { getJson } from "./api.js";
import { serverNow } from "./clock.js";
import { clock, displayUnit, element, epochSeconds, precisionOf, quantity,
         zoneName } from "./format.js";
import { download, plotPng, setSeriesLabel, timePlot } from "./plot.js";
import { prefs } from "./prefs.js";
import { references } from "./references.js";
import { referenceText } from "./traces.js";

const LOG_UNITS = new Set(["mbar", "Torr", "Pa", "hPa", "bar", "psi"]);
const MAX_LIVE_POINTS = 20_000;
const LOG_PAD = 10 ** 0.25;  // a quarter decade above and below the data

/** The wavemeter channel a sensor records (`wavemeter/3` -> 3), or null. */
function channelOf(sensor) {
  const match = /^wavemeter\/(\d+)$/.exec(sensor);
  return match ? Number(match[1]) : null;
}

const iso = (seconds) => new Date(seconds * 1000).toISOString();

/** One plot of the sensors that share a unit. */
class UnitPlot {
  /** `span()` gives the time range shown, [start, end] in seconds since the epoch. */
  constructor(parent, unit, sensors, labels, span) {
    this.unit = unit;
    this.sensors = sensors;
    this.labels = labels;  // sensor -> "wavemeter/1 · 397 cooling"
    this.span = span;
    this.log = LOG_UNITS.has(unit);
    this.offsets = unit === "THz";
    this.data = new Map(sensors.map((name) => [name, [[], []]]));
    this.firsts = new Map();
    this.largest = 0;
    this.view = timePlot(parent, {
      title: this.title(),
      axes: [{
        scale: "y",
        log: this.log,
        label: () => this.axisLabel(),
        range: this.log ? (u, min, max) => (min > 0 ? [min / LOG_PAD, max * LOG_PAD]
          : [1e-11, 1e-9]) : undefined,
      }],
      series: sensors.map((name) => ({
        label: this.seriesLabel(name), spanGaps: true,
        spec: () => precisionOf(this.offsets ? "MHz" : unit),
        factor: () => this.display().factor,
        unit: () => (this.offsets ? "MHz" : this.display().unit),
      })),
      xRange: () => span(),
      height: matchMedia("(max-width: 40rem)").matches ? 220 : 260,
    });
    this.view.figure.dataset.unit = unit;
    this.dirty = true;
  }

  title() {
    const what = this.offsets ? "frequency offsets" : quantity(this.unit);
    return `${what}: ${this.sensors.map((s) => this.labels.get(s) ?? s).join(", ")}${
      this.log ? " (log axis)" : ""}`;
  }

  /** The unit values are shown in: a prefix for the data (mW, µW), °C if chosen. */
  display() {
    return displayUnit(this.unit, this.largest);
  }

  axisLabel() {
    if (this.offsets) return "offset (MHz)";
    return `${quantity(this.unit)} (${this.display().unit || "no unit"})`;
  }

  /** The reference (THz) a frequency sensor's offsets are measured from. */
  reference(name) {
    const channel = channelOf(name);
    return (channel !== null ? references.of(channel)?.thz : null) ?? this.firsts.get(name) ?? null;
  }

  seriesLabel(name) {
    const label = this.labels.get(name) ?? name;
    if (!this.offsets) return label;
    const channel = channelOf(name);
    if (channel !== null) return `${label}, ${referenceText(channel)}`;
    const ref = this.reference(name);
    return ref === null ? label : `${label}, MHz from ${ref.toFixed(6)} THz`;
  }

  value(v) {
    return this.log && !(v > 0) ? null : v;
  }

  noteValues(name, values) {
    for (const v of values) {
      if (Number.isFinite(v)) {
        this.largest = Math.max(this.largest, Math.abs(v));
        if (!this.firsts.has(name)) this.firsts.set(name, Math.round(v * 1e6) / 1e6);
      }
    }
  }

  set(name, times, values) {
    this.data.set(name, [times, values.map((v) => this.value(v))]);
    this.noteValues(name, values);
    this.dirty = true;
  }

  append(name, t, v, since) {
    const [times, values] = this.data.get(name);
    if (times.length && t <= times[times.length - 1]) return;
    times.push(t);
    values.push(this.value(v));
    this.noteValues(name, [v]);
    let drop = 0;
    while (drop < times.length && times[drop] < since) drop += 1;
    drop = Math.max(drop, times.length - MAX_LIVE_POINTS);
    if (drop > 0) {
      times.splice(0, drop);
      values.splice(0, drop);
    }
    this.dirty = true;
  }

  /** What is drawn: offsets in MHz, or values converted to the display unit. */
  shown(name) {
    const [times, values] = this.data.get(name);
    if (this.offsets) {
      const ref = this.reference(name);
      return [times, values.map((v) => (v === null || ref === null ? null : (v - ref) * 1e6))];
    }
    const { convert } = this.display();
    return [times, values.map((v) => (v === null ? null : convert(v)))];
  }

  redraw() {
    if (!this.dirty) return;
    this.dirty = false;
    this.sensors.forEach((name, i) => setSeriesLabel(this.view, i + 1, this.seriesLabel(name)));
    this.view.plot.setData(uPlot.join(this.sensors.map((name) => this.shown(name))));
  }
}

export class History {
  constructor({ form, sensorList, range, from, to, zone, message, plots, permalink }) {
    Object.assign(this, { form, sensorList, range, from, to, zone, message, plots, permalink });
    this.sensors = new Map();  // sensor -> its entry of /api/v1/sensors
    this.plotsByUnit = new Map();
    this.live = null;
    this.view = null;  // what is plotted: {sensors, start, end, every, live}
    this.request = 0;
    range.addEventListener("change", () => {
      if (!range.value) return;
      from.value = range.value;
      to.value = "now";
    });
    for (const field of [from, to]) {
      field.addEventListener("input", () => { range.value = ""; });
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.show();
    });
    this.showZone();
  }

  showZone() {
    this.zone.textContent = `Times: ISO 8601 (2026-12-01T14:00Z, 2026-12-01Z), -15min, -1h, `
      + `-2d, now, today; without an offset they are ${zoneName()} times.`;
  }

  /** List the sensors the logger knows (GET /api/v1/sensors) by device, keeping what is ticked. */
  setSensors(entries) {
    const same = entries.length === this.sensors.size && entries.every((s) => {
      const known = this.sensors.get(s.sensor);
      return known && known.unit === s.unit && known.device === s.device && known.name === s.name;
    });
    if (same) return;  // leave the list (and what is being clicked) alone
    const ticked = new Set(this.chosen());
    const first = this.sensors.size === 0;
    this.sensors = new Map(entries.map((s) => [s.sensor, s]));
    const groups = new Map();
    for (const s of entries) {
      const device = s.device ?? "other";
      groups.set(device, [...(groups.get(device) ?? []), s]);
    }
    let i = 0;
    this.sensorList.replaceChildren(...[...groups].sort(([a], [b]) => (
      (a === "other") - (b === "other") || a.localeCompare(b))).map(([device, group]) => {
      const boxes = group.map((s) => {
        const box = element("input", { type: "checkbox", name: "sensor", value: s.sensor,
                                       id: `sensor-${i++}` });
        box.checked = ticked.has(s.sensor) || (first && !this.wanted && LOG_UNITS.has(s.unit));
        if (this.wanted?.has(s.sensor)) box.checked = true;
        const name = s.name ? element("span", { className: "name", textContent: ` ${s.name}` })
          : "";
        const label = element("label", { htmlFor: box.id }, box, ` ${s.sensor}`, name,
                              element("span", { className: "hint",
                                                textContent: ` (${s.unit || "no unit"})` }));
        if (s.description) label.title = s.description;
        return label;
      });
      return element("fieldset", { className: "device" },
                     element("legend", { textContent: device }), ...boxes);
    }));
  }

  /** "wavemeter/1 · 397 cooling": a sensor's id and configured name. */
  label(sensor) {
    const name = this.sensors.get(sensor)?.name;
    return name ? `${sensor} · ${name}` : sensor;
  }

  chosen() {
    return [...this.sensorList.querySelectorAll("input:checked")].map((box) => box.value);
  }

  /** Open the view the address says (?sensors=a,b&from=-1h&to=now), if it says one. */
  restore(search) {
    const params = new URLSearchParams(search);
    const sensors = params.get("sensors");
    if (!sensors) return false;
    this.wanted = new Set(sensors.split(",").filter(Boolean));
    this.from.value = params.get("from") ?? "-1h";
    this.to.value = params.get("to") ?? "now";
    this.range.value = [...this.range.options].some((o) => o.value === this.from.value)
      && this.to.value === "now" ? this.from.value : "";
    for (const box of this.sensorList.querySelectorAll("input")) {
      box.checked = this.wanted.has(box.value);
    }
    return true;
  }

  say(text, ok = false) {
    this.message.textContent = text;
    this.message.className = ok ? "message ok" : "message";
  }

  /** The typed range on the server's clock: [start, end] in seconds, and whether it is live. */
  async resolve() {
    const from = this.from.value.trim();
    const to = this.to.value.trim() || "now";
    const params = new URLSearchParams({ start: from, end: to });
    if (prefs.zone === "UTC") params.set("tz", "UTC");
    else params.set("tz", zoneName());
    const range = await getJson(`/api/v1/range?${params}`);
    return [epochSeconds(range.start), epochSeconds(range.end), to.toLowerCase() === "now"];
  }

  async show() {
    const sensors = this.chosen();
    const request = ++this.request;
    let start;
    let end;
    let live;
    try {
      if (!sensors.length) throw new Error("tick at least one sensor");
      [start, end, live] = await this.resolve();
    } catch (error) {
      if (request === this.request) this.say(error.message);
      return;
    }
    if (request !== this.request) return;
    this.wanted = null;
    this.say("loading…", true);
    this.live = null;
    this.plotsByUnit.clear();
    this.plots.replaceChildren();
    const byUnit = new Map();
    for (const name of sensors) {
      const unit = this.sensors.get(name)?.unit ?? "";
      byUnit.set(unit, [...(byUnit.get(unit) ?? []), name]);
    }
    const seconds = end - start;
    const span = live ? () => [serverNow() - seconds, serverNow()] : () => [start, end];
    const labels = new Map(sensors.map((s) => [s, this.label(s)]));
    for (const [unit, names] of byUnit) {
      const plot = new UnitPlot(this.plots, unit, names, labels, span);
      this.plotsByUnit.set(unit, plot);
      this.exports(plot);
    }
    const width = Math.max(this.plots.clientWidth, 200);
    const every = Math.max(1, Math.ceil(seconds / width));
    this.view = { sensors, start, end, every, live, seconds };
    this.remember();
    try {
      const series = await Promise.all(sensors.map((name) => getJson(this.seriesUrl(
        name, start, end))));
      if (request !== this.request) return;
      let points = 0;
      sensors.forEach((name, i) => {
        const rows = series[i].points;
        points += rows.length;
        this.plotsByUnit.get(this.sensors.get(name)?.unit ?? "").set(
          name, rows.map(([time]) => epochSeconds(time)), rows.map(([, value]) => value));
      });
      this.live = live ? { sensors: new Set(sensors), seconds } : null;
      this.redraw();
      this.say(`${points} points, ${every} s per point${live ? ", live" : ""}`, true);
    } catch (error) {
      if (request === this.request) this.say(`history: ${error.message}`);
    }
  }

  /** /api/v1/series for a sensor over [start, end], as plotted (buckets of the view). */
  seriesUrl(sensor, start, end, format = "json") {
    const params = new URLSearchParams({ sensor, start: iso(start), end: iso(end),
                                         every: `${this.view.every}s`, agg: "avg" });
    if (format !== "json") params.set("format", format);
    return `/api/v1/series?${params}`;
  }

  /** The range shown now: the view's, or the last `seconds` up to now while live. */
  shownSpan() {
    const { start, end, live, seconds } = this.view;
    if (!live) return [start, end];
    const now = Math.floor(serverNow());
    return [now - seconds, now];
  }

  /** CSV (one per sensor, exactly what /api/v1/series?format=csv answers) and PNG buttons. */
  exports(plot) {
    for (const sensor of plot.sensors) {
      const csv = element("button", { type: "button", className: "small csv",
                                      textContent: plot.sensors.length > 1 ? `CSV ${sensor}` : "CSV" });
      csv.dataset.sensor = sensor;
      csv.setAttribute("aria-label", `download ${sensor} as CSV`);
      csv.addEventListener("click", () => {
        const [start, end] = this.shownSpan();
        download(this.seriesUrl(sensor, start, end, "csv"),
                 `${sensor.replaceAll("/", "-")}_${stamp(start)}_${stamp(end)}.csv`);
      });
      plot.view.tools.append(csv);
    }
    const png = element("button", { type: "button", className: "small png", textContent: "PNG" });
    png.setAttribute("aria-label", `download the ${plot.unit || "no unit"} plot as PNG`);
    png.addEventListener("click", async () => {
      const [start, end] = this.shownSpan();
      try {
        download(await plotPng(plot.view), `${plot.sensors.join("+").replaceAll("/", "-")}_${
          stamp(start)}_${stamp(end)}.png`);
      } catch (error) {
        this.say(`PNG: ${error.message}`);
      }
    });
    plot.view.tools.append(png);
  }

  /** The address bar says what is shown (as typed); the permalink fixes the range. */
  remember() {
    const { sensors, start, end } = this.view;
    const typed = new URLSearchParams({ sensors: sensors.join(","), from: this.from.value.trim(),
                                        to: this.to.value.trim() || "now" });
    history.replaceState(null, "", `${location.pathname}?${typed}`);
    const fixed = new URLSearchParams({ sensors: sensors.join(","), from: iso(start),
                                        to: iso(end) });
    this.permalink.href = `${location.origin}${location.pathname}?${fixed}`;
    this.permalink.hidden = false;
    this.permalink.title = `${clock(start, { date: true })} to ${clock(end, { date: true })}`;
  }

  /** A `logger/<sensor>` event: appended when that sensor is plotted over a range ending now. */
  sample(data) {
    if (!this.live?.sensors.has(data.sensor) || data.status !== "ok") return;
    const t = epochSeconds(data.timestamp);
    if (t === null) return;
    const plot = this.plotsByUnit.get(this.sensors.get(data.sensor)?.unit ?? "");
    plot?.append(data.sensor, t, data.value, serverNow() - this.live.seconds);
  }

  /** Draw again: `all` after a change of unit, zone or reference. */
  redraw(all = false) {
    for (const plot of this.plotsByUnit.values()) {
      if (this.live || all) plot.dirty = true;  // the window slides
      plot.redraw();
    }
  }
}

/** 20261201T140000Z: a time for a file name. */
function stamp(seconds) {
  return iso(seconds).replace(/[-:]/g, "").replace(/\.\d+/, "");
}
