// What a wavemeter channel's traces are offsets from: the value chosen for it (remembered),
// else its lock's setpoint, else its first reading rounded to a MHz.

import { prefs } from "./prefs.js";

export class References {
  constructor() {
    this.setpoints = new Map();  // channel -> THz
    this.firsts = new Map();  // channel -> THz
  }

  /** A lock status: its setpoint is the channel's reference unless one was chosen. */
  setSetpoint(channel, thz) {
    if (Number.isFinite(thz)) this.setpoints.set(channel, thz);
    else this.setpoints.delete(channel);
  }

  /** A reading: the first one is the reference of last resort. */
  note(channel, thz) {
    if (Number.isFinite(thz) && !this.firsts.has(channel)) {
      this.firsts.set(channel, Math.round(thz * 1e6) / 1e6);
    }
  }

  /** {thz, kind} (kind: "chosen", "setpoint" or "first reading"), or null. */
  of(channel) {
    const chosen = prefs.reference(channel);
    if (chosen !== null) return { thz: chosen, kind: "chosen" };
    if (this.setpoints.has(channel)) return { thz: this.setpoints.get(channel), kind: "setpoint" };
    if (this.firsts.has(channel)) return { thz: this.firsts.get(channel), kind: "first reading" };
    return null;
  }
}

export const references = new References();
