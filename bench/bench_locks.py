"""Laser locks closed against the compiled simulated wavemeter, in simulated time.

For 1, 8 and 14 lasers on the fiber switch: the locked RMS deviation of the
true laser frequency from its setpoint over a simulated hour (against the same
lasers free-running, same seed), the readings a 20 MHz setpoint step needs to
settle within 1 MHz, and the CPU cost of the lock per reading (against a
bare five-line PI loop doing only the arithmetic).

`SimLab` is also the harness of tests/services/wavemeter/test_locks_sim.py.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.highfinesse.outputs import WavemeterOutputs
from drivers.highfinesse.simcontrol import LibraryControl
from drivers.highfinesse.wlm import Wavemeter
from services.wavemeter.locks import Controller, LockSettings
from services.web.hub import Hub

from .run import Row

__all__ = ["LIBRARY", "SimLab", "WiredDAC", "run"]

LIBRARY = Path(__file__).resolve().parent.parent / "build" / "sim" / "libwlmData.so"
SLOT_S = 0.022  # one channel on the switch: 10 ms exposure + 12 ms switching
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class WiredDAC:
    """A DAC whose port n drives laser n's piezo in the simulation (an AnalogOutput).

    The wavemeter has eight analog ports; a lab with more lasers drives the
    rest from a DAC. This one moves the simulated laser's frequency by
    `gain_mhz_per_v` per volt, as the wavemeter's ports do.
    """

    def __init__(self, sim: LibraryControl, lasers: dict[int, tuple[float, float]],
                 gain_mhz_per_v: float = 100.0, limits: tuple[float, float] = (-10.0, 10.0)):
        self.name = "wired-dac"
        self.sim = sim
        self.gain = gain_mhz_per_v
        self._lasers = dict(lasers)  # port -> (base THz, power µW)
        self._limits = limits
        self._volts = dict.fromkeys(lasers, 0.0)

    def ports(self) -> list[int]:
        return sorted(self._lasers)

    def limits(self, port: int) -> tuple[float, float]:
        return self._limits

    def voltage(self, port: int) -> float:
        return self._volts[port]

    def set_voltage(self, port: int, volts: float) -> None:
        low, high = self._limits
        if not low <= volts <= high:
            raise ValueError(f"{self.name}: port {port}: {volts} V is outside {low}..{high} V")
        base, power = self._lasers[port]
        self.sim.set_laser(port, base + self.gain * volts * 1e-6, power)
        self._volts[port] = volts


class SimLab:
    """`channels` lasers on the compiled simulation's switch, each with a lock.

    Channel n drives the wavemeter's port n (a `WiredDAC` beyond port 8); its
    setpoint is the laser's frequency at the start. `step()` advances the
    simulated clock and feeds every new reading to its controller, stamped
    with the simulated time, writing what the controller asks for.
    """

    def __init__(self, library: str | Path = LIBRARY, channels: int = 14, seed: int = 1,
                 **settings):
        self.sim = LibraryControl(str(library))
        self.sim.reset(seed, channels)
        self.sim.set_realtime(False)
        self.wavemeter = Wavemeter("wm", library=str(library)).open()
        self.channels = list(range(1, channels + 1))
        self.setpoints = {ch: self.sim.true_frequency(ch) for ch in self.channels}
        self.sim.advance(self.cycle_s)  # one round of the switch: every laser's power known
        own = WavemeterOutputs(self.wavemeter)
        for port in own.ports():
            own.set_voltage(port, 0.0)
        wired = {ch: (self.setpoints[ch], self.wavemeter.power(ch).value)
                 for ch in self.channels if ch not in own.ports()}
        dac = WiredDAC(self.sim, wired)
        self.outputs = {ch: own if ch in own.ports() else dac for ch in self.channels}
        self.controllers = {ch: Controller(LockSettings(channel=ch, port=ch,
                                                        setpoint_thz=self.setpoints[ch],
                                                        **settings))
                            for ch in self.channels}
        self.written: dict[int, list[float]] = {ch: [] for ch in self.channels}
        self.readings = dict.fromkeys(self.channels, 0)
        self._counts = {ch: self.sim.measurement_count(ch) for ch in self.channels}

    def close(self) -> None:
        self.wavemeter.close()

    @property
    def cycle_s(self) -> float:
        """One round of the switch over every laser."""
        return SLOT_S * len(self.channels)

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.sim.now())

    def lock(self, *channels: int) -> None:
        """Engage the locks of `channels` (all when none given) from their present outputs."""
        for ch in channels or self.channels:
            self.controllers[ch].engage(self.outputs[ch].voltage(ch), self.now())

    def error_mhz(self, ch: int) -> float:
        """The true laser frequency's distance from the setpoint (no measurement noise)."""
        return (self.sim.true_frequency(ch) - self.controllers[ch].settings.setpoint_thz) * 1e6

    def step(self, seconds: float | None = None) -> list[int]:
        """Advance the clock (default: one switch cycle); the channels that had a new reading.

        A free-running laser (its lock off, without relock) is not read at all.
        """
        self.sim.advance(self.cycle_s if seconds is None else seconds)
        now = self.now()
        fresh = []
        for ch in self.channels:
            controller = self.controllers[ch]
            count = self.sim.measurement_count(ch)
            if count != self._counts[ch] and (controller.engaged or controller.settings.relock):
                self._counts[ch] = count
                reading = self.wavemeter.frequency(ch)
                volts = controller.update(now, reading.value, reading.status.value)
                self.readings[ch] += 1
                fresh.append(ch)
                if volts is not None:
                    self.outputs[ch].set_voltage(ch, volts)
                    self.written[ch].append(volts)
            controller.tick(now)
        return fresh

    def rms_mhz(self, seconds: float) -> dict[int, float]:
        """Run for `seconds`; each channel's RMS true deviation, sampled once a cycle."""
        sums = dict.fromkeys(self.channels, 0.0)
        steps = max(1, round(seconds / self.cycle_s))
        for _ in range(steps):
            self.step()
            for ch in self.channels:
                sums[ch] += self.error_mhz(ch) ** 2
        return {ch: math.sqrt(s / steps) for ch, s in sums.items()}

    def settle(self, ch: int, step_mhz: float, within_mhz: float = 1.0,
               seconds: float = 5.0) -> tuple[int, float]:
        """Step `ch`'s setpoint and run `seconds`: (readings until it stays within
        `within_mhz` of the new setpoint, the largest excursion beyond it in MHz)."""
        controller = self.controllers[ch]
        target = controller.settings.setpoint_thz + step_mhz * 1e-6
        controller.configure(controller.settings.replace(setpoint_thz=target))
        errors = []
        for _ in range(max(1, round(seconds / self.cycle_s))):
            if ch in self.step():
                errors.append(self.error_mhz(ch))
        outside = [k for k, e in enumerate(errors) if abs(e) > within_mhz]
        settled = outside[-1] + 1 if outside else 0
        direction = 1 if step_mhz > 0 else -1
        return settled, max(0.0, max(e * direction for e in errors))


def _bare_pi_cost(readings: int) -> float:
    """Seconds per reading of the arithmetic alone: e, integral, clamp."""
    integral, sp, ki, dt = 0.0, 755.2227, 0.02, 0.3
    t = time.perf_counter()
    for k in range(readings):
        e = (sp + (k % 7) * 1e-7 - sp) * 1e6
        integral = min(max(integral - ki * e * dt, -4.0), 4.0)
    return (time.perf_counter() - t) / readings


def _lock_cost(readings: int, publish: bool) -> float:
    """Seconds per reading of Controller.update on a locked channel (and, with
    `publish`, of the telemetry the service sends for it on the hub)."""
    c = Controller(LockSettings(channel=1, port=1, setpoint_thz=755.2227))
    c.engage(0.0, T0)
    hub = Hub()
    stamps = [T0 + timedelta(seconds=0.3 * (k + 1)) for k in range(readings)]
    t = time.perf_counter()
    for k, stamp in enumerate(stamps):
        c.update(stamp, 755.2227 + (k % 7) * 1e-7, "ok")
        if publish:
            hub.publish("lock/1", c.status())
    return (time.perf_counter() - t) / readings


def run(quick: bool) -> list[Row]:
    if not LIBRARY.exists():
        raise FileNotFoundError(f"{LIBRARY} is missing: run `make sim` first")
    seconds = 300.0 if quick else 3600.0
    rows = []
    for n in (1, 8, 14):
        free = SimLab(channels=n)
        unlocked = free.rms_mhz(seconds)
        free.close()
        lab = SimLab(channels=n)
        lab.lock()
        locked = lab.rms_mhz(seconds)
        settling = [lab.settle(ch, 20.0) for ch in lab.channels]
        lab.close()
        worst = max(locked, key=lambda ch: locked[ch] / unlocked[ch])
        rows.append(Row("locks", f"RMS deviation, worst of {n} ch ({seconds / 60:.0f} min)",
                        locked[worst], unlocked[worst], "unlocked", "MHz",
                        higher_is_better=False))
        rows.append(Row("locks", f"settling readings, 20 MHz step to 1 MHz, worst of {n} ch",
                        max(s for s, _ in settling), None, "", "readings",
                        higher_is_better=False))
        rows.append(Row("locks", f"overshoot of that step, worst of {n} ch",
                        max(o for _, o in settling), None, "", "MHz", higher_is_better=False))
    readings = 20_000 if quick else 200_000
    bare = _bare_pi_cost(readings) * 1e6
    rows.append(Row("locks", "CPU per reading: Controller.update", _lock_cost(readings, False)
                    * 1e6, bare, "bare PI arithmetic", "us", higher_is_better=False))
    rows.append(Row("locks", "CPU per reading: update + lock/<n> on the hub",
                    _lock_cost(readings, True) * 1e6, bare, "bare PI arithmetic", "us",
                    higher_is_better=False))
    return rows
