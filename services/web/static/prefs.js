// How this browser likes the lab shown: frequency or wavelength, kelvin or Celsius, local
// time or UTC, and each wavemeter channel's chosen reference. Kept in localStorage, so the
// choice survives a reload; listeners of `prefs.on` redraw what depends on a choice.

const KEY = "ionlab.prefs";

export const CHOICES = {
  frequency: ["THz", "nm"],
  temperature: ["K", "°C"],
  zone: ["local", "UTC"],
};

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) ?? "{}");
    return saved && typeof saved === "object" ? saved : {};
  } catch {
    return {};
  }
}

class Prefs {
  constructor() {
    this.values = { frequency: "THz", temperature: "K", zone: "local", references: {} };
    const saved = load();
    for (const [key, options] of Object.entries(CHOICES)) {
      if (options.includes(saved[key])) this.values[key] = saved[key];
    }
    if (saved.references && typeof saved.references === "object") {
      for (const [channel, thz] of Object.entries(saved.references)) {
        if (Number.isFinite(thz) && thz > 0) this.values.references[channel] = thz;
      }
    }
    this.listeners = [];
  }

  get frequency() { return this.values.frequency; }
  get temperature() { return this.values.temperature; }
  get zone() { return this.values.zone; }

  /** The reference (THz) chosen for a wavemeter channel, or null (use its setpoint). */
  reference(channel) {
    return this.values.references[channel] ?? null;
  }

  set(key, value) {
    if (!CHOICES[key]?.includes(value) || this.values[key] === value) return;
    this.values[key] = value;
    this.changed(key);
  }

  setReference(channel, thz) {
    if (thz === null) delete this.values.references[channel];
    else this.values.references[channel] = thz;
    this.changed("references");
  }

  changed(key) {
    try {
      localStorage.setItem(KEY, JSON.stringify(this.values));
    } catch (error) {
      console.info("preferences not saved:", error.message);
    }
    for (const listener of this.listeners) listener(key);
  }

  /** Call `listener(key)` whenever a choice changes. */
  on(listener) {
    this.listeners.push(listener);
  }
}

export const prefs = new Prefs();
