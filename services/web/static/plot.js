// uPlot time plots: labelled axes with units, time ticks in the chosen zone, tick labels
// that never repeat, hover values with the instrument's precision, export as PNG.
//
// Colours are the Okabe–Ito palette (told apart with every common colour vision
// deficiency), and the series of one plot differ in dash pattern too.

import { clock, element, formatValue, tickLabels, zoneLabel } from "./format.js";
import { prefs } from "./prefs.js";

export const COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
                        "#000000", "#7f7f7f"];
const DASHES = [[], [7, 3], [2, 2], [9, 3, 2, 3]];
const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const LABEL_FONT = `bold ${FONT}`;
const DAY_S = 86400;
/** Time tick steps (s): enough ticks for any width, from milliseconds to years. */
const TIME_STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30,
                    60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 43200,
                    DAY_S, 2 * DAY_S, 3 * DAY_S, 7 * DAY_S, 14 * DAY_S, 30 * DAY_S, 91 * DAY_S,
                    182 * DAY_S, 365 * DAY_S];

/** Time tick labels: 24-hour, with seconds unless ticks are whole minutes apart (the hover
 * always has them); the date as well once ticks are days apart. */
function timeLabels(splits, step) {
  const labels = splits.map((t) => {
    if (step >= DAY_S) return clock(t, { date: true }).slice(0, 10);
    if (step >= 3600 && (splits.at(-1) - splits[0]) > DAY_S) {
      return clock(t, { date: true, seconds: false }).slice(5);
    }
    return clock(t, { ms: step < 1, seconds: step < 60 });
  });
  return new Set(labels).size === labels.length ? labels : splits.map((t) => clock(t, {
    date: true, ms: step < 1 }));
}

/** The date(s) the time axis shows, for its label: "2026-12-01" or "2026-11-30 – 12-01". */
function datesOf(u) {
  const { min, max } = u.scales.x;
  if (!Number.isFinite(min) || !Number.isFinite(max)) return "";
  const first = clock(min, { date: true }).slice(0, 10);
  const last = clock(max, { date: true }).slice(0, 10);
  return first === last ? first : `${first} – ${last.slice(5)}`;
}

const textWidth = (() => {
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = FONT;
  return (text) => ctx.measureText(text).width;
})();

/**
 * A figure with a heading and a uPlot time plot that follows the figure's width.
 *
 * `axes`: one or two y axes, each {scale, label() → text, log, range, spec} (`spec` is
 * the precision of its values); `series`: {label, scale, spec, unit, ...uPlot options}.
 * The tick labels last drawn are kept in `view.ticks` ({x: [...], <scale>: [...]}).
 */
export function timePlot(parent, { title, axes, series, xRange, height = 170, legend = true,
                                   ms = false }) {
  const heading = element("h3", {}, title);
  const tools = element("div", { className: "plot-tools" });
  const holder = element("div", { className: "plot-holder" });
  const figure = element("figure", { className: "plot" },
                         element("div", { className: "plot-head" }, heading, tools), holder);
  parent.append(figure);
  const view = { figure, heading, tools, ticks: {}, plot: null };
  const width = () => Math.max(holder.clientWidth, 160);
  const scales = { x: { time: true, range: xRange } };
  for (const axis of axes) {
    scales[axis.scale] = axis.log ? { distr: 3, log: 10, range: axis.range }
      : { auto: true, range: axis.range };
  }
  const yAxes = axes.map((axis, i) => ({
    scale: axis.scale,
    side: i === 0 ? 3 : 1,
    label: () => axis.label(),
    labelFont: LABEL_FONT,
    labelSize: 18,
    font: FONT,
    grid: { show: i === 0 },
    space: 24,
    stroke: axes.length > 1 ? COLOURS[i] : "#1f2328",
    values: (u, splits, axisIdx, space, step) => {
      const labels = tickLabels(splits, step, axis.log);
      view.ticks[axis.scale] = labels.filter(Boolean);
      return labels;
    },
    size: (u, values) => 26 + Math.max(24, ...(values ?? []).map(textWidth)),
  }));
  const plot = new uPlot({
    width: width(),
    height,
    padding: [10, axes.length > 1 ? 8 : 28, 0, 4],
    tzDate: (t) => (prefs.zone === "UTC" ? uPlot.tzDate(new Date(t * 1000), "Etc/UTC")
      : new Date(t * 1000)),
    scales,
    axes: [{
      // 46 px between "14:05" labels; 62 px once ticks come less than a minute apart.
      space: (u, axis, min, max, size) => (
        (TIME_STEPS.find((step) => step >= (max - min) / size * 46) ?? DAY_S) >= 60 ? 46 : 62),
      incrs: TIME_STEPS,
      font: FONT,
      labelFont: LABEL_FONT,
      labelSize: 18,
      label: (u) => `time (${zoneLabel(u.scales.x.max)}), ${datesOf(u)}`,
      values: (u, splits, axisIdx, space, step) => {
        const labels = timeLabels(splits, step);
        view.ticks.x = labels;
        return labels;
      },
    }, ...yAxes],
    series: [
      { label: "time", value: (u, t) => (t == null ? "–" : clock(t, { date: true, ms })) },
      ...series.map((s, i) => ({
        stroke: COLOURS[i % COLOURS.length],
        dash: DASHES[Math.floor(i / 2) % DASHES.length],
        width: 1.5,
        value: (u, v) => (v == null ? "–" : `${formatValue(v, s.spec(), s.factor?.() ?? 1)} ${
          s.unit()}`),
        ...s,
        unit: undefined, spec: undefined, factor: undefined,
      })),
    ],
    legend: { show: legend, live: true },
  }, [[], ...series.map(() => [])], holder);
  view.plot = plot;
  new ResizeObserver(() => {
    if (plot.width !== width()) plot.setSize({ width: width(), height });
  }).observe(holder);
  return view;
}

/** Rename series `index` (1 = the first after time) in the plot and its legend. */
export function setSeriesLabel(view, index, text) {
  const series = view.plot.series[index];
  if (series.label === text) return;
  series.label = text;
  const label = view.figure.querySelectorAll(".u-legend .u-series")[index]
    ?.querySelector(".u-label");
  if (label) label.textContent = text;
}

/** The figure as a PNG: its title, the plot with its axes, and the series' legend. */
export function plotPng(view) {
  const source = view.plot.ctx.canvas;
  const ratio = source.width / view.plot.width;
  const line = 18 * ratio;
  const shown = view.plot.series.slice(1).filter((s) => s.show);
  const canvas = document.createElement("canvas");
  canvas.width = source.width;
  canvas.height = source.height + line * (2 + shown.length);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#1f2328";
  ctx.font = `600 ${14 * ratio}px system-ui, sans-serif`;
  ctx.fillText(view.heading.textContent, 8 * ratio, 14 * ratio);
  ctx.drawImage(source, 0, line * 1.2);
  ctx.font = `${12 * ratio}px system-ui, sans-serif`;
  shown.forEach((s, i) => {
    const y = line * 1.2 + source.height + line * (i + 0.9);
    ctx.strokeStyle = s._stroke ?? COLOURS[i % COLOURS.length];
    ctx.lineWidth = 2 * ratio;
    ctx.setLineDash((s.dash ?? []).map((d) => d * ratio));
    ctx.beginPath();
    ctx.moveTo(10 * ratio, y - 4 * ratio);
    ctx.lineTo(34 * ratio, y - 4 * ratio);
    ctx.stroke();
    ctx.fillText(s.label, 42 * ratio, y);
  });
  return new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve(blob) : reject(new Error("the browser made no PNG"))), "image/png"));
}

/** Let the browser save `blob` (or the resource at a URL) as `filename`. */
export function download(what, filename) {
  const url = typeof what === "string" ? what : URL.createObjectURL(what);
  const link = element("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  if (typeof what !== "string") setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
