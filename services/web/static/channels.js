// The wavemeter channel table: one row per channel, updated from the stream, ages ticking.

import { observe, serverNow } from "./clock.js";
import { age, element, epochSeconds, fixed, statusClass } from "./format.js";

// A reading older than the server's stale_after_s (or this) is shown stale even if the
// server has stopped saying so.
const DEFAULT_STALE_AFTER_S = 10;

class Row {
  constructor(tbody, number) {
    this.cells = {};
    this.node = element("tr", { id: `channel-${number}` });
    for (const key of ["channel", "name", "status", "frequency", "wavelength", "age", "exposure"]) {
      const cell = element("td");
      if (["wavelength", "frequency"].includes(key)) cell.className = "num value";
      else if (["exposure", "age"].includes(key)) cell.className = "num";
      this.cells[key] = cell;
      this.node.append(cell);
    }
    this.cells.channel.textContent = number;
    this.badge = element("span", { className: "badge" });
    this.cells.status.append(this.badge);
    this.data = null;
    this.readAt = null;
    const rows = [...tbody.children];
    const after = rows.find((row) => Number(row.id.split("-")[1]) > number);
    tbody.insertBefore(this.node, after ?? null);
  }

  update(data) {
    this.data = data;
    this.readAt = epochSeconds(data.timestamp);
    observe(this.readAt, data.age_s);
    // The server sends values only while they mean something (ok, or stale: struck out).
    this.cells.name.textContent = data.name ?? "";
    this.cells.wavelength.textContent = fixed(data.wavelength_nm, 6);
    this.cells.frequency.textContent = fixed(data.frequency_thz, 6);
    this.cells.exposure.textContent = Number.isFinite(data.exposure_ms)
      ? String(data.exposure_ms) : "–";
  }

  tick(now) {
    if (!this.data) return;
    const seconds = this.readAt === null ? NaN : now - this.readAt;
    const limit = this.data.stale_after_s ?? DEFAULT_STALE_AFTER_S;
    const status = seconds > limit && this.data.status === "ok" ? "stale" : this.data.status;
    const cls = statusClass(status);
    this.cells.age.textContent = age(seconds);
    this.badge.textContent = status;
    this.badge.className = `badge ${cls}`;
    this.node.className = cls === "ok" ? "" : cls;
  }
}

export class ChannelTable {
  constructor(tbody) {
    this.tbody = tbody;
    this.rows = new Map();
  }

  /** Show a channel object (from GET /api/v1/channels or a `wavemeter/<n>` event). */
  update(data) {
    let row = this.rows.get(data.channel);
    if (!row) {
      row = new Row(this.tbody, data.channel);
      this.rows.set(data.channel, row);
    }
    row.update(data);
    row.tick(serverNow());
  }

  /** Ages and staleness at `now` (server clock, seconds since the epoch). */
  tick(now) {
    for (const row of this.rows.values()) row.tick(now);
  }
}
