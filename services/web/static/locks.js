// The laser-lock panel: state and telemetry per channel, lock/unlock and setpoint controls.
//
// Every control writes through JSON-RPC with the write token; without a token the
// controls stay disabled, and a refused write is shown, changing nothing on the page.

import { rpc } from "./api.js";
import { element, fixed, statusClass } from "./format.js";

class LockRow {
  constructor(panel, channel) {
    this.panel = panel;
    this.channel = channel;
    this.status = null;
    this.edited = false;
    this.cells = {};
    this.node = element("tr", { id: `lock-${channel}` });
    for (const key of ["channel", "name", "state", "control", "error", "output", "setpoint",
                       "reason"]) {
      const cell = element("td");
      if (["error", "output"].includes(key)) cell.className = "num value";
      this.cells[key] = cell;
      this.node.append(cell);
    }
    this.cells.channel.textContent = channel;
    this.badge = element("span", { className: "badge" });
    this.cells.state.append(this.badge);
    this.setpoint = element("input", {
      type: "number", step: "0.000001", min: "0", inputMode: "decimal",
      className: "setpoint", id: `setpoint-${channel}`,
    });
    this.setpoint.setAttribute("aria-label", `setpoint of channel ${channel} in THz`);
    this.setpoint.addEventListener("input", () => { this.edited = true; });
    this.setpoint.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.applySetpoint();
    });
    this.setButton = element("button", { type: "button", textContent: "Set", className: "set" });
    this.setButton.setAttribute("aria-label", `apply the setpoint of channel ${channel}`);
    this.setButton.addEventListener("click", () => this.applySetpoint());
    this.cells.setpoint.append(element("span", { className: "lock-controls" },
                                       this.setpoint, this.setButton));
    this.toggle = element("button", { type: "button", className: "toggle" });
    this.toggle.addEventListener("click", () => this.toggleLock());
    this.cells.control.append(this.toggle);
    this.enable(false);
  }

  get engaged() {
    return this.status !== null && this.status.state !== "unlocked";
  }

  update(status) {
    this.status = status;
    const cls = statusClass(status.state);
    this.badge.textContent = status.state;
    this.badge.className = `badge ${cls}`;
    this.node.className = status.state === "unlocked" ? "" : cls;
    this.cells.error.textContent = fixed(status.error_mhz, 3);
    this.cells.output.textContent = fixed(status.output_v, 4);
    this.cells.reason.textContent = status.reason ?? "";
    if (!this.edited && document.activeElement !== this.setpoint) {
      this.setpoint.value = Number.isFinite(status.setpoint_thz)
        ? status.setpoint_thz.toFixed(6) : "";
    }
    this.toggle.textContent = this.engaged ? "Unlock" : "Lock";
    this.toggle.setAttribute("aria-label",
                             `${this.engaged ? "unlock" : "lock"} channel ${this.channel}`);
  }

  setName(name) {
    this.cells.name.textContent = name ?? "";
  }

  enable(on) {
    for (const control of [this.setpoint, this.setButton, this.toggle]) control.disabled = !on;
  }

  /** The setpoint typed in, or else the channel's present frequency. */
  wantedSetpoint() {
    const typed = Number.parseFloat(this.setpoint.value);
    if (Number.isFinite(typed) && typed > 0) return typed;
    return this.panel.frequency(this.channel);
  }

  async toggleLock() {
    if (this.engaged) {
      await this.panel.write(this, "unlock", { channel: this.channel },
                             `channel ${this.channel} unlocked`);
      return;
    }
    const setpoint = this.wantedSetpoint();
    if (!Number.isFinite(setpoint)) {
      this.panel.say(`channel ${this.channel}: type a setpoint (THz) first`);
      return;
    }
    await this.panel.write(this, "lock", { channel: this.channel, setpoint_thz: setpoint },
                           `channel ${this.channel} locked at ${setpoint.toFixed(6)} THz`);
  }

  async applySetpoint() {
    const setpoint = Number.parseFloat(this.setpoint.value);
    if (!Number.isFinite(setpoint) || setpoint <= 0) {
      this.panel.say(`channel ${this.channel}: the setpoint must be a frequency in THz > 0`);
      return;
    }
    await this.panel.write(this, "set_lock", { channel: this.channel, setpoint_thz: setpoint },
                           `channel ${this.channel}: setpoint now ${setpoint.toFixed(6)} THz`);
  }
}

export class LockPanel {
  /** `frequency(channel)` gives a channel's present frequency (THz) for a lock without setpoint. */
  constructor(tbody, message, hint, frequency) {
    this.tbody = tbody;
    this.message = message;
    this.hint = hint;
    this.frequency = frequency;
    this.rows = new Map();
    this.writable = false;
  }

  /** Show a lock status (from lock_status or a `lock/<n>` event). */
  update(status) {
    let row = this.rows.get(status.channel);
    if (!row) {
      row = new LockRow(this, status.channel);
      this.rows.set(status.channel, row);
      const after = [...this.rows.keys()].filter((n) => n > status.channel).sort((a, b) => a - b);
      this.tbody.insertBefore(row.node, after.length ? this.rows.get(after[0]).node : null);
      row.enable(this.writable);
    }
    row.update(status);
  }

  setName(channel, name) {
    this.rows.get(channel)?.setName(name);
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

  /** Call an RPC write for `row`; say `done` when it worked, the server's reason if not. */
  async write(row, method, params, done) {
    row.enable(false);
    try {
      const status = await rpc(method, params);
      row.edited = false;  // what was typed is applied: show the server's setpoint again
      if (status && typeof status === "object" && "state" in status) row.update(status);
      this.say(done, true);
    } catch (error) {
      this.say(`channel ${row.channel}: ${method} refused: ${error.message}`);
    } finally {
      row.enable(this.writable);
    }
  }
}
