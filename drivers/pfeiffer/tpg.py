"""Pfeiffer TPG 26x/36x vacuum gauge controllers, and a simulated twin.

The controller answers every mnemonic in two steps: `PR1\\r\\n` is acknowledged
with ACK (`\\x06\\r\\n`) or refused with NAK (`\\x15\\r\\n`); then ENQ (`\\x05`)
fetches the answer, `0,+1.2345E-03\\r\\n` (status, pressure). The pressure unit
(`UNI`) is read once at open. Serial 9600 8N1, or TCP (TPG 36x, port 8000)
with `port = "tcp://host:8000"`.

>>> with SimTPG("chamber", port="/dev/ttyUSB0", gauges={"1": "chamber"}) as tpg:
...     [(r.sensor, r.unit, r.status.value) for r in tpg.read()]
[('chamber', 'mbar', 'ok')]
"""

from __future__ import annotations

import math
import re

from ..base import Device, ProtocolError, Reading, Status, excerpt, locked, utcnow
from ..links import SerialLink
from ..options import number, numbered_names, seconds, text
from ..simulation import Wander, register_twin, typical, unregister_twin

__all__ = ["STATUS", "UNITS", "NakError", "SimTPG", "TPG"]

ACK, NAK, ENQ = b"\x06", b"\x15", b"\x05"

#: status digit of a PRx answer -> Status
STATUS = {
    0: Status.OK,
    1: Status.UNDERRANGE,
    2: Status.OVERRANGE,
    3: Status.SENSOR_ERROR,
    4: Status.SENSOR_OFF,
    5: Status.NO_SENSOR,
    6: Status.SENSOR_ERROR,  # identification error
}

#: UNI answer -> unit (26x knows 0-2; 36x adds micron, hPa and volt)
UNITS = {0: "mbar", 1: "Torr", 2: "Pa", 3: "micron", 4: "hPa", 5: "V"}

_GAUGES = range(1, 7)
_PRESSURE = re.compile(rb"(\d),\s*([+-]?\d+(?:\.\d*)?(?:[Ee][+-]?\d+)?)")


class NakError(ProtocolError):
    """The controller refused a mnemonic (NAK)."""


class _Gauges(Device):
    """Options shared by the driver and its twin: `gauges` = {"1": "chamber", ...}."""

    kind = "tpg"

    def __init__(self, name: str, *, port: str, gauges: dict, timeout_s: float = 1.0):
        super().__init__(name)
        self.port = text("port", port)
        self.gauges = numbered_names("gauges", gauges, _GAUGES)
        self.timeout_s = seconds("timeout_s", timeout_s)

    def sensor_names(self) -> list[str]:
        return list(self.gauges.values())


class TPG(_Gauges):
    """A TPG controller on a serial port or TCP; one Reading per configured gauge."""

    def __init__(self, name: str, *, port: str, gauges: dict, timeout_s: float = 1.0):
        super().__init__(name, port=port, gauges=gauges, timeout_s=timeout_s)
        self.unit = None
        self._link = SerialLink(name, self.port, self.timeout_s, baudrate=9600, bytesize=8,
                                parity="N", stopbits=1)

    def _open(self):
        self._link.open(handshake=self._read_unit)

    def _read_unit(self):
        answer = self._ask(b"UNI")
        try:
            self.unit = UNITS[int(answer)]
        except (ValueError, KeyError):
            raise ProtocolError(self.name, f"unknown pressure unit {excerpt(answer)} (UNI)") from None

    def _close(self):
        self._link.close()

    def _read(self) -> list[Reading]:
        return [self._gauge(n, sensor) for n, sensor in self.gauges.items()]

    def _gauge(self, n: int, sensor: str) -> Reading:
        answer = self._ask(b"PR%d" % n)
        stamp = utcnow()
        match = _PRESSURE.fullmatch(answer)
        if match is None:
            raise ProtocolError(self.name, f"gauge {n}: garbled answer {excerpt(answer)} to PR{n}")
        code = int(match[1])
        if code not in STATUS:
            raise ProtocolError(self.name, f"gauge {n}: unknown status code {code} in {excerpt(answer)}")
        return Reading(sensor, float(match[2]), self.unit, stamp, STATUS[code])

    def _ask(self, mnemonic: bytes) -> bytes:
        """Send a mnemonic, expect ACK, send ENQ, return the answer line."""
        name = mnemonic.decode()
        self._link.send(mnemonic + b"\r\n")
        ack = self._link.receive(name)
        if ack == NAK:
            raise NakError(self.name, f"controller refused {name} (NAK)")
        if ack != ACK:
            raise ProtocolError(self.name, f"expected ACK or NAK after {name}, got {excerpt(ack)}")
        self._link.send(ENQ)
        return self._link.receive(f"ENQ after {name}")


#: base pressure (mbar) by words in a gauge's name; anything else is the UHV chamber
_BASE_MBAR = [(("load", "lock", "prep"), 2e-6), (("fore", "backing", "rough"), 5e-2)]


#: reads over which a leak's pressure approaches its level (and decays once closed)
LEAK_READS = 2.0


class SimTPG(_Gauges):
    """Simulated TPG: realistic pressures, deterministic for a given `seed`.

    A gauge named like a load lock sits near 2e-6 mbar, a fore-vacuum gauge
    near 5e-2 mbar, any other near 1e-10 mbar (the UHV chamber); each drifts
    slowly and carries 2 % noise. `leak(mbar)` opens a leak: the gas it lets
    in raises the pressure towards `mbar` above the normal one, approached
    (and, once closed with `leak(0)`, pumped away) by a factor e every
    `LEAK_READS` reads, so the series still depends on the reads alone.

    >>> tpg = SimTPG("v", port="/dev/null", gauges={"1": "chamber"}).open()
    >>> tpg.leak(1e-7); [f"{tpg.read()[0].value:.0e}" for _ in range(3)]
    ['4e-08', '6e-08', '8e-08']
    """

    def __init__(self, name: str, *, port: str, gauges: dict, timeout_s: float = 1.0,
                 seed: int = 0):
        super().__init__(name, port=port, gauges=gauges, timeout_s=timeout_s)
        self.unit = "mbar"
        self._wander = Wander(name, seed)
        self._leak_to = dict.fromkeys(self.gauges, 0.0)  # gauge -> the leak's level (mbar)
        self._leaked = dict.fromkeys(self.gauges, 0.0)  # gauge -> what it adds now (mbar)

    def _open(self):
        register_twin(self)

    def _close(self):
        unregister_twin(self)

    @locked
    def leak(self, mbar: float, sensor: str | None = None) -> None:
        """Open a leak towards `mbar` above normal on one gauge (by sensor name) or all;
        0 closes it."""
        level = number("mbar", mbar)
        if level < 0:
            raise ValueError(f"{self.name}: a leak of {mbar!r} mbar; expected >= 0 (0 closes it)")
        gauges = [n for n, s in self.gauges.items() if sensor in (None, s)]
        if not gauges:
            raise ValueError(f"{self.name}: no gauge named {sensor!r}; gauges: "
                             f"{', '.join(self.gauges.values())}")
        for n in gauges:
            self._leak_to[n] = level

    def _read(self) -> list[Reading]:
        stamp = utcnow()
        self._wander.step()
        approach = 1.0 - math.exp(-1.0 / LEAK_READS)
        readings = []
        for n, sensor in self.gauges.items():
            swing = 0.15 * self._wander.drift(900, n / 7) + self._wander.gauss(0.02)
            self._leaked[n] += (self._leak_to[n] - self._leaked[n]) * approach
            mbar = typical(sensor, _BASE_MBAR, 1e-10) * math.exp(swing) + self._leaked[n]
            readings.append(Reading(sensor, float(f"{mbar:.4e}"), self.unit, stamp))
        return readings
