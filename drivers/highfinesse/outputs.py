"""The wavemeter's deviation-signal outputs as an AnalogOutput (volts).

The vendor speaks millivolts on ports 1..8; a lock speaks volts.

>>> from drivers.highfinesse.simulated import SimWavemeter
>>> out = WavemeterOutputs(SimWavemeter("wm").open(), limits=(-1.0, 1.0))
>>> out.set_voltage(2, 0.25); out.voltage(2)
0.25
"""

from __future__ import annotations

import math

from .wlm import PORTS, Wavemeter

__all__ = ["MAX_VOLTS", "WavemeterOutputs"]

#: the analog outputs' range (the vendor accepts -4096..4096 mV)
MAX_VOLTS = 4.096


class WavemeterOutputs:
    """Ports 1..8 of a Wavemeter, each holding a voltage within `limits`."""

    def __init__(self, wavemeter: Wavemeter, *, limits: tuple[float, float] = (-4.0, 4.0)):
        low, high = limits
        if not -MAX_VOLTS <= low < high <= MAX_VOLTS:
            raise ValueError(f"limits {limits!r}: need low < high within ±{MAX_VOLTS} V")
        self.wavemeter = wavemeter
        self.name = wavemeter.name
        self._limits = (float(low), float(high))

    def __repr__(self):
        return f"<WavemeterOutputs {self.name!r} {self._limits[0]}..{self._limits[1]} V>"

    def _port(self, port) -> int:
        if isinstance(port, bool) or port not in PORTS:
            raise ValueError(f"{self.name}: port {port!r} is not an analog port 1..8")
        return port

    def ports(self) -> list[int]:
        return list(PORTS)

    def limits(self, port: int) -> tuple[float, float]:
        self._port(port)
        return self._limits

    def voltage(self, port: int) -> float:
        return self.wavemeter.deviation_signal(self._port(port)) / 1000.0

    def set_voltage(self, port: int, volts: float) -> None:
        low, high = self.limits(port)
        if isinstance(volts, bool) or not isinstance(volts, int | float) \
                or not math.isfinite(volts):
            raise ValueError(f"{self.name}: port {port}: {volts!r} is not a number of volts")
        if not low <= volts <= high:
            raise ValueError(f"{self.name}: port {port}: {volts} V is outside {low}..{high} V")
        self.wavemeter.set_deviation_signal(port, volts * 1000.0)
