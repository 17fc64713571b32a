// uPlot time plots sized to their container, in the page's series colours.

import { element } from "./format.js";

const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf3989", "#9a6700",
                        "#1b7c83", "#57606a"];

const pad = (n) => String(n).padStart(2, "0");

/** Time-axis labels in local 24-hour time, with the date once the axis spans days. */
function timeLabels(u, splits) {
  const span = u.scales.x.max - u.scales.x.min;
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (span > 2 * 86400) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
    return span > 1800 ? hm : `${hm}:${pad(d.getSeconds())}`;
  });
}

const logLabels = (u, splits) => splits.map((v) => (v == null ? "" : v.toExponential(0)));

/**
 * A figure with a heading and a uPlot time plot that follows the figure's width.
 * `series` are uPlot series options (without the x series); `log` puts y on a log axis.
 */
export function timePlot(parent, { title, series, yValues, xRange, yRange, log = false,
                                   legend = true, height = 170 }) {
  const heading = element("h3", {}, title);
  const holder = element("div");
  const figure = element("figure", { className: "plot" }, heading, holder);
  parent.append(figure);
  const width = () => Math.max(holder.clientWidth, 160);
  const plot = new uPlot({
    width: width(),
    height,
    padding: [8, 24, 0, 0],
    scales: {
      x: { time: true, range: xRange },
      y: log ? { distr: 3, log: 10 } : { auto: true, range: yRange },
    },
    axes: [{ values: timeLabels, space: 80 },
           { size: 64, values: yValues ?? (log ? logLabels : undefined) }],
    series: [{}, ...series.map((s, i) => ({ stroke: COLOURS[i % COLOURS.length], width: 1.5,
                                            ...s }))],
    legend: { show: legend, live: true },
  }, [[], ...series.map(() => [])], holder);
  new ResizeObserver(() => {
    if (plot.width !== width()) plot.setSize({ width: width(), height });
  }).observe(holder);
  return { figure, heading, plot };
}
