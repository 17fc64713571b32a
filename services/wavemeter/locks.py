"""Laser locks: a software PID per wavemeter channel and the state machine around it.

A `Controller` is a plain object with no IO. Feed it readings (`update`) and
the passing of time (`tick`); it answers with the voltage to write to the
laser's analog output, or None when nothing must move. The service layer
(lock_api.py) feeds it from the hub and writes outputs on an executor; tests
feed it readings of the simulated wavemeter in simulated time.

The loop, per new reading with error e = f - setpoint (MHz)::

    u = I + s * (-p * e - d * de/dt),   I += s * (-i * e * dt)

with s the polarity (+1 when more volts raise the frequency) and dt taken from
the read timestamps, so the loop gain per second does not depend on how many
lasers share the fiber switch. The integrator is preset on the first reading
after engaging so that u equals the present output (no bump). It is held while
readings are stale, badly exposed or without signal, and whenever the output
is clamped by its limits or its maximum step it is held at the clamped output
(no wind-up).

A reading beyond the capture range is not acted on (a neighbouring channel's
value right after a switch); `capture_readings` of them in a row unlock with
reason "mode hop". No usable reading for `signal_timeout_s` unlocks with
"signal lost", an output at a limit for `rail_timeout_s` with "railed too
long". With `relock`, a faulted lock re-engages once a usable reading within
the capture range arrives at least `relock_delay_s` after the fault.

>>> from datetime import UTC, datetime, timedelta
>>> c = Controller(LockSettings(channel=1, setpoint_thz=400.0, p=0.0, i=0.01, port=1))
>>> c.engage(0.5)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> c.update(t0, 400.000010, "ok") is None        # first reading presets the integrator
True
>>> round(c.update(t0 + timedelta(seconds=1), 400.000010, "ok"), 6)   # 10 MHz high: 0.1 V down
0.4
>>> c.state.value, round(c.error_mhz, 6)
('locked', 10.0)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, Section
from .acquisition import C_NM_THZ

__all__ = [
    "Controller",
    "LockConfig",
    "LockSettings",
    "Reason",
    "SettingsError",
    "SettingsStore",
    "State",
    "nm_to_thz",
]

log = logging.getLogger(__name__)

#: the frequencies a setpoint may have (THz): wavelengths from 100 nm to 300 µm
SETPOINT_THZ = (1.0, 3000.0)
#: the largest gain (V/MHz, V/(MHz s), V s/MHz) and capture range (MHz) a lock takes
MAX_GAIN = 1000.0
MAX_CAPTURE_MHZ = 1e6


def nm_to_thz(nm: float) -> float:
    """The frequency (THz) of a vacuum wavelength (nm), with the exact speed of light.

    >>> round(nm_to_thz(299_792.458), 12)
    1.0
    """
    try:
        thz = C_NM_THZ / nm if isinstance(nm, int | float) and not isinstance(nm, bool) else None
    except (ZeroDivisionError, OverflowError):
        thz = None
    low, high = SETPOINT_THZ
    if thz is None or not low <= thz <= high:
        raise SettingsError("setpoint_nm", f"expected a vacuum wavelength of "
                            f"{C_NM_THZ / high:g}..{C_NM_THZ / low:g} nm, got {nm!r}")
    return thz


class State(enum.Enum):
    """What a lock is doing now."""

    UNLOCKED = "unlocked"
    LOCKED = "locked"
    RAILED = "railed"  # engaged, output at a limit
    STALE = "stale"  # engaged, no usable reading: integrator and output held


class Reason:
    """Why a lock is in its state (the `reason` of lock_status)."""

    NEVER_LOCKED = "not locked yet"
    REQUESTED = "unlocked on request"
    MODE_HOP = "mode hop"
    SIGNAL_LOST = "signal lost"
    RAILED_TOO_LONG = "railed too long"
    OUTPUT_FAILED = "output failed"
    NO_READING = "no new reading"
    AT_LIMIT = "output at a limit"
    #: faults that `relock` recovers from
    FAULTS = frozenset({MODE_HOP, SIGNAL_LOST, RAILED_TOO_LONG})


class SettingsError(ValueError):
    """A lock setting is out of range; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LockSettings:
    """Everything one channel's lock needs; checked on construction.

    Gains: `p` in V/MHz, `i` in V/(MHz·s), `d` in V·s/MHz. `output` names the
    analog output (a device; None means the wavemeter's own deviation ports),
    `port` its port. Limits and steps are in volts. `stale_after_s` must be
    longer than one round of the fiber switch: readings further apart than
    that are not integrated across.
    """

    channel: int
    port: int
    setpoint_thz: float | None = None
    p: float = 0.0
    i: float = 0.02
    d: float = 0.0
    output: str | None = None
    min_v: float = -4.0
    max_v: float = 4.0
    max_step_v: float = 0.5
    polarity: int = 1
    capture_mhz: float = 200.0
    capture_readings: int = 3
    stale_after_s: float = 2.0  # more than one round of the switch
    signal_timeout_s: float = 5.0
    rail_timeout_s: float = 10.0
    relock: bool = False
    relock_delay_s: float = 2.0
    resume: bool = False

    #: settings a client may change at run time (with the token); they persist
    WRITABLE = ("setpoint_thz", "p", "i", "d", "capture_mhz", "min_v", "max_v")

    def __post_init__(self):
        for name in ("channel", "port", "capture_readings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SettingsError(name, f"expected an integer >= 1, got {value!r}")
        if self.setpoint_thz is not None:
            _finite(self, "setpoint_thz", positive=True)
            low, high = SETPOINT_THZ
            if not low <= self.setpoint_thz <= high:
                raise SettingsError("setpoint_thz", f"expected a laser frequency of "
                                    f"{low:g}..{high:g} THz, got {self.setpoint_thz!r}")
        for name in ("p", "i", "d", "min_v", "max_v"):
            _finite(self, name)
        for name in ("p", "i", "d"):
            if not 0 <= getattr(self, name) <= MAX_GAIN:
                raise SettingsError(name, f"expected a gain of 0..{MAX_GAIN:g} (polarity sets "
                                    f"the sign), got {getattr(self, name)!r}")
        for name in ("max_step_v", "capture_mhz", "stale_after_s", "signal_timeout_s",
                     "rail_timeout_s"):
            _finite(self, name, positive=True)
        if self.capture_mhz > MAX_CAPTURE_MHZ:
            raise SettingsError("capture_mhz", f"expected at most {MAX_CAPTURE_MHZ:g} MHz, got "
                                f"{self.capture_mhz!r}")
        _finite(self, "relock_delay_s")
        if self.relock_delay_s < 0:
            raise SettingsError("relock_delay_s", f"expected >= 0, got {self.relock_delay_s!r}")
        if self.min_v >= self.max_v:
            raise SettingsError("max_v", f"expected max_v > min_v ({self.min_v!r}), "
                                f"got {self.max_v!r}")
        if self.polarity not in (1, -1) or isinstance(self.polarity, bool):
            raise SettingsError("polarity", f"expected 1 or -1, got {self.polarity!r}")
        for name in ("relock", "resume"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(name, f"expected true or false, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> LockSettings:
        """A copy with `changes`, checked; `setpoint_nm` is converted to `setpoint_thz`."""
        changes = _converted(changes)
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise SettingsError(sorted(unknown)[0], "not a lock setting")
        return dataclasses.replace(self, **changes)

    def writable(self) -> dict[str, Any]:
        """The run-time settings, as persisted."""
        return {name: getattr(self, name) for name in self.WRITABLE}


def _finite(settings: LockSettings, name: str, positive: bool = False) -> None:
    value = getattr(settings, name)
    try:
        finite = math.isfinite(value)
    except (TypeError, OverflowError):  # not a number, or an integer no float holds
        finite = False
    if (not isinstance(value, int | float) or isinstance(value, bool) or not finite
            or (positive and value <= 0)):
        expected = "a number > 0" if positive else "a finite number"
        shown = repr(value)
        raise SettingsError(name, f"expected {expected}, got "
                            f"{shown if len(shown) <= 40 else shown[:37] + '...'}")


class Controller:
    """One channel's PID and lock state machine; no IO, no clock of its own.

    Time comes only from the read timestamps given to `update` and the `now`
    given to `tick` and `engage`, so the same code runs in simulated time.
    """

    def __init__(self, settings: LockSettings):
        self.settings = settings
        self.state = State.UNLOCKED
        self.reason = Reason.NEVER_LOCKED
        self.output_v: float | None = None  # what the port holds, as far as the lock knows
        self.frequency_thz: float | None = None  # the newest usable reading
        self.error_mhz: float | None = None  # its distance from the setpoint
        self.timestamp: datetime | None = None  # of the newest reading seen
        self.relocks = 0  # automatic re-engagements
        self.ignored = 0  # readings not acted on: old, beyond capture, unusable
        self.last_unlock: tuple[str, datetime | None] | None = None  # (reason, when)
        self._integral = 0.0
        self._preset = False  # the next usable reading presets the integrator
        self._previous: tuple[datetime, float] | None = None  # (time, error) last acted on
        self._beyond = 0  # consecutive readings beyond the capture range
        self._last_good: datetime | None = None
        self._railed_since: datetime | None = None
        self._fault_at: datetime | None = None

    def __repr__(self):
        err = "-" if self.error_mhz is None else f"{self.error_mhz:+.3f} MHz"
        out = "-" if self.output_v is None else f"{self.output_v:+.4f} V"
        return (f"<Controller channel {self.settings.channel} {self.state.value} "
                f"({self.reason}) error {err} output {out}>")

    @property
    def engaged(self) -> bool:
        return self.state is not State.UNLOCKED

    def status(self) -> dict[str, Any]:
        """The lock's state and telemetry, JSON-ready."""
        s = self.settings
        return {
            "channel": s.channel,
            "state": self.state.value,
            "reason": self.reason,
            "error_mhz": self.error_mhz,
            "output_v": self.output_v,
            "setpoint_thz": s.setpoint_thz,
            "frequency_thz": self.frequency_thz,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "p": s.p, "i": s.i, "d": s.d,
            "output": s.output, "port": s.port, "min_v": s.min_v, "max_v": s.max_v,
            "capture_mhz": s.capture_mhz,
            "relock": s.relock, "relocks": self.relocks, "ignored": self.ignored,
            "last_unlock": None if self.last_unlock is None else {
                "reason": self.last_unlock[0],
                "time": self.last_unlock[1].isoformat() if self.last_unlock[1] else None},
        }

    # -- commands -----------------------------------------------------------------

    def engage(self, present_v: float, now: datetime | None = None) -> None:
        """Lock from the output's present voltage, without a bump.

        The first usable reading presets the integrator so that the output
        stays at `present_v`; from then on the loop acts on each new reading.
        """
        if self.settings.setpoint_thz is None:
            raise SettingsError("setpoint_thz", "no setpoint: give one to lock")
        if not math.isfinite(present_v):
            raise ValueError(f"present output is not a number: {present_v!r}")
        self.output_v = present_v
        self.state = State.LOCKED
        self.reason = ""
        self._preset = True
        self._previous = None
        self._beyond = 0
        self._railed_since = None
        self._fault_at = None
        self._last_good = now

    def disengage(self, reason: str = Reason.REQUESTED, now: datetime | None = None) -> None:
        """Unlock, leaving the output where it is."""
        self.state = State.UNLOCKED
        self.reason = reason
        self.last_unlock = (reason, now)
        self._previous = None
        self._fault_at = now if reason in Reason.FAULTS else None
        if reason in Reason.FAULTS:
            log.warning("lock %d unlocked: %s", self.settings.channel, reason)

    def check(self, settings: LockSettings, locking: bool) -> None:
        """Refuse settings a lock cannot take: no setpoint to lock at, or a new setpoint (or
        any when locking) beyond the capture range of the laser's latest reading."""
        if settings.channel != self.settings.channel:
            raise SettingsError("channel", "cannot move a lock to another channel")
        if locking and settings.setpoint_thz is None:
            raise SettingsError("setpoint_thz", "no setpoint: give one to lock")
        moved = settings.setpoint_thz != self.settings.setpoint_thz
        if settings.setpoint_thz is not None and self.frequency_thz is not None and (
                locking or moved):
            error = (self.frequency_thz - settings.setpoint_thz) * 1e6
            if abs(error) > settings.capture_mhz:
                raise SettingsError("setpoint_thz", f"the laser is {error:+.1f} MHz from it, "
                                    f"beyond the capture range (±{settings.capture_mhz:g} MHz)")

    def configure(self, settings: LockSettings) -> None:
        """Take new settings (setpoint, gains) without disturbing the output."""
        self.check(settings, locking=self.engaged)
        self.settings = settings
        self.error_mhz = None
        if self.frequency_thz is not None and settings.setpoint_thz is not None:
            self.error_mhz = (self.frequency_thz - settings.setpoint_thz) * 1e6
        if self.engaged and self.output_v is not None:
            # Re-preset so new gains do not kick the output.
            self._preset = True

    # -- time ---------------------------------------------------------------------

    def update(self, timestamp: datetime, frequency_thz: float | None,
               status: str = "ok") -> float | None:
        """Take one reading; return the voltage to write, or None to leave the output.

        Only a reading with status "ok" is a measurement; any other ("no
        signal", "underexposed", ...) holds the loop. A reading no newer than
        the last one is ignored: the lock acts only on new readings.
        """
        if self.timestamp is not None and timestamp <= self.timestamp:
            self.ignored += 1
            return None
        self.timestamp = timestamp
        s = self.settings
        usable = (status == "ok" and frequency_thz is not None
                  and math.isfinite(frequency_thz))
        if usable:
            self.frequency_thz = frequency_thz
        error = (frequency_thz - s.setpoint_thz) * 1e6 if usable and s.setpoint_thz else None
        in_capture = error is not None and abs(error) <= s.capture_mhz
        if not self.engaged:
            if error is not None:
                self.error_mhz = error
            if (s.relock and self._fault_at is not None and in_capture
                    and (timestamp - self._fault_at).total_seconds() >= s.relock_delay_s):
                self.relocks += 1
                log.info("lock %d relocking after %s", s.channel, self.reason)
                self.engage(self.output_v if self.output_v is not None else 0.0, timestamp)
                return self._act(timestamp, error)
            return None
        if error is None:
            self.ignored += 1
            self._previous = None
            self._hold(status if status != "ok" else Reason.NO_READING)
            self._check_signal(timestamp)
            return None
        self.error_mhz = error
        if not in_capture:
            self.ignored += 1
            self._beyond += 1
            if self._beyond >= s.capture_readings:
                self.disengage(Reason.MODE_HOP, timestamp)
            else:
                self._check_signal(timestamp)
            return None
        self._beyond = 0
        return self._act(timestamp, error)

    def tick(self, now: datetime) -> None:
        """Note the passing of time: stale without new readings, unlock on signal loss."""
        if not self.engaged:
            return
        last = self.timestamp or self._last_good
        if last is not None and (now - last).total_seconds() > self.settings.stale_after_s:
            self._previous = None
            self._hold(Reason.NO_READING)
        self._check_signal(now)

    # -- internals ----------------------------------------------------------------

    def _hold(self, reason: str) -> None:
        self.state = State.STALE
        self.reason = reason

    def _check_signal(self, now: datetime) -> None:
        if self._last_good is None:
            self._last_good = now
        elif (now - self._last_good).total_seconds() >= self.settings.signal_timeout_s:
            self.disengage(Reason.SIGNAL_LOST, now)

    def _act(self, timestamp: datetime, error: float) -> float | None:
        s = self.settings
        sign = s.polarity
        self._last_good = timestamp
        previous, self._previous = self._previous, (timestamp, error)
        proportional = -sign * s.p * error
        if self._preset:
            self._preset = False
            self._integral = self.output_v - proportional
            self._set_state(self.output_v, timestamp, railed=False)
            return None
        dt = 0.0
        derivative = 0.0
        if previous is not None:
            dt = (timestamp - previous[0]).total_seconds()
            if dt > s.stale_after_s:
                dt = 0.0  # after a gap: no integration, no derivative kick
            elif dt > 0 and s.d:
                derivative = -sign * s.d * (error - previous[1]) / dt
        integral = self._integral - sign * s.i * error * dt
        wanted = integral + proportional + derivative
        out = min(max(wanted, self.output_v - s.max_step_v), self.output_v + s.max_step_v)
        out = min(max(out, s.min_v), s.max_v)
        # Clamped: the integrator is held at what the port really holds, so it
        # never winds up beyond a limit and leaves the rail as soon as the error turns.
        self._integral = integral if out == wanted else out - proportional - derivative
        changed = out != self.output_v
        self.output_v = out
        self._set_state(out, timestamp, railed=out != wanted and out in (s.min_v, s.max_v))
        return out if changed else None

    def _set_state(self, out: float, timestamp: datetime, railed: bool) -> None:
        if not railed:
            self._railed_since = None
            self.state, self.reason = State.LOCKED, ""
            return
        if self._railed_since is None:
            self._railed_since = timestamp
        if (timestamp - self._railed_since).total_seconds() >= self.settings.rail_timeout_s:
            self.disengage(Reason.RAILED_TOO_LONG, timestamp)
        else:
            self.state = State.RAILED
            self.reason = f"{Reason.AT_LIMIT} ({out:+g} V)"


_FLOAT_KEYS = ("p", "i", "d", "min_v", "max_v", "max_step_v", "capture_mhz", "stale_after_s",
               "signal_timeout_s", "rail_timeout_s", "relock_delay_s")
_KINDS: dict[str, type] = {**dict.fromkeys(_FLOAT_KEYS, float), "polarity": int,
                           "capture_readings": int, "relock": bool, "resume": bool, "output": str}
_CHANNEL_ONLY: dict[str, type] = {"port": int, "setpoint_thz": float, "setpoint_nm": float}
MAX_CHANNEL = 17


@dataclass(frozen=True)
class LockConfig:
    """The `[locks]` section: defaults for every lock, `[locks.<n>]` per channel.

    Every channel of the wavemeter is lockable; by default channel n drives
    port n of the wavemeter's own analog outputs. `state_file` holds the
    settings changed at run time (setpoints, gains, locked or not)::

        [locks]
        state_file = "var/locks.json"
        i = 0.02                      # V/(MHz s), for every channel
        [locks.3]
        setpoint_nm = 866.452
        output = "dac"                # a [devices.dac] analog output
        port = 1
    """

    file: str
    state_file: Path
    settings: dict[int, LockSettings]

    @classmethod
    def from_config(cls, config: Config, channels: list[int] | tuple[int, ...] = ()) -> LockConfig:
        """Read `[locks]` for the wavemeter `channels` (and any `[locks.<n>]`)."""
        top = config.section("locks")
        tables = {key for key in top.data if key.isdigit()}
        top.check_keys({"state_file", *_KINDS, *tables})
        defaults = _values(top, _KINDS)
        wanted = set(channels)
        for key in tables:
            if not 1 <= int(key) <= MAX_CHANNEL:
                raise top.error(key, f"expected a channel number 1..{MAX_CHANNEL}")
            wanted.add(int(key))
        settings = {}
        for channel in sorted(wanted):
            sec = top.section(str(channel))
            sec.check_keys({*_KINDS, *_CHANNEL_ONLY})
            values = {**defaults, **_values(sec, {**_KINDS, **_CHANNEL_ONLY})}
            values.setdefault("port", channel)
            output = values.get("output")
            if output is not None and output not in config.devices:
                where = sec if "output" in sec.data else top
                raise where.error("output", f"expected the name of a [devices] analog output, "
                                  f"got {output!r}")
            try:
                settings[channel] = LockSettings(channel=channel, **_converted(values))
            except SettingsError as exc:
                where = sec if exc.field in sec.data or exc.field == "port" else top
                raise where.error(exc.field, exc.message) from None
        state_file = Path(top.get("state_file", str, "var/locks.json"))
        return cls(config.file, state_file, settings)

    def error(self, channel: int, key: str, expected: str) -> ConfigError:
        """A config error about `key` of channel `channel`'s lock."""
        return ConfigError(self.file, f"locks.{channel}.{key}", expected)


def _values(sec: Section, kinds: dict[str, type]) -> dict[str, Any]:
    return {key: sec.get(key, kind) for key, kind in kinds.items() if key in sec.data}


def _converted(values: dict[str, Any]) -> dict[str, Any]:
    if "setpoint_nm" in values:
        if "setpoint_thz" in values:
            raise SettingsError("setpoint_nm", "give setpoint_thz or setpoint_nm, not both")
        values = dict(values)
        values["setpoint_thz"] = nm_to_thz(values.pop("setpoint_nm"))
    return values


class SettingsStore:
    """Run-time lock settings in one JSON file, written atomically.

    The file maps channel -> {setpoint_thz, p, i, d, locked}. A write goes to a
    temporary file in the same folder, is flushed to disk and renamed over the
    old one, so a crash leaves the old or the new file, never half of one.
    Blocking: call it off the IO loop.
    """

    VERSION = 1

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self):
        return f"<SettingsStore {str(self.path)!r}>"

    def load(self) -> dict[int, dict[str, Any]]:
        """The saved settings per channel; {} when there is no file yet."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SettingsError("state_file", f"cannot read {self.path}: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            raise SettingsError("state_file", f"{self.path}: not a version {self.VERSION} "
                                "lock settings file")
        try:
            return {int(ch): dict(values) for ch, values in data["channels"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SettingsError("state_file", f"{self.path}: malformed channels table") from None

    def save(self, channels: dict[int, dict[str, Any]]) -> None:
        """Replace the file with `channels` (atomic: temp file, fsync, rename)."""
        body = json.dumps({"version": self.VERSION,
                           "channels": {str(ch): v for ch, v in sorted(channels.items())}},
                          indent=1, allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:
            dirfd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
