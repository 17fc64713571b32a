// The lab dashboard: wires the API snapshot and the one event stream to the page's panels.
//
// `window.ionlab` holds the page's state (stream, channels, traces, locks, history)
// for whoever opens the browser console.

import { AlarmPanel } from "./alarms.js";
import { checkToken, getJson, token } from "./api.js";
import { ChannelTable } from "./channels.js";
import { serverNow } from "./clock.js";
import { setPrecision } from "./format.js";
import { History } from "./history.js";
import { LockPanel } from "./locks.js";
import { CHOICES, prefs } from "./prefs.js";
import { Stream } from "./stream.js";
import { TRACE_WINDOW_S, Traces } from "./traces.js";

// Whenever the stream opens, the traces are filled from the logger's store: the last
// minutes on the first connection, what the stream could not replay after a reconnection.
// Once more after this delay, for readings the logger had not written yet.
const REFILL_AGAIN_MS = 5000;
const SENSORS_AGAIN_MS = 10000;  // a sensor that starts logging later joins the history list
const STATE_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" };

const $ = (id) => document.getElementById(id);

const stream = new Stream("/api/v1/stream");
const channels = new ChannelTable($("channels"));
const traces = new Traces($("traces"));
const locks = new LockPanel($("locks"), $("locks-message"), $("locks-hint"),
                            (n) => channels.rows.get(n)?.data?.frequency_thz);
const history = new History({
  form: $("history-form"), sensorList: $("history-sensors"), range: $("history-range"),
  from: $("history-from"), to: $("history-to"), zone: $("history-zone"),
  message: $("history-message"), plots: $("history-plots"), permalink: $("history-permalink"),
});
const alarms = new AlarmPanel({
  banner: $("alarm-banner"), tbody: $("alarms").tBodies[0], message: $("alarms-message"),
  hint: $("alarms-hint"), who: $("alarm-who"), why: $("alarm-why"),
  duration: $("alarm-duration"), notify: $("alarms-notify"),
}, stream);
window.ionlab = { stream, channels, traces, locks, history, alarms, prefs };

function showChannel(data) {
  channels.update(data);
  traces.get(data.channel).addReading(data);
  locks.setName(data.channel, data.name);
}

const followedChannels = new Set();

/** Show and follow the channels not followed yet (the wavemeter may appear after the page). */
function follow(channelObjects) {
  for (const data of channelObjects) {
    if (followedChannels.has(data.channel)) continue;
    followedChannels.add(data.channel);
    showChannel(data);
    stream.on(`wavemeter/${data.channel}`, showChannel);
    stream.on(`lock/${data.channel}`, (status) => locks.update(status));
  }
}

const followedSensors = new Set();

function followSensors(body) {
  setPrecision(body.precision);
  history.setSensors(body.sensors);
  for (const { sensor } of body.sensors) {
    if (followedSensors.has(sensor)) continue;
    followedSensors.add(sensor);
    stream.on(`logger/${sensor}`, (data) => history.sample(data));
  }
}

/** Ask the logger for its sensors again: new ones join the list (and are plotted if none was). */
async function refreshSensors() {
  try {
    const plotted = history.chosen().length > 0;
    followSensors(await getJson("/api/v1/sensors"));
    if (!plotted && history.chosen().length) history.show();
  } catch (error) {
    history.say(`history unavailable: ${error.message}`);
  }
}

/** Fill traces from the logger's store: `since` maps a channel to the time to start at. */
async function refill(since) {
  const end = new Date(serverNow() * 1000).toISOString();
  const stored = [...since].filter(([channel]) => followedSensors.has(`wavemeter/${channel}`));
  await Promise.all(stored.map(async ([channel, t]) => {
    const params = new URLSearchParams({ sensor: `wavemeter/${channel}`,
                                         start: new Date(t * 1000).toISOString(), end });
    try {
      const series = await getJson(`/api/v1/series?${params}`);
      const trace = traces.get(channel);
      for (const [time, value] of series.points) trace.add(Date.parse(time) / 1000, value);
    } catch (error) {
      console.warn(`channel ${channel}: cannot fill the trace from the logger`, error);
    }
  }));
}

async function onOpen(reconnected) {
  const windowStart = serverNow() - TRACE_WINDOW_S;
  const since = new Map();
  for (const [channel, trace] of traces.byChannel) {
    since.set(channel, reconnected ? Math.max(trace.newest ?? 0, windowStart) : windowStart);
  }
  if (reconnected) await refreshSensors();
  await refill(since);
  setTimeout(() => refill(since), REFILL_AGAIN_MS);
}

function tick() {
  const now = serverNow();
  channels.tick(now);
  traces.redraw(now);
  locks.redraw(now);
  history.redraw();
}

/** The radio buttons of the header: THz or nm, K or °C, local time or UTC (remembered). */
function displayToggles() {
  for (const key of Object.keys(CHOICES)) {
    for (const radio of document.querySelectorAll(`input[name="${key}"]`)) {
      radio.checked = radio.value === prefs[key];
      radio.addEventListener("change", () => prefs.set(key, radio.value));
    }
  }
  channels.showUnit(prefs.frequency);
  prefs.on((key) => {
    if (key === "frequency") {
      channels.showUnit(prefs.frequency);
      locks.showUnit();
    }
    if (key === "zone") history.showZone();
    history.redraw(true);
    tick();
  });
}

/** The token is checked with the server as it is entered; a wrong one is not kept. */
function tokenForm() {
  const form = $("token-form");
  const field = $("token");
  const tokenState = $("token-state");
  const say = (text, cls) => {
    tokenState.textContent = text;
    tokenState.className = `hint ${cls}`;
  };
  token.onChange((set) => {
    locks.enable(set);
    alarms.enable(set);
    if (!set && !tokenState.classList.contains("bad")) say("not set: controls are read-only", "");
  });
  const check = async (value) => {
    say("checking…", "");
    const verdict = await checkToken(value);
    if (verdict.ok) {
      token.set(value);
      say("accepted: writes enabled", "ok");
    } else {
      token.set("");
      say(verdict.message, "bad");
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = field.value.trim();
    field.value = "";
    if (value) check(value);
  });
  $("token-forget").addEventListener("click", () => {
    token.set("");
    say("not set: controls are read-only", "");
  });
  if (token.value) check(token.value);  // kept from earlier in this tab: still the lab's?
}

async function main() {
  const connection = $("connection");
  stream.onState((state) => {
    connection.dataset.state = state;
    connection.textContent = STATE_TEXT[state];
  });
  $("traces-window").textContent = `(last ${TRACE_WINDOW_S / 60} min)`;
  tokenForm();

  // The wavemeter is the page's core; locks and history show why they are missing, if so.
  const [channelObjects, lockStatuses, sensors] = await Promise.all([
    getJson("/api/v1/channels"),
    getJson("/api/v1/locks").catch((error) => {
      locks.say(`locks unavailable: ${error.message}`);
      return [];
    }),
    getJson("/api/v1/sensors").catch((error) => {
      history.say(`history unavailable: ${error.message}`);
      return { sensors: [] };
    }),
  ]);
  followSensors(sensors);
  for (const status of lockStatuses) locks.update(status);
  await alarms.start();
  follow(channelObjects);
  displayToggles();
  stream.on("wavemeter/status", () => getJson("/api/v1/channels").then(follow, () => {}));
  stream.onOpen(onOpen);
  stream.open();
  setInterval(tick, 500);
  setInterval(refreshSensors, SENSORS_AGAIN_MS);
  tick();
  if (history.restore(location.search) || history.chosen().length) history.show();
}

main().catch((error) => {
  console.error("dashboard:", error);
  $("connection").textContent = `cannot start: ${error.message}`;
  $("connection").dataset.state = "offline";
});
