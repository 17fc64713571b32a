// The laser locks: a card per lock with its state, the last unlock's reason, error and
// output over time, the setpoint (THz or nm, ±1/±10 MHz steps) and its gains and limits.
//
// Every control writes through JSON-RPC with the write token; without a token the
// controls stay disabled, and a refused write is shown, changing nothing on the page.

import { rpc } from "./api.js";
import { serverNow } from "./clock.js";
import { clock, element, epochSeconds, formatValue, optical, precisionOf,
         statusClass } from "./format.js";
import { timePlot } from "./plot.js";
import { prefs } from "./prefs.js";
import { references } from "./references.js";
import { TRACE_WINDOW_S, typedThz } from "./traces.js";

const STEPS_MHZ = [-10, -1, 1, 10];
const REQUESTED = new Set(["unlocked on request", "not locked yet"]);
/** The settings a lock card edits: status key, label, unit. */
const SETTINGS = [
  ["p", "P", "V/MHz"], ["i", "I", "V/(MHz·s)"], ["d", "D", "V·s/MHz"],
  ["capture_mhz", "capture ±", "MHz"], ["min_v", "output min", "V"], ["max_v", "output max", "V"],
];

/** A frequency difference in the unit that keeps it readable: MHz, GHz or THz. */
function distance(thz) {
  const abs = Math.abs(thz);
  const sign = thz < 0 ? "−" : "+";
  if (abs >= 1) return `${sign}${abs.toFixed(3)} THz`;
  if (abs >= 1e-3) return `${sign}${(abs * 1e3).toFixed(3)} GHz`;
  return `${sign}${(abs * 1e6).toFixed(1)} MHz`;
}

const otherUnit = (unit) => (unit === "nm" ? "THz" : "nm");

class LockCard {
  constructor(panel, channel) {
    this.panel = panel;
    this.channel = channel;
    this.status = null;
    this.edited = false;
    this.t = [];
    this.error = [];
    this.output = [];
    this.node = element("article", { id: `lock-${channel}`, className: "lock" });
    this.title = element("h3", { textContent: `${channel}` });
    this.badge = element("span", { className: "badge" });
    this.toggle = element("button", { type: "button", className: "toggle" });
    this.toggle.addEventListener("click", () => this.toggleLock());
    this.node.append(element("header", { className: "lock-head" }, this.title, this.badge,
                             this.toggle));
    this.unlockNote = element("p", { className: "last-unlock", hidden: true });
    this.unlockNote.setAttribute("role", "status");
    this.node.append(this.unlockNote);
    this.values = {};
    const telemetry = element("dl", { className: "telemetry" });
    for (const [key, label] of [["reason", "state"], ["error", "error"], ["output", "output"],
                                ["laser", "laser"]]) {
      this.values[key] = element("dd", { className: `value ${key}` });
      telemetry.append(element("div", {}, element("dt", { textContent: label }),
                               this.values[key]));
    }
    this.node.append(telemetry);
    this.setpointForm();
    this.settingsForm();
    this.plotView();
    this.enable(false);
  }

  setpointForm() {
    const id = `setpoint-${this.channel}`;
    this.setpoint = element("input", { type: "text", inputMode: "decimal", id,
                                       className: "setpoint", autocomplete: "off" });
    this.setpointUnit = element("span", { className: "unit" });
    this.setpoint.addEventListener("input", () => {
      this.edited = true;
      this.showHint();
    });
    this.setpoint.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.applySetpoint();
    });
    this.setButton = element("button", { type: "button", textContent: "Set", className: "set" });
    this.setButton.setAttribute("aria-label", `apply the setpoint of channel ${this.channel}`);
    this.setButton.addEventListener("click", () => this.applySetpoint());
    this.hint = element("p", { className: "setpoint-hint", hidden: true });
    this.hint.setAttribute("role", "status");
    this.steps = STEPS_MHZ.map((mhz) => {
      const button = element("button", { type: "button", className: "step",
                                         textContent: `${mhz > 0 ? "+" : "−"}${Math.abs(mhz)}` });
      button.setAttribute("aria-label", `setpoint of channel ${this.channel} ${
        mhz > 0 ? "up" : "down"} ${Math.abs(mhz)} MHz`);
      button.addEventListener("click", () => this.step(mhz));
      return button;
    });
    this.node.append(
      element("div", { className: "setpoint-row" },
              element("label", { htmlFor: id, textContent: "setpoint" }),
              this.setpoint, this.setpointUnit, this.setButton),
      this.hint,
      element("div", { className: "steps", role: "group" }, element("span", {
        className: "hint", textContent: "step" }), ...this.steps,
              element("span", { className: "hint", textContent: "MHz" })));
    this.steps[0].parentElement.setAttribute("aria-label", `setpoint steps of channel ${
      this.channel}`);
  }

  settingsForm() {
    this.settings = {};
    const grid = element("div", { className: "settings-grid" });
    for (const [key, label, unit] of SETTINGS) {
      const id = `lock-${this.channel}-${key}`;
      const field = element("input", { type: "number", step: "any", id, name: key,
                                       inputMode: "decimal" });
      field.addEventListener("input", () => { field.dataset.edited = "1"; });
      this.settings[key] = field;
      grid.append(element("label", { htmlFor: id, textContent: label }), field,
                  element("span", { className: "unit", textContent: unit }));
    }
    this.apply = element("button", { type: "submit", textContent: "Apply" });
    const form = element("form", { className: "settings" }, grid, this.apply);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.applySettings();
    });
    this.details = element("details", { className: "lock-settings" },
                           element("summary", { textContent: "Gains, capture range, output limits" }),
                           form);
    this.node.append(this.details);
  }

  plotView() {
    const holder = element("div", { className: "lock-plot", hidden: true });
    this.plotHolder = holder;
    this.node.append(holder);
    this.view = timePlot(holder, {
      title: "error and output, last 5 min",
      height: 150,
      axes: [
        { scale: "y", label: () => "error (MHz)" },
        { scale: "v", label: () => "output (V)" },
      ],
      series: [
        { label: "error", scale: "y", spec: () => precisionOf("MHz"), unit: () => "MHz",
          spanGaps: false },
        { label: "output", scale: "v", spec: () => precisionOf("V"), unit: () => "V" },
      ],
      xRange: () => {
        const now = serverNow();
        return [now - TRACE_WINDOW_S, now];
      },
      ms: true,
    });
    this.view.figure.id = `lock-plot-${this.channel}`;
  }

  get engaged() {
    return this.status !== null && this.status.state !== "unlocked";
  }

  update(status) {
    this.status = status;
    references.setSetpoint(this.channel, status.setpoint_thz);
    const cls = statusClass(status.state);
    this.badge.textContent = status.state;
    this.badge.className = `badge ${cls}`;
    this.node.dataset.state = status.state;
    this.values.reason.textContent = status.reason || status.state;
    this.values.error.textContent = Number.isFinite(status.error_mhz)
      ? `${formatValue(status.error_mhz, precisionOf("MHz"))} MHz` : "–";
    this.values.output.textContent = Number.isFinite(status.output_v)
      ? `${formatValue(status.output_v, precisionOf("V"))} V` : "–";
    this.showLaser();
    this.showLastUnlock();
    this.showSetpoint();
    for (const [key] of SETTINGS) {
      const field = this.settings[key];
      if (!field.dataset.edited && document.activeElement !== field && key in status) {
        field.value = status[key] ?? "";
      }
    }
    this.toggle.textContent = this.engaged ? "Unlock" : "Lock";
    this.toggle.setAttribute("aria-label",
                             `${this.engaged ? "unlock" : "lock"} channel ${this.channel}`);
    this.record(status);
    this.enable(this.panel.writable);
  }

  showLaser() {
    const thz = this.status?.frequency_thz ?? this.panel.frequency(this.channel);
    const { text, unit } = optical(thz);
    this.values.laser.textContent = Number.isFinite(thz) ? `${text} ${unit}` : "–";
  }

  showLastUnlock() {
    const last = this.status.last_unlock;
    const unlocked = this.status.state === "unlocked";
    const reason = last?.reason ?? (unlocked ? this.status.reason : null);
    if (!reason || reason === "not locked yet") {
      this.unlockNote.hidden = true;
      return;
    }
    const when = epochSeconds(last?.time);
    const fault = !REQUESTED.has(reason);
    this.unlockNote.hidden = false;
    this.unlockNote.className = `last-unlock ${fault ? "fault" : ""}`;
    this.unlockNote.textContent = `${fault ? "⚠ " : ""}last unlock: ${reason}${
      when ? ` at ${clock(when)}` : ""}${unlocked ? "" : " (locked again since)"}`;
  }

  showSetpoint() {
    this.setpointUnit.textContent = prefs.frequency;
    this.setpoint.setAttribute("aria-label",
                               `setpoint of channel ${this.channel} in ${prefs.frequency}`);
    if (!this.edited && document.activeElement !== this.setpoint) {
      const thz = this.status?.setpoint_thz;
      this.setpoint.value = Number.isFinite(thz) ? optical(thz).text : "";
      this.hint.hidden = true;
    }
  }

  /** Record error and output by read time, for the plot of the last minutes. */
  record(status) {
    const t = epochSeconds(status.timestamp);
    if (t === null) return;
    const n = this.t.length;
    const error = this.engaged ? status.error_mhz : null;
    if (n && t <= this.t[n - 1]) {
      if (t === this.t[n - 1]) {
        this.error[n - 1] = error;
        this.output[n - 1] = status.output_v;
      }
      return;
    }
    this.t.push(t);
    this.error.push(error);
    this.output.push(status.output_v);
  }

  redraw(now) {
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < now - TRACE_WINDOW_S) drop += 1;
    if (drop) {
      this.t.splice(0, drop);
      this.error.splice(0, drop);
      this.output.splice(0, drop);
    }
    // Shown once the lock has been engaged within the window: an idle lock has nothing to say.
    const engaged = this.error.some((e) => e !== null);
    if (this.plotHolder.hidden === engaged) this.plotHolder.hidden = !engaged;
    if (engaged) this.view.plot.setData([this.t.slice(), this.error.slice(), this.output.slice()]);
  }

  setName(name) {
    const text = `${this.channel} · ${name ?? ""}`;
    if (this.title.textContent !== text) this.title.textContent = text;
  }

  enable(on) {
    const hasSetpoint = Number.isFinite(this.status?.setpoint_thz);
    for (const control of [this.setpoint, this.setButton, this.toggle, this.apply,
                           ...Object.values(this.settings)]) {
      control.disabled = !on;
    }
    for (const button of this.steps) button.disabled = !on || !hasSetpoint;
  }

  /** The setpoint typed in, as RPC parameters, or null when the field is empty. */
  typedSetpoint() {
    const unit = prefs.frequency;
    const thz = typedThz(this.setpoint.value, unit);
    if (!Number.isFinite(thz)) return null;
    const value = Number.parseFloat(this.setpoint.value.replace(",", "."));
    return { params: unit === "nm" ? { setpoint_nm: value } : { setpoint_thz: value },
             text: `${this.setpoint.value.trim()} ${unit}`, thz };
  }

  /** Say so when a typed value looks like the other unit (a wavelength typed as THz). */
  showHint() {
    const unit = prefs.frequency;
    const value = Number.parseFloat(this.setpoint.value.replace(",", "."));
    const laser = this.status?.frequency_thz ?? this.panel.frequency(this.channel);
    this.hint.replaceChildren();
    this.hint.hidden = true;
    if (!Number.isFinite(value) || value <= 0) return;
    const asTyped = typedThz(value, unit);
    const asOther = typedThz(value, otherUnit(unit));
    let looksOther;
    if (Number.isFinite(laser)) {
      const far = Math.abs(asTyped - laser) * 1e6 > (this.status?.capture_mhz ?? 200);
      looksOther = far && Math.abs(asOther - laser) < Math.abs(asTyped - laser) / 100;
    } else {
      looksOther = unit === "THz" ? value > 1500 : value < 150;
    }
    if (!looksOther) return;
    const away = Number.isFinite(laser) ? ` is ${distance(asTyped - laser)} from the laser` : "";
    const use = element("button", { type: "button", className: "small",
                                    textContent: `Use ${optical(asOther).text} ${unit}` });
    use.addEventListener("click", () => {
      this.setpoint.value = optical(asOther).text;
      this.showHint();
      this.setpoint.focus();
    });
    this.hint.append(`${value} ${unit}${away}; read as ${otherUnit(unit)} it is ${
      optical(asOther).text} ${unit}. `, use);
    this.hint.hidden = false;
  }

  async toggleLock() {
    if (this.engaged) {
      await this.panel.write(this, "unlock", { channel: this.channel },
                             `channel ${this.channel} unlocked`);
      return;
    }
    let wanted = this.typedSetpoint();
    if (wanted === null) {
      const thz = this.panel.frequency(this.channel);
      if (!Number.isFinite(thz)) {
        this.panel.say(`channel ${this.channel}: type a setpoint (${prefs.frequency}) first`);
        return;
      }
      wanted = { params: { setpoint_thz: thz }, text: `${optical(thz).text} ${prefs.frequency}` };
    }
    await this.panel.write(this, "lock", { channel: this.channel, ...wanted.params },
                           `channel ${this.channel} locked at ${wanted.text}`);
  }

  async applySetpoint() {
    const wanted = this.typedSetpoint();
    if (wanted === null) {
      this.panel.say(`channel ${this.channel}: the setpoint must be a ${
        prefs.frequency === "nm" ? "wavelength in nm" : "frequency in THz"} > 0`);
      return;
    }
    await this.panel.write(this, "set_lock", { channel: this.channel, ...wanted.params },
                           `channel ${this.channel}: setpoint now ${wanted.text}`);
  }

  async step(mhz) {
    const thz = this.status?.setpoint_thz;
    if (!Number.isFinite(thz)) return;
    const next = thz + mhz * 1e-6;
    await this.panel.write(this, "set_lock", { channel: this.channel, setpoint_thz: next },
                           `channel ${this.channel}: setpoint ${mhz > 0 ? "+" : "−"}${
                             Math.abs(mhz)} MHz, now ${optical(next).text} ${prefs.frequency}`);
  }

  async applySettings() {
    const changes = {};
    for (const [key, label] of SETTINGS) {
      const field = this.settings[key];
      if (!field.dataset.edited) continue;
      const value = Number.parseFloat(field.value);
      if (!Number.isFinite(value)) {
        this.panel.say(`channel ${this.channel}: ${label} must be a number`);
        return;
      }
      changes[key] = value;
    }
    if (!Object.keys(changes).length) {
      this.panel.say(`channel ${this.channel}: nothing changed`, true);
      return;
    }
    const done = await this.panel.write(this, "set_lock", { channel: this.channel, ...changes },
                                        `channel ${this.channel}: ${Object.entries(changes).map(
                                          ([k, v]) => `${k} ${v}`).join(", ")}`);
    if (done) for (const field of Object.values(this.settings)) delete field.dataset.edited;
  }
}

export class LockPanel {
  /** `frequency(channel)` gives a channel's present frequency (THz) for a lock without setpoint. */
  constructor(container, message, hint, frequency) {
    this.container = container;
    this.message = message;
    this.hint = hint;
    this.frequency = frequency;
    this.rows = new Map();
    this.writable = false;
  }

  /** Show a lock status (from lock_status or a `lock/<n>` event). */
  update(status) {
    let card = this.rows.get(status.channel);
    if (!card) {
      card = new LockCard(this, status.channel);
      this.rows.set(status.channel, card);
      const after = [...this.rows.keys()].filter((n) => n > status.channel).sort((a, b) => a - b);
      this.container.insertBefore(card.node, after.length ? this.rows.get(after[0]).node : null);
    }
    card.update(status);
  }

  setName(channel, name) {
    this.rows.get(channel)?.setName(name);
  }

  /** Show setpoints, laser frequencies and hints in the page's unit again. */
  showUnit() {
    for (const card of this.rows.values()) {
      card.edited = false;
      card.showSetpoint();
      card.showLaser();
    }
  }

  enable(on) {
    this.writable = on;
    this.hint.hidden = on;
    for (const card of this.rows.values()) card.enable(on);
  }

  redraw(now) {
    for (const card of this.rows.values()) card.redraw(now);
  }

  say(text, ok = false) {
    this.message.textContent = text;
    this.message.className = ok ? "message ok" : "message";
  }

  /** Call an RPC write for `card`; say `done` when it worked (true), the server's reason if not. */
  async write(card, method, params, done) {
    card.enable(false);
    try {
      const status = await rpc(method, params);
      card.edited = false;  // what was typed is applied: show the server's setpoint again
      if (status && typeof status === "object" && "state" in status) card.update(status);
      this.say(done, true);
      return true;
    } catch (error) {
      this.say(`channel ${card.channel}: ${method} refused: ${error.message}`);
      return false;
    } finally {
      card.enable(this.writable);
    }
  }
}
