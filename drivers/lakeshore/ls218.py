"""Lake Shore 218 eight-input temperature monitor, and a simulated twin.

Serial 9600 baud, 7 data bits, odd parity, 1 stop bit; commands and answers end
in CR LF. One read asks `KRDG? 0` (all eight inputs in kelvin, one answer, so
the inputs are read together) and then `RDGST? n` for each configured input.
Readings are in kelvin (unit "K").

>>> with SimLS218("temps", port="/dev/ttyUSB1", sensors={"3": "trap rf"}) as t:
...     [(r.sensor, r.unit, 300 < r.value < 318) for r in t.read()]
[('trap rf', 'K', True)]
"""

from __future__ import annotations

from ..base import Device, ProtocolError, Reading, Status, excerpt, utcnow
from ..links import SerialLink
from ..options import numbered_names, seconds, text
from ..simulation import Wander, typical

__all__ = ["LS218", "SimLS218", "reading_status"]

_INPUTS = range(1, 9)


def reading_status(bits: int) -> Status:
    """RDGST? bits -> Status: 1 invalid reading, 16/32 temperature under/over
    range, 64/128 sensor units zero/over range (a shorted or open sensor).

    >>> reading_status(0), reading_status(32), reading_status(128 + 32)
    (<Status.OK: 'ok'>, <Status.OVERRANGE: 'overrange'>, <Status.SENSOR_ERROR: 'sensor error'>)
    """
    if bits & 1:
        return Status.NO_VALUE
    if bits & (64 | 128):
        return Status.SENSOR_ERROR
    if bits & 16:
        return Status.UNDERRANGE
    if bits & 32:
        return Status.OVERRANGE
    return Status.OK


class _Sensors(Device):
    """Options shared by the driver and its twin: `sensors` = {"1": "table", ...}."""

    kind = "ls218"
    unit = "K"

    def __init__(self, name: str, *, port: str, sensors: dict, timeout_s: float = 1.0):
        super().__init__(name)
        self.port = text("port", port)
        self.sensors = numbered_names("sensors", sensors, _INPUTS)
        self.timeout_s = seconds("timeout_s", timeout_s)

    def sensor_names(self) -> list[str]:
        return list(self.sensors.values())


class LS218(_Sensors):
    """A Model 218 on a serial port (or any pyserial URL); one Reading per sensor."""

    def __init__(self, name: str, *, port: str, sensors: dict, timeout_s: float = 1.0):
        super().__init__(name, port=port, sensors=sensors, timeout_s=timeout_s)
        self.identity = None
        self._link = SerialLink(name, self.port, self.timeout_s, baudrate=9600, bytesize=7,
                                parity="O", stopbits=1)

    def _open(self):
        self._link.open(handshake=self._identify)

    def _identify(self):
        self.identity = self._ask("*IDN?")
        if "MODEL218" not in self.identity:
            raise ProtocolError(self.name, f"not a Lake Shore 218: *IDN? answered "
                                f"{excerpt(self.identity)}")

    def _close(self):
        self._link.close()

    def _read(self) -> list[Reading]:
        answer = self._ask("KRDG? 0")
        stamp = utcnow()
        fields = answer.split(",")
        if len(fields) != len(_INPUTS):
            raise ProtocolError(self.name, f"expected {len(_INPUTS)} temperatures from KRDG? 0, "
                                f"got {excerpt(answer)}")
        readings = []
        for n, sensor in self.sensors.items():
            kelvin = self._parse(float, fields[n - 1], "KRDG? 0")
            bits = self._parse(int, self._ask(f"RDGST? {n}"), f"RDGST? {n}")
            if not 0 <= bits <= 255:
                raise ProtocolError(self.name, f"status {bits} of input {n} is not 0-255")
            readings.append(Reading(sensor, kelvin, self.unit, stamp, reading_status(bits)))
        return readings

    def _parse(self, kind, field: str, command: str):
        try:
            return kind(field)
        except ValueError:
            raise ProtocolError(self.name, f"garbled answer to {command}: {excerpt(field)}") from None

    def _ask(self, command: str) -> str:
        request = command.encode("ascii")
        self._link.send(request + b"\r\n")
        reply = self._link.receive(command)
        try:
            return reply.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ProtocolError(self.name, f"garbled answer to {command}: {excerpt(reply)}") from None


#: typical temperature (deg C) by words in a sensor's name; anything else is room air
_TYPICAL_C = [(("rf", "trap", "oven"), 35.0), (("water", "chiller", "coolant"), 17.0)]


class SimLS218(_Sensors):
    """Simulated Model 218: about 21 C in the room, 35 C at the trap rf, 17 C cooling
    water (by sensor name), each drifting slowly with 20 mK noise; deterministic by `seed`."""

    def __init__(self, name: str, *, port: str, sensors: dict, timeout_s: float = 1.0,
                 seed: int = 0):
        super().__init__(name, port=port, sensors=sensors, timeout_s=timeout_s)
        self._wander = Wander(name, seed)

    def _read(self) -> list[Reading]:
        stamp = utcnow()
        self._wander.step()
        readings = []
        for n, sensor in self.sensors.items():
            kelvin = (typical(sensor, _TYPICAL_C, 21.0) + 273.15
                      + 0.3 * self._wander.drift(720, n / 8) + self._wander.gauss(0.02))
            readings.append(Reading(sensor, round(kelvin, 3), self.unit, stamp))
        return readings
