"""A SCPI voltage source (DAC) as an AnalogOutput, and a simulated twin.

Ports are numbered 1..`ports`; port n is `SOUR<n>:VOLT <v>` / `SOUR<n>:VOLT?`.
Every port accepts `min_v`..`max_v` unless `limits` narrows it, e.g.
`limits = { 1 = [0, 5] }` for a piezo that must not see negative volts.
A read gives one Reading per port, named "<device>/<port>", in volts.

>>> dac = SimDAC("dac", resource="TCPIP::192.0.2.20::INSTR", ports=2, limits={"2": [0, 5]})
>>> with dac:
...     dac.set_voltage(2, 1.25)
...     [(r.sensor, r.value) for r in dac.read()]
[('dac/1', 0.0), ('dac/2', 1.25)]
>>> dac.limits(2)
(0.0, 5.0)
"""

from __future__ import annotations

import math

from ..base import Device, Reading, locked, utcnow
from ..links import VisaLink
from ..options import integer, number, seconds, text
from ..registry import OptionError

__all__ = ["ScpiDAC", "SimDAC"]


def _limits(value, ports: range, low: float, high: float) -> dict[int, tuple[float, float]]:
    """The `limits` option: {"1": [lo, hi], ...} inside [low, high]."""
    if not isinstance(value, dict):
        raise OptionError("limits", f"expected a table like {{ 1 = [0, 5] }}, got {value!r}")
    out = {}
    for key, pair in value.items():
        where = f"limits.{key}"
        if not (isinstance(key, str) and key.isdigit() and int(key) in ports):
            raise OptionError("limits", f"keys are port numbers 1-{ports.stop - 1}, not {key!r}")
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise OptionError(where, f"expected [lowest, highest] volts, got {pair!r}")
        lo, hi = number(where, pair[0]), number(where, pair[1])
        if not low <= lo < hi <= high:
            raise OptionError(where, f"expected {low:g} <= lowest < highest <= {high:g}, "
                              f"got {pair!r}")
        out[int(key)] = (lo, hi)
    return out


class _Ports(Device):
    """Options, port numbers and limit checks shared by the driver and its twin."""

    kind = "dac"
    unit = "V"

    def __init__(self, name: str, *, resource: str, ports: int = 4, min_v: float = -10.0,
                 max_v: float = 10.0, limits: dict | None = None, visa_library: str = "@py",
                 timeout_s: float = 2.0):
        super().__init__(name)
        self.resource = text("resource", resource)
        if isinstance(ports, bool) or not isinstance(ports, int) or not 1 <= ports <= 64:
            raise OptionError("ports", f"expected a port count 1-64, got {ports!r}")
        self._ports = range(1, ports + 1)
        low, high = number("min_v", min_v), number("max_v", max_v)
        if low >= high:
            raise OptionError("max_v", f"expected more than min_v ({low:g}), got {high:g}")
        self._limits = dict.fromkeys(self._ports, (low, high))
        self._limits.update(_limits(limits or {}, self._ports, low, high))
        self.visa_library = text("visa_library", visa_library)
        self.timeout_s = seconds("timeout_s", timeout_s)

    def sensor_names(self) -> list[str]:
        return [f"{self.name}/{port}" for port in self._ports]

    def ports(self) -> list[int]:
        return list(self._ports)

    def limits(self, port: int) -> tuple[float, float]:
        self._check_port(port)
        return self._limits[port]

    @locked
    def voltage(self, port: int) -> float:
        self._require_open()
        self._check_port(port)
        return self._get(port)

    @locked
    def set_voltage(self, port: int, volts: float) -> None:
        self._require_open()
        lo, hi = self.limits(port)
        if not (isinstance(volts, int | float) and math.isfinite(volts) and lo <= volts <= hi):
            raise ValueError(f"{self.name}: port {port} takes {lo:g} to {hi:g} V, not {volts!r}")
        self._set(port, float(volts))

    def _read(self) -> list[Reading]:
        readings = []
        for port in self._ports:
            volts = self._get(port)
            readings.append(Reading(f"{self.name}/{port}", volts, self.unit, utcnow()))
        return readings

    def _check_port(self, port: int) -> None:
        if isinstance(port, bool) or port not in self._ports:
            raise ValueError(f"{self.name}: no port {port!r}; ports are 1-{self._ports.stop - 1}")

    def _get(self, port: int) -> float:
        raise NotImplementedError

    def _set(self, port: int, volts: float) -> None:
        raise NotImplementedError


class ScpiDAC(_Ports):
    """A SCPI multi-channel voltage source through pyvisa."""

    def __init__(self, name: str, *, resource: str, ports: int = 4, min_v: float = -10.0,
                 max_v: float = 10.0, limits: dict | None = None, visa_library: str = "@py",
                 timeout_s: float = 2.0):
        super().__init__(name, resource=resource, ports=ports, min_v=min_v, max_v=max_v,
                         limits=limits, visa_library=visa_library, timeout_s=timeout_s)
        self._link = VisaLink(name, self.resource, self.visa_library, self.timeout_s)

    def _open(self):
        self._link.open()

    def _close(self):
        self._link.close()

    def _get(self, port: int) -> float:
        return self._link.query_float(f"SOUR{port}:VOLT?")

    def _set(self, port: int, volts: float) -> None:
        self._link.write(f"SOUR{port}:VOLT {volts:.6f}")


class SimDAC(_Ports):
    """Simulated DAC: holds the voltages it is given, every port starting at 0 V
    (or the limit nearest to it)."""

    def __init__(self, name: str, *, resource: str, ports: int = 4, min_v: float = -10.0,
                 max_v: float = 10.0, limits: dict | None = None, visa_library: str = "@py",
                 timeout_s: float = 2.0, seed: int = 0):
        super().__init__(name, resource=resource, ports=ports, min_v=min_v, max_v=max_v,
                         limits=limits, visa_library=visa_library, timeout_s=timeout_s)
        self.seed = integer("seed", seed)  # accepted like every twin's; nothing here is random
        self._volts = {p: min(max(0.0, lo), hi) for p, (lo, hi) in self._limits.items()}

    def _get(self, port: int) -> float:
        return self._volts[port]

    def _set(self, port: int, volts: float) -> None:
        self._volts[port] = volts
