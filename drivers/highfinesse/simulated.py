"""The simulated wavemeter in pure Python: the twin of sim/wlmsim.c.

`SimulatedLibrary` answers the vendor functions the driver calls, with the same
names, arguments and codes as the compiled library, from the same model and the
same random numbers (splitmix64 + Box-Muller), so both give the same values for
a seed. Its control methods are the C library's Sim_ functions with Python
names. `SimWavemeter` is the Wavemeter driver running on it: the demo's default.

>>> wm = SimWavemeter("wm", channels={"1": "397 cooling"}).open()
>>> wm.sim.set_realtime(False); wm.sim.advance(1.0)
>>> r = wm.frequency(1)
>>> r.status.value, round(r.value, 3)
('ok', 755.223)
"""

from __future__ import annotations

import math
import threading
import time

from ..simulation import register_twin, unregister_twin
from .wlm import CHANNELS, PORTS, Wavemeter

__all__ = ["SimWavemeter", "SimulatedLibrary"]

_MASK = 2**64 - 1
SWITCH_MS = 12.0
WARM_S = 1.0  # seconds the simulated wavemeter has been measuring when loaded
SKIP_CYCLES = 100
LOW_UW_MS, HIGH_UW_MS, TARGET_UW_MS = 50.0, 20000.0, 1000.0
EXPOSURE_MIN, EXPOSURE_MAX = 1, 9999
PORT_MAX_MV = 4096.0
C_NM_THZ = 299792.458

#: the demo lab, channel 1..17: (THz, µW); calcium-ion lasers first
DEMO = (
    (755.2227, 120.0), (346.0000, 80.0), (350.8627, 60.0), (709.0780, 40.0),
    (799.3870, 30.0), (411.0420, 150.0), (352.6820, 70.0), (170.1300, 90.0),
    (762.8900, 50.0), (409.4900, 60.0), (384.2304, 100.0), (473.6127, 200.0),
    (281.6300, 110.0), (563.2600, 45.0), (710.9620, 35.0), (274.5900, 65.0),
    (444.7790, 55.0),
)

# get-function and set-function codes the model returns (see codes.py)
NO_SIGNAL, BAD_SIGNAL, LOW_SIGNAL, BIG_SIGNAL, WLM_MISSING = -1, -2, -3, -4, -5
NOT_AVAILABLE, CHANNEL_NOT_AVAILABLE, PARM_OUT_OF_RANGE = -6, -10, -28
RES_WLM_MISSING, RES_OUT_OF_RANGE, RES_CHANNEL, RES_NOT_IN_SWITCH_MODE = -1, -3, -10, -24


class _Laser:
    def __init__(self, thz: float, power_uw: float, used: bool):
        self.base_thz, self.power_uw = thz, power_uw
        self.walk_mhz, self.sine_mhz, self.period_s, self.noise_mhz = 0.5, 5.0, 600.0, 0.3
        self.signal, self.use, self.show = 1, int(used), int(used)
        self.auto_exposure, self.neighbour = 0, 0
        self.exposure = [10, 10]
        self.walk = self.last_t = 0.0
        self.value = self.power = 0.0
        self.count = 0


class SimulatedLibrary:
    """A simulated wavemeter with the vendor's function names (thread-safe)."""

    def __init__(self, seed: int = 0, nchannels: int = 8):
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._realtime = 1
        self._reset(seed, nchannels)
        self._mono_base -= WARM_S  # like a wavemeter already measuring when a client connects

    def __repr__(self):
        with self._lock:
            mode = "realtime" if self._realtime else "manual"
            return f"<SimulatedLibrary {self._nch} channels t={self._now():.3f}s {mode}>"

    # -- the model (kept in step with sim/wlmsim.c)

    def _reset(self, seed: int, nch: int):
        self._rng = seed & _MASK
        self._nch = nch
        self._ch = [None] + [_Laser(thz, uw, c <= nch) for c, (thz, uw) in enumerate(DEMO, 1)]
        self._mv = [0.0] * (len(PORTS) + 1)
        self._gain = [100.0] * (len(PORTS) + 1)
        self._port_ch = list(range(len(PORTS) + 1))
        self._switcher, self._selected, self._slot, self._op = 1, 1, 1, 2
        self._running, self._hold, self._delay_ms = 1, 0, 0.0
        self._base_t, self._mono_base = 0.0, time.monotonic()
        self._last_value = 0.0
        self._reschedule(0.0)

    def _splitmix64(self) -> int:
        self._rng = (self._rng + 0x9E3779B97F4A7C15) & _MASK
        z = self._rng
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def _gauss(self) -> float:
        u1 = ((self._splitmix64() >> 11) + 1) * 2.0**-53
        u2 = (self._splitmix64() >> 11) * 2.0**-53
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def _now(self) -> float:
        if self._realtime:
            return self._base_t + (time.monotonic() - self._mono_base)
        return self._base_t

    def _slot_s(self, c: int) -> float:
        return (self._ch[c].exposure[0] + (SWITCH_MS if self._switcher else 0.0)) / 1000.0

    def _next_used(self, c: int) -> int:
        for i in range(1, self._nch + 1):
            n = (c - 1 + i) % self._nch + 1
            if self._ch[n].use:
                return n
        return 0

    def _cycle_s(self) -> float:
        if not self._switcher:
            return self._slot_s(self._selected)
        total = 0.0
        for c in range(1, self._nch + 1):
            if self._ch[c].use:
                total += self._slot_s(c)
        return total

    def _true_frequency(self, c: int, t: float) -> float:
        laser = self._ch[c]
        sine = 0.0
        if laser.period_s > 0:
            sine = laser.sine_mhz * math.sin(2.0 * math.pi * t / laser.period_s)
        pull = 0.0
        for p in PORTS:
            if self._port_ch[p] == c:
                pull += self._gain[p] * self._mv[p] / 1000.0
        return laser.base_thz + (laser.walk + sine + pull) / 1e6

    def _measure(self, c: int, t: float):
        laser = self._ch[c]
        dt = t - laser.last_t
        laser.last_t = t
        if dt > 0:
            laser.walk += laser.walk_mhz * math.sqrt(dt) * self._gauss()
        if laser.signal == 0 or laser.power_uw <= 0:
            laser.value = laser.power = float(NO_SIGNAL)
        else:
            e = laser.power_uw * laser.exposure[0]
            if laser.signal == 2:
                laser.value = float(BAD_SIGNAL)
            elif e < LOW_UW_MS or e > HIGH_UW_MS:
                laser.value = float(LOW_SIGNAL if e < LOW_UW_MS else BIG_SIGNAL)
                if laser.auto_exposure:
                    ms = math.floor(TARGET_UW_MS / laser.power_uw + 0.5)
                    laser.exposure[0] = int(min(max(ms, EXPOSURE_MIN), EXPOSURE_MAX))
            else:
                noise = laser.noise_mhz * self._gauss()
                laser.value = self._true_frequency(c, t) + noise / 1e6
                if laser.neighbour:
                    laser.value = self._last_value
                laser.neighbour = 0
            laser.power = laser.power_uw
        laser.count += 1
        self._last_value = laser.value

    def _reschedule(self, t: float):
        if self._switcher and not self._ch[self._slot].use:
            self._slot = self._next_used(self._slot)
        c = self._slot if self._switcher else self._selected
        self._next_t = t + self._slot_s(c) if self._op == 2 and c else math.inf

    def _catch_up(self, t: float):
        if not math.isfinite(self._next_t):
            return
        cycle = self._cycle_s()
        if t - self._next_t > SKIP_CYCLES * cycle:
            k = math.floor((t - self._next_t) / cycle) - 1
            self._next_t += k * cycle
            for c in range(1, self._nch + 1):
                if (self._ch[c].use if self._switcher else c == self._selected):
                    self._ch[c].count += k
        while self._next_t <= t:
            c = self._slot if self._switcher else self._selected
            self._measure(c, self._next_t)
            if self._switcher:
                self._slot = self._next_used(c)
            self._next_t += self._slot_s(self._slot if self._switcher else self._selected)

    def _enter(self) -> float:
        """Lock and bring the measurements up to date; returns the clock."""
        self._lock.acquire()
        t = self._now()
        if self._running:
            self._catch_up(t)
        return t

    def _enter_getter(self) -> float:
        with self._lock:
            ms = self._delay_ms
        if ms > 0:
            time.sleep(ms / 1000.0)
        with self._lock:
            while self._hold:
                self._released.wait()
        return self._enter()

    def _bad_channel(self, c: int) -> bool:
        return c < 1 or c > self._nch

    def _get(self, value):
        """A getter's answer: `value()` unless the software is missing."""
        self._enter_getter()
        try:
            return value() if self._running else WLM_MISSING
        finally:
            self._lock.release()

    def _set(self, check, apply):
        """A setter: `check()` gives the code; `apply(t)` runs when it is 0."""
        t = self._enter()
        try:
            code = check() if self._running else RES_WLM_MISSING
            if code == 0:
                apply(t)
            return code
        finally:
            self._lock.release()

    def _result(self, c: int, which: str) -> float:
        """Channel c's last value or power, or the getter's error code."""
        def value():
            if self._bad_channel(c):
                return CHANNEL_NOT_AVAILABLE
            if self._switcher and not self._ch[c].use:
                return NO_SIGNAL
            return getattr(self._ch[c], which)
        return float(self._get(value))

    # -- the vendor functions the driver calls: the vendor's names, the C library's codes

    def GetWLMCount(self, v: int) -> int:
        return max(self._get(lambda: 1), 0)

    def GetWLMVersion(self, ver: int) -> int:
        return self._get(lambda: (7, 4711, 720, 2031)[ver] if 0 <= ver < 4 else NOT_AVAILABLE)

    def GetFrequencyNum(self, num: int, f: float) -> float:
        return self._result(num, "value")

    def GetWavelengthNum(self, num: int, wl: float) -> float:
        f = self._result(num, "value")
        return C_NM_THZ / f if f > 0 else f

    def GetPowerNum(self, num: int, p: float) -> float:
        return self._result(num, "power")

    def GetExposureNum(self, num: int, arr: int, e: int) -> int:
        def value():
            if self._bad_channel(num):
                return CHANNEL_NOT_AVAILABLE
            return self._ch[num].exposure[arr - 1] if arr in (1, 2) else PARM_OUT_OF_RANGE
        return self._get(value)

    def SetExposureNum(self, num: int, arr: int, e: int) -> int:
        def check():
            if self._bad_channel(num):
                return RES_CHANNEL
            return 0 if arr in (1, 2) and EXPOSURE_MIN <= e <= EXPOSURE_MAX else RES_OUT_OF_RANGE

        def apply(t):
            self._ch[num].exposure[arr - 1] = e
            self._reschedule(t)
        return self._set(check, apply)

    def GetExposureModeNum(self, num: int, em: int) -> int:
        return self._get(lambda: CHANNEL_NOT_AVAILABLE if self._bad_channel(num)
                         else self._ch[num].auto_exposure)

    def SetExposureModeNum(self, num: int, em: int) -> int:
        return self._set(lambda: RES_CHANNEL if self._bad_channel(num) else 0,
                         lambda t: setattr(self._ch[num], "auto_exposure", int(em != 0)))

    def GetSwitcherMode(self, sm: int) -> int:
        return self._get(lambda: self._switcher)

    def SetSwitcherMode(self, sm: int) -> int:
        def apply(t):
            if sm == self._switcher:
                return
            if sm:
                self._slot = self._selected
            elif self._slot:
                self._selected = self._slot
            self._switcher = sm
            self._reschedule(t)
        return self._set(lambda: 0 if sm in (0, 1) else RES_OUT_OF_RANGE, apply)

    def GetSwitcherChannel(self, ch: int) -> int:
        return self._get(lambda: self._slot if self._switcher else self._selected)

    def SetSwitcherChannel(self, ch: int) -> int:
        def check():
            if self._switcher:
                return RES_NOT_IN_SWITCH_MODE
            return RES_CHANNEL if self._bad_channel(ch) else 0

        def apply(t):
            self._selected = ch
            self._reschedule(t)
        return self._set(check, apply)

    def GetSwitcherSignalStates(self, signal: int, use, show) -> int:
        def value():
            if self._bad_channel(signal):
                return CHANNEL_NOT_AVAILABLE
            use.value, show.value = self._ch[signal].use, self._ch[signal].show
            return 0
        return self._get(value)

    def SetSwitcherSignalStates(self, signal: int, use: int, show: int) -> int:
        def check():
            if self._bad_channel(signal):
                return RES_CHANNEL
            return 0 if use in (0, 1) and show in (0, 1) else RES_OUT_OF_RANGE

        def apply(t):
            self._ch[signal].use, self._ch[signal].show = use, show
            self._reschedule(t)
        return self._set(check, apply)

    def GetChannelsCount(self, c: int) -> int:
        return self._get(lambda: self._nch)

    def GetOperationState(self, state: int) -> int:
        value = self._get(lambda: self._op)
        return 0 if value == WLM_MISSING else value  # an unsigned 16-bit answer

    def Operation(self, op: int) -> int:
        def apply(t):
            self._op = op
            self._reschedule(t)
        return self._set(lambda: 0 if 0 <= op <= 2 else RES_OUT_OF_RANGE, apply)

    def GetDeviationSignalNum(self, port: int, ds: float) -> float:
        return float(self._get(lambda: self._mv[port] if port in PORTS else CHANNEL_NOT_AVAILABLE))

    def SetDeviationSignalNum(self, port: int, ds: float) -> int:
        def check():
            if port not in PORTS:
                return RES_CHANNEL
            return 0 if abs(ds) <= PORT_MAX_MV else RES_OUT_OF_RANGE
        return self._set(check, lambda t: self._mv.__setitem__(port, ds))

    # -- controls: sim/wlmsim.c's Sim_ functions (bad arguments raise ValueError)

    def reset(self, seed: int = 0, nchannels: int = 8) -> None:
        """Defaults, `nchannels` switch channels all used, the clock at 0 (its mode kept)."""
        if nchannels not in CHANNELS:
            raise ValueError(f"nchannels {nchannels!r} is not 1..17")
        with self._lock:
            self._reset(seed, nchannels)
            self._released.notify_all()

    def set_realtime(self, on: bool) -> None:
        """Follow the monotonic wall clock (on) or move only with advance() (off)."""
        self._enter()
        try:
            self._base_t, self._mono_base = self._now(), time.monotonic()
            self._realtime = int(bool(on))
        finally:
            self._lock.release()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"cannot advance the clock by {seconds!r} s")
        self._enter()
        try:
            self._base_t += seconds
        finally:
            self._lock.release()

    def now(self) -> float:
        """The simulated clock (s since the reset)."""
        t = self._enter()
        self._lock.release()
        return t

    def set_server_running(self, on: bool) -> None:
        """Start or stop the (simulated) wavemeter software."""
        t = self._enter()
        try:
            if bool(on) != bool(self._running):
                self._running = int(bool(on))
                self._reschedule(t)
        finally:
            self._lock.release()

    def _control(self, ok: bool, what: str, apply) -> None:
        if not ok:
            raise ValueError(what)
        self._enter()
        try:
            apply()
        finally:
            self._lock.release()

    def set_laser(self, ch: int, thz: float, power_uw: float) -> None:
        ok = ch in CHANNELS and thz > 0 and power_uw >= 0 and math.isfinite(thz + power_uw)

        def apply():
            self._ch[ch].base_thz, self._ch[ch].power_uw = thz, power_uw
        self._control(ok, f"set_laser({ch!r}, {thz!r}, {power_uw!r}): bad channel or value", apply)

    def set_drift(self, ch: int, walk_mhz_per_sqrt_s: float, sine_mhz: float,
                  period_s: float) -> None:
        ok = (ch in CHANNELS and walk_mhz_per_sqrt_s >= 0 and period_s > 0
              and math.isfinite(walk_mhz_per_sqrt_s + sine_mhz + period_s))

        def apply():
            laser = self._ch[ch]
            laser.walk_mhz, laser.sine_mhz, laser.period_s = walk_mhz_per_sqrt_s, sine_mhz, period_s
        self._control(ok, f"set_drift({ch!r}, ...): bad channel or value", apply)

    def set_noise(self, ch: int, mhz: float) -> None:
        ok = ch in CHANNELS and mhz >= 0 and math.isfinite(mhz)
        self._control(ok, f"set_noise({ch!r}, {mhz!r}): bad channel or value",
                      lambda: setattr(self._ch[ch], "noise_mhz", mhz))

    def set_gain(self, port: int, mhz_per_volt: float) -> None:
        ok = port in PORTS and math.isfinite(mhz_per_volt)
        self._control(ok, f"set_gain({port!r}, {mhz_per_volt!r}): bad port or value",
                      lambda: self._gain.__setitem__(port, mhz_per_volt))

    def map_port(self, port: int, ch: int) -> None:
        """Let analog port `port` pull channel `ch`'s laser (0: no laser)."""
        ok = port in PORTS and (ch == 0 or ch in CHANNELS)
        self._control(ok, f"map_port({port!r}, {ch!r}): bad port or channel",
                      lambda: self._port_ch.__setitem__(port, ch))

    def set_signal(self, ch: int, state: int) -> None:
        """The light on channel `ch`: 0 none, 1 good, 2 bad."""
        ok = ch in CHANNELS and state in (0, 1, 2)
        self._control(ok, f"set_signal({ch!r}, {state!r}): bad channel or state",
                      lambda: setattr(self._ch[ch], "signal", int(state)))

    def inject_neighbour(self, ch: int) -> None:
        """Channel `ch`'s next value is the previous shot's (the switch's neighbour artefact)."""
        self._control(ch in CHANNELS, f"inject_neighbour({ch!r}): bad channel",
                      lambda: setattr(self._ch[ch], "neighbour", 1))

    def mode_hop(self, ch: int, ghz: float) -> None:
        """Channel `ch`'s laser jumps to another mode, `ghz` away (a diode's mode hop)."""
        ok = ch in CHANNELS and math.isfinite(ghz) and self._ch[ch].base_thz + ghz / 1000.0 > 0

        def apply():
            self._ch[ch].base_thz += ghz / 1000.0
        self._control(ok, f"mode_hop({ch!r}, {ghz!r}): bad channel or jump", apply)

    def set_read_delay(self, ms: float) -> None:
        """Every getter sleeps `ms` first (like a slow network link)."""
        if not 0 <= ms <= 60000:
            raise ValueError(f"read delay {ms!r} ms is not 0..60000")
        with self._lock:
            self._delay_ms = ms

    def hold(self, on: bool = True) -> None:
        """Getters block until release() (or hold(False))."""
        with self._lock:
            self._hold = int(bool(on))
            if not self._hold:
                self._released.notify_all()

    def release(self) -> None:
        self.hold(False)

    def true_frequency(self, ch: int) -> float:
        """Channel `ch`'s laser frequency now, without measurement noise (THz)."""
        if ch not in CHANNELS:
            raise ValueError(f"true_frequency({ch!r}): bad channel")
        t = self._enter()
        try:
            return self._true_frequency(ch, t)
        finally:
            self._lock.release()

    def measurement_count(self, ch: int) -> int:
        """How many shots channel `ch` had since the reset."""
        if ch not in CHANNELS:
            raise ValueError(f"measurement_count({ch!r}): bad channel")
        self._enter()
        try:
            return self._ch[ch].count
        finally:
            self._lock.release()


class SimWavemeter(Wavemeter):
    """The Wavemeter driver on the pure-Python simulation; `.sim` controls it.

    `library` is accepted and ignored, so a config switches with `simulation`
    alone.
    """

    def __init__(self, name: str, *, channels: dict | None = None, library: str | None = None,
                 seed: int = 0):
        super().__init__(name, channels=channels, library=library)
        self.sim = SimulatedLibrary(seed)

    def _load(self):
        return self.sim

    def _open(self):
        super()._open()
        register_twin(self)

    def _close(self):
        unregister_twin(self)
        super()._close()
