"""The lab's one TOML config file: devices and per-service sections.

Every error names the file, the key and what was expected::

    lab.toml: devices.chamber.port: expected a string, got 7

Without a file the built-in demo lab (`services/demo.toml`) is used: simulated
devices only, SQLite under ./var/.

>>> cfg = load(None)
>>> cfg.devices["wavemeter"].kind, cfg.devices["wavemeter"].simulation
('highfinesse', True)
"""

from __future__ import annotations

import difflib
import math
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import Device
from drivers.registry import OptionError, create

__all__ = ["DEMO_PATH", "TABLES", "Config", "ConfigError", "DeviceSpec", "Section",
           "check_bind_address", "load", "parse"]

DEMO_PATH = Path(__file__).with_name("demo.toml")
_REQUIRED = object()
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               dict: "a table", list: "an array"}

#: the top-level tables a lab config may have (one per service, and the devices)
TABLES = ("server", "devices", "wavemeter", "locks", "logger", "artiq", "alarms", "notify", "web")


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class ConfigError(Exception):
    """A config file is unreadable or a key in it is wrong."""

    def __init__(self, file: str, key: str, expected: str):
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(f"{where}{expected}")
        self.file, self.key, self.expected = file, key, expected


@dataclass(frozen=True)
class Section:
    """One table of the config, with typed access that reports the key path."""

    file: str
    path: str
    data: dict[str, Any]

    def error(self, key: str, expected: str) -> ConfigError:
        return ConfigError(self.file, self._key(key), expected)

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type, default: Any = _REQUIRED) -> Any:
        """The value of `key`, checked to be of `kind` (int is accepted for float)."""
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(key, f"missing; expected {_TYPE_NAMES.get(kind, kind.__name__)}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value!r}")
        return value

    def positive(self, key: str, default: Any = _REQUIRED) -> float:
        """A number > 0, and at most a million (no time, gain or threshold of a lab is
        larger; a value like 1e308 is a typo that would overflow a timer)."""
        value = self.get(key, float, default)
        if value is not None and not 0 < value <= 1e6:
            raise self.error(key, f"expected a number > 0 (at most 1e6), got {value!r}")
        return value

    def number(self, key: str, default: Any, low: float, high: float, kind: type = float):
        """A number (`kind` int or float) in [low, high]; the error states the range."""
        value = self.get(key, kind, default)
        if value is not None and not low <= value <= high:
            what, fmt = ("an integer", "d") if kind is int else ("a number", "g")
            raise self.error(key, f"expected {what} from {low:{fmt}} to {high:{fmt}}, "
                             f"got {value!r}")
        return value

    def section(self, key: str) -> Section:
        """A sub-table (empty when absent)."""
        return Section(self.file, self._key(key), self.get(key, dict, {}))

    def check_keys(self, allowed: set[str] | list[str]) -> None:
        """Refuse keys this section does not know (typos must not pass silently)."""
        for key in self.data:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(key, f"unknown key; expected one of {known}"
                                 f"{_did_you_mean(key, allowed)}")


@dataclass(frozen=True)
class DeviceSpec:
    """One `[devices.NAME]` table: how to open a device and how often to poll it."""

    name: str
    kind: str
    simulation: bool
    poll_s: float
    options: dict[str, Any] = field(default_factory=dict)
    section: Section | None = None

    def create(self) -> Device:
        """The device, not yet open; option errors become ConfigErrors."""
        try:
            return create(self.kind, self.name, self.simulation, self.options)
        except OptionError as exc:
            raise self.section.error(exc.key, exc.expected) from None

    def open(self) -> Device:
        """Create and open the device."""
        return self.create().open()


@dataclass(frozen=True)
class Config:
    file: str
    data: dict[str, Any]
    devices: dict[str, DeviceSpec]

    @property
    def is_demo(self) -> bool:
        return self.file == str(DEMO_PATH)

    def section(self, name: str) -> Section:
        return Section(self.file, "", self.data).section(name)


_DEVICE_KEYS = {"kind", "simulation", "poll_s"}
POLL_S = (0.001, 86400.0)  # from a millisecond to a day


def parse(text: str, file: str = "<config>") -> Config:
    """Parse config text; `file` is only used to name it in errors.

    Every device is built (not opened) here, so a wrong option, and a sensor
    name that two devices give, are refused before anything starts.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(file, "", "not usable TOML: arrays or tables nested too deeply") from None
    for key, value in data.items():
        if key not in TABLES:
            raise ConfigError(file, key, f"unknown {'table' if isinstance(value, dict) else 'key'}"
                              f"{_did_you_mean(key, TABLES)} (a lab config has the tables "
                              f"{', '.join(TABLES)})")
    top = Section(file, "", data)
    devices = {}
    table = top.section("devices")
    for name in table.data:
        sec = table.section(name)
        if not name or "/" in name:
            raise table.error(name, "a device name without '/'")
        kind = sec.get("kind", str)
        options = {k: v for k, v in sec.data.items() if k not in _DEVICE_KEYS}
        devices[name] = DeviceSpec(
            name=name,
            kind=kind,
            simulation=sec.get("simulation", bool, False),
            poll_s=sec.number("poll_s", 1.0, *POLL_S),
            options=options,
            section=sec,
        )
    _check_sensor_names(devices)
    return Config(file, data, devices)


def _check_sensor_names(devices: dict[str, DeviceSpec]) -> None:
    """Build every device; refuse a sensor name two devices give (one series, two sources)."""
    owner: dict[str, str] = {}
    for spec in devices.values():
        for sensor in spec.create().sensor_names():
            if sensor in owner:
                raise ConfigError(spec.section.file, spec.section.path,
                                  f"sensor {sensor!r} is also a sensor of device "
                                  f"{owner[sensor]!r}; give it another name (one series "
                                  "must not mix the readings of two devices)")
            owner[sensor] = spec.name


def load(path: str | Path | None) -> Config:
    """Load a config file, or the built-in demo lab when `path` is None."""
    path = Path(path) if path is not None else DEMO_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None
    return parse(text, str(path))


def check_bind_address(address: str, file: str, key: str) -> None:
    """Refuse, before anything starts, an address this machine cannot listen on (`key`
    "--bind" names the command line instead of the file).

    >>> check_bind_address("999.1.1.1", "lab.toml", "server.bind")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    services.config.ConfigError: lab.toml: server.bind: cannot listen on '999.1.1.1' (...)...
    """
    if key.startswith("--"):
        file, key = key, ""
    try:
        found = socket.getaddrinfo(address or None, 0, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(file, key, f"cannot listen on {address!r} ({exc}); expected an "
                          "address or name of this machine, e.g. 127.0.0.1 or 0.0.0.0") from None
    error = None
    for family, kind, proto, _, where in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(where)
            return
        except OSError as exc:
            error = exc
    raise ConfigError(file, key, f"cannot listen on {address!r} ({error.strerror}); expected an "
                      "address of this machine, e.g. 127.0.0.1 or 0.0.0.0")
