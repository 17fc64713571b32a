"""The control API (Sim_ functions) of the compiled simulated library, sim/wlmsim.c.

`LibraryControl(path)` has the same control methods as the pure-Python
`SimulatedLibrary.sim`, so a test drives either twin the same way. Loading the
same path as a Wavemeter shares the one simulated instrument.
"""

from __future__ import annotations

import ctypes
from ctypes import c_double, c_int32, c_uint64

__all__ = ["LibraryControl"]

#: Sim_ function -> (restype, argtypes), as documented in sim/wlmsim.c
SIM_FUNCTIONS = {
    "Sim_Reset": (c_int32, (c_uint64, c_int32)),
    "Sim_SetRealtime": (c_int32, (c_int32,)),
    "Sim_Advance": (c_int32, (c_double,)),
    "Sim_Now": (c_double, ()),
    "Sim_SetServerRunning": (None, (c_int32,)),
    "Sim_SetLaser": (c_int32, (c_int32, c_double, c_double)),
    "Sim_SetDrift": (c_int32, (c_int32, c_double, c_double, c_double)),
    "Sim_SetNoise": (c_int32, (c_int32, c_double)),
    "Sim_SetGain": (c_int32, (c_int32, c_double)),
    "Sim_MapPort": (c_int32, (c_int32, c_int32)),
    "Sim_SetSignal": (c_int32, (c_int32, c_int32)),
    "Sim_InjectNeighbour": (c_int32, (c_int32,)),
    "Sim_ModeHop": (c_int32, (c_int32, c_double)),
    "Sim_SetReadDelay": (c_int32, (c_double,)),
    "Sim_Hold": (None, (c_int32,)),
    "Sim_Release": (None, ()),
    "Sim_TrueFrequency": (c_double, (c_int32,)),
    "Sim_MeasurementCount": (c_int32, (c_int32,)),
}


class LibraryControl:
    """Drive the compiled simulation; bad arguments raise ValueError."""

    def __init__(self, path: str):
        self.path = str(path)
        self._lib = ctypes.CDLL(self.path)
        for name, (restype, argtypes) in SIM_FUNCTIONS.items():
            function = getattr(self._lib, name)
            function.restype, function.argtypes = restype, argtypes

    def __repr__(self):
        return f"<LibraryControl {self.path} t={self.now():.3f}s>"

    def _call(self, name: str, *args):
        if getattr(self._lib, name)(*args) == -1:
            raise ValueError(f"{name}{args!r}: argument out of range")

    def reset(self, seed: int = 0, nchannels: int = 8) -> None:
        self._call("Sim_Reset", seed & (2**64 - 1), nchannels)

    def set_realtime(self, on: bool) -> None:
        self._call("Sim_SetRealtime", int(bool(on)))

    def advance(self, seconds: float) -> None:
        self._call("Sim_Advance", seconds)

    def now(self) -> float:
        return self._lib.Sim_Now()

    def set_server_running(self, on: bool) -> None:
        self._lib.Sim_SetServerRunning(int(bool(on)))

    def set_laser(self, ch: int, thz: float, power_uw: float) -> None:
        self._call("Sim_SetLaser", ch, thz, power_uw)

    def set_drift(self, ch: int, walk_mhz_per_sqrt_s: float, sine_mhz: float,
                  period_s: float) -> None:
        self._call("Sim_SetDrift", ch, walk_mhz_per_sqrt_s, sine_mhz, period_s)

    def set_noise(self, ch: int, mhz: float) -> None:
        self._call("Sim_SetNoise", ch, mhz)

    def set_gain(self, port: int, mhz_per_volt: float) -> None:
        self._call("Sim_SetGain", port, mhz_per_volt)

    def map_port(self, port: int, ch: int) -> None:
        self._call("Sim_MapPort", port, ch)

    def set_signal(self, ch: int, state: int) -> None:
        self._call("Sim_SetSignal", ch, state)

    def inject_neighbour(self, ch: int) -> None:
        self._call("Sim_InjectNeighbour", ch)

    def mode_hop(self, ch: int, ghz: float) -> None:
        self._call("Sim_ModeHop", ch, ghz)

    def set_read_delay(self, ms: float) -> None:
        self._call("Sim_SetReadDelay", ms)

    def hold(self, on: bool = True) -> None:
        self._lib.Sim_Hold(int(bool(on)))

    def release(self) -> None:
        self._lib.Sim_Release()

    def true_frequency(self, ch: int) -> float:
        value = self._lib.Sim_TrueFrequency(ch)
        if value == -1:
            raise ValueError(f"true_frequency({ch!r}): bad channel")
        return value

    def measurement_count(self, ch: int) -> int:
        value = self._lib.Sim_MeasurementCount(ch)
        if value == -1:
            raise ValueError(f"measurement_count({ch!r}): bad channel")
        return value
