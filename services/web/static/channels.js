// The wavemeter channels: one row per channel (a card on a phone), updated from the stream,
// ages ticking; the value in THz or nm as the page's toggle says.

import { observe, serverNow } from "./clock.js";
import { age, element, epochSeconds, optical, statusClass } from "./format.js";

// A reading older than the server's stale_after_s (or this) is shown stale even if the
// server has stopped saying so.
const DEFAULT_STALE_AFTER_S = 10;
const COLUMNS = { channel: "Ch", name: "Name", status: "Status", value: "Value", age: "Age",
                  exposure: "Exposure (ms)" };

class Row {
  constructor(tbody, number) {
    this.cells = {};
    this.node = element("tr", { id: `channel-${number}` });
    for (const [key, label] of Object.entries(COLUMNS)) {
      const cell = element("td", { className: key });
      cell.dataset.label = label;
      if (key === "value") cell.className = "num value";
      else if (["exposure", "age"].includes(key)) cell.className = `num ${key}`;
      this.cells[key] = cell;
      this.node.append(cell);
    }
    this.cells.channel.textContent = number;
    this.badge = element("span", { className: "badge" });
    this.cells.status.append(this.badge);
    this.number = element("span", { className: "number" });
    this.unit = element("span", { className: "unit" });
    this.cells.value.append(this.number, " ", this.unit);
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
    this.showValue();
    this.cells.exposure.textContent = Number.isFinite(data.exposure_ms)
      ? String(data.exposure_ms) : "–";
  }

  showValue() {
    const { text, unit } = optical(this.data?.frequency_thz);
    this.number.textContent = text;
    this.unit.textContent = unit;
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
  constructor(table) {
    this.table = table;
    this.tbody = table.tBodies[0];
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

  /** Show every value again in the page's unit (THz or nm), the column heading too. */
  showUnit(unit) {
    this.table.querySelector("th.value").textContent =
      unit === "nm" ? "Vacuum wavelength (nm)" : "Frequency (THz)";
    for (const row of this.rows.values()) row.showValue();
  }

  /** Ages and staleness at `now` (server clock, seconds since the epoch). */
  tick(now) {
    for (const row of this.rows.values()) row.tick(now);
  }
}
