// The alarms: a banner while any fires, and the list with acknowledge and silence.
//
// The list comes from /api/v1/alarms and follows each alarm's `alarm/<name>` events
// (asked again every 10 s, for alarms that appear later and for the channels' state).
// Acknowledge and silence write through JSON-RPC with the write token and say who
// (remembered in this browser) and why; without a token the buttons stay disabled.

import { getJson, rpc } from "./api.js";
import { element } from "./format.js";

const AGAIN_MS = 10000;
const WHO_KEY = "ionlab.who";
const SEVERITY_CLASS = { critical: "bad", warning: "warn", info: "stale" };
const STATE_CLASS = { firing: "bad", pending: "warn", resolved: "ok", ok: "ok" };
const RANK = { firing: 0, pending: 1, resolved: 2, ok: 3 };

function when(iso) {
  if (!iso) return "–";
  const t = new Date(iso);
  return t.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function badge(text, cls) {
  return element("span", { className: `badge ${cls}`, textContent: text });
}

class AlarmRow {
  constructor(panel, data) {
    this.panel = panel;
    this.name = data.name;
    this.node = element("tr");
    this.node.dataset.alarm = data.name;
    this.cells = {};
    for (const key of ["state", "severity", "name", "message", "since", "notes", "actions"]) {
      this.cells[key] = element("td");
      this.node.append(this.cells[key]);
    }
    this.cells.name.textContent = data.name;
    this.cells.message.className = "wrap";
    this.ack = element("button", { type: "button", textContent: "Acknowledge", className: "ack" });
    this.ack.setAttribute("aria-label", `acknowledge ${data.name}`);
    this.ack.addEventListener("click", () => panel.write(this, "ack_alarm", {},
                                                         `${this.name} acknowledged`));
    this.silence = element("button", { type: "button", textContent: "Silence",
                                       className: "silence" });
    this.silence.setAttribute("aria-label", `silence ${data.name}`);
    this.silence.addEventListener("click", () => this.toggleSilence());
    this.cells.actions.append(element("span", { className: "alarm-actions" }, this.ack,
                                      this.silence));
    this.update(data);
  }

  update(data) {
    this.data = data;
    this.node.className = data.state === "firing" ? SEVERITY_CLASS[data.severity] : "";
    this.cells.state.replaceChildren(badge(data.state, STATE_CLASS[data.state] ?? "bad"));
    this.cells.severity.replaceChildren(badge(data.severity, SEVERITY_CLASS[data.severity]));
    // An alarm at rest shows what it watches for; otherwise what happened.
    this.cells.message.textContent = data.state === "ok" ? `watching: ${data.condition}`
      : data.message;
    this.cells.since.textContent = when(data.since);
    const notes = [];
    if (data.acknowledged) notes.push(`acknowledged by ${data.acknowledged.who}`
      + (data.acknowledged.why ? ` (${data.acknowledged.why})` : ""));
    if (data.silenced) notes.push(`silenced until ${when(data.silenced.until)} by `
      + `${data.silenced.who}` + (data.silenced.why ? ` (${data.silenced.why})` : ""));
    this.cells.notes.textContent = notes.join("; ");
    this.silence.textContent = data.silenced ? "Unsilence" : "Silence";
    this.enable(this.panel.writable);
  }

  enable(on) {
    this.ack.disabled = !on || this.data.state !== "firing" || Boolean(this.data.acknowledged);
    this.silence.disabled = !on;
  }

  toggleSilence() {
    if (this.data.silenced) {
      this.panel.write(this, "unsilence_alarm", {}, `${this.name}: silence ended`);
    } else {
      const duration = this.panel.duration.value;
      this.panel.write(this, "silence_alarm", { duration },
                       `${this.name} silenced for ${duration}`);
    }
  }
}

export class AlarmPanel {
  constructor({ banner, tbody, message, hint, who, why, duration, notify }, stream) {
    Object.assign(this, { banner, tbody, message, hint, who, why, duration, notify, stream });
    this.rows = new Map();
    this.writable = false;
    this.who.value = localStorage.getItem(WHO_KEY) ?? "";
    this.who.addEventListener("change", () => localStorage.setItem(WHO_KEY, this.who.value.trim()));
  }

  /** Ask for every alarm, follow the new ones; then again every 10 s. */
  async start() {
    await this.load();
    setInterval(() => this.load().catch(() => {}), AGAIN_MS);
  }

  async load() {
    let overview;
    try {
      overview = await getJson("/api/v1/alarms");
    } catch (error) {
      this.say(`alarms unavailable: ${error.message}`);
      return;
    }
    for (const data of overview.alarms) {
      if (!this.rows.has(data.name)) {
        this.rows.set(data.name, new AlarmRow(this, data));
        this.stream.on(`alarm/${data.name}`, (update) => this.update(update));
      } else {
        this.rows.get(data.name).update(data);
      }
    }
    const failing = overview.notify.filter((c) => c.state === "failing");
    this.notify.textContent = failing.map((c) => `notification ${c.channel} (${c.kind}) failing:`
      + ` ${c.last_error}; ${c.pending} waiting`).join(" · ");
    this.notify.hidden = failing.length === 0;
    this.render();
  }

  update(data) {
    const row = this.rows.get(data.name);
    if (!row) return;
    row.update(data);
    this.render();
  }

  /** Firing first, then pending, then by name; the banner names what fires. */
  render() {
    const rows = [...this.rows.values()].sort((a, b) =>
      (RANK[a.data.state] - RANK[b.data.state]) || a.name.localeCompare(b.name));
    this.tbody.replaceChildren(...rows.map((r) => r.node));
    const firing = rows.filter((r) => r.data.state === "firing");
    const loud = firing.filter((r) => !r.data.acknowledged);
    this.banner.hidden = firing.length === 0;
    if (firing.length) {
      const worst = firing.some((r) => r.data.severity === "critical") ? "critical" : "warning";
      this.banner.dataset.severity = worst;
      const names = firing.slice(0, 3).map((r) => r.name).join(", ");
      const more = firing.length > 3 ? ` and ${firing.length - 3} more` : "";
      this.banner.textContent = `${firing.length} alarm${firing.length > 1 ? "s" : ""} firing`
        + ` (${loud.length} not acknowledged): ${names}${more}`;
    }
  }

  enable(on) {
    this.writable = on;
    this.hint.hidden = on;
    for (const row of this.rows.values()) row.enable(on);
  }

  say(text, ok = false) {
    this.message.textContent = text;
    this.message.className = ok ? "message ok" : "message";
  }

  async write(row, method, params, done) {
    const who = this.who.value.trim();
    if (!who) {
      this.say("type your name first, so the others know who is on it");
      this.who.focus();
      return;
    }
    localStorage.setItem(WHO_KEY, who);
    row.ack.disabled = row.silence.disabled = true;
    try {
      const result = await rpc(method, { alarm: row.name, who, why: this.why.value.trim(),
                                         ...params });
      for (const data of result) this.update(data);
      this.why.value = "";
      this.say(done, true);
    } catch (error) {
      this.say(`${row.name}: ${error.message}`);
    } finally {
      row.enable(this.writable);
    }
  }
}
