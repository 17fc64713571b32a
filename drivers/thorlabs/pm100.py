"""Thorlabs PM100 optical power meters (SCPI over USBTMC/VISA), and a simulated twin.

At open the meter must identify as a Thorlabs PM (`*IDN?`), takes the
wavelength correction (`SENS:CORR:WAV`, checked by reading it back) and auto
ranging. A read is `MEAS:POW?`: one Reading in watts named after the device.
`set_wavelength(nm)` changes the correction later (checked the same way).

>>> with SimPM100("power397", resource="USB0::0x1313::0x8078::P0012345::INSTR") as pm:
...     [(r.sensor, r.unit, 1e-3 < r.value < 3e-3) for r in pm.read()]
[('power397', 'W', True)]
"""

from __future__ import annotations

from ..base import Device, DeviceError, ProtocolError, Reading, Status, excerpt, locked, utcnow
from ..links import VisaLink
from ..options import number, seconds, text
from ..simulation import Wander

__all__ = ["PM100", "SimPM100"]

#: SCPI's "infinity": what a meter answers when the power is over its range
_SCPI_OVERFLOW = 9.9e37
_WAVELENGTH_TOLERANCE_NM = 0.5
_SIM_RANGE_NM = (200.0, 1100.0)
_SIM_DEFAULT_NM = 633.0


class _Meter(Device):
    """Options shared by the driver and its twin."""

    kind = "pm100"
    unit = "W"

    def __init__(self, name: str, *, resource: str, wavelength_nm: float | None = None,
                 visa_library: str = "@py", timeout_s: float = 2.0):
        super().__init__(name)
        self.resource = text("resource", resource)
        self.wavelength_nm = (None if wavelength_nm is None
                              else number("wavelength_nm", wavelength_nm, positive=True))
        self.visa_library = text("visa_library", visa_library)
        self.timeout_s = seconds("timeout_s", timeout_s)

    @locked
    def wavelength(self) -> float:
        """The wavelength (nm) the meter corrects its power reading for."""
        self._require_open()
        return self._wavelength()

    @locked
    def set_wavelength(self, nm: float) -> float:
        """Correct the power reading for light of `nm` (nm); the wavelength the meter took."""
        self._require_open()
        actual = self._set_wavelength(number("wavelength_nm", nm, positive=True))
        self.wavelength_nm = actual
        return actual

    def _refused(self, nm: float, actual: float) -> DeviceError:
        return DeviceError(self.name, f"the meter refused wavelength {nm:g} nm (it reads back "
                           f"{actual:g} nm; outside the sensor's range?)")

    def _wavelength(self) -> float:
        raise NotImplementedError

    def _set_wavelength(self, nm: float) -> float:
        raise NotImplementedError


class PM100(_Meter):
    """A PM100 (A, D, USB, ...) through pyvisa; `wavelength_nm` None keeps the meter's."""

    def __init__(self, name: str, *, resource: str, wavelength_nm: float | None = None,
                 visa_library: str = "@py", timeout_s: float = 2.0):
        super().__init__(name, resource=resource, wavelength_nm=wavelength_nm,
                         visa_library=visa_library, timeout_s=timeout_s)
        self.identity = None
        self._link = VisaLink(name, self.resource, self.visa_library, self.timeout_s)

    def _open(self):
        self._link.open(handshake=self._configure)

    def _configure(self):
        self.identity = self._link.query("*IDN?")
        maker, _, rest = self.identity.partition(",")
        if maker.strip().lower() != "thorlabs" or not rest.strip().upper().startswith("PM"):
            raise ProtocolError(self.name, f"not a Thorlabs power meter: *IDN? answered "
                                f"{excerpt(self.identity)}")
        if self.wavelength_nm is not None:
            self._set_wavelength(self.wavelength_nm)
        self._link.write("SENS:POW:RANG:AUTO ON")

    def _wavelength(self) -> float:
        return self._link.query_float("SENS:CORR:WAV?")

    def _set_wavelength(self, nm: float) -> float:
        self._link.write(f"SENS:CORR:WAV {nm:.1f}")
        actual = self._wavelength()
        if abs(actual - nm) > _WAVELENGTH_TOLERANCE_NM:
            raise self._refused(nm, actual)
        return actual

    def _close(self):
        self._link.close()

    def _read(self) -> list[Reading]:
        watts = self._link.query_float("MEAS:POW?")
        stamp = utcnow()
        status = Status.OVERRANGE if abs(watts) >= _SCPI_OVERFLOW else Status.OK
        return [Reading(self.name, watts, self.unit, stamp, status)]


class SimPM100(_Meter):
    """Simulated PM100: about 2 mW swinging slowly between 1 and 3 mW with 1 %
    noise (a beam whose coupling drifts); deterministic by `seed`."""

    def __init__(self, name: str, *, resource: str, wavelength_nm: float | None = None,
                 visa_library: str = "@py", timeout_s: float = 2.0, seed: int = 0):
        super().__init__(name, resource=resource, wavelength_nm=wavelength_nm,
                         visa_library=visa_library, timeout_s=timeout_s)
        self._wander = Wander(name, seed)
        self._nm = self.wavelength_nm or _SIM_DEFAULT_NM

    def _open(self):
        if self.wavelength_nm is not None:
            self._set_wavelength(self.wavelength_nm)

    def _wavelength(self) -> float:
        return self._nm

    def _set_wavelength(self, nm: float) -> float:
        """Like an S120C photodiode sensor: 200 to 1100 nm, set to 0.1 nm."""
        if not _SIM_RANGE_NM[0] <= nm <= _SIM_RANGE_NM[1]:
            raise self._refused(nm, self._nm)
        self._nm = round(nm, 1)
        return self._nm

    def _read(self) -> list[Reading]:
        stamp = utcnow()
        self._wander.step()
        watts = 2e-3 * (1 + 0.4 * self._wander.drift(300)) * (1 + self._wander.gauss(0.01))
        return [Reading(self.name, float(f"{watts:.6e}"), self.unit, stamp)]
