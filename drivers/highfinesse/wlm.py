"""The HighFinesse wavelength meter through the vendor's wlmData library (ctypes).

Every method blocks in the vendor library (on Linux a network client of the
wavemeter software), so services call it from executor threads. Channels are
the fiber switch's inputs 1..17; analog ports are the deviation-signal outputs
1..8. Readings carry the vendor's error codes as statuses; setters that fail
raise WavemeterError with the vendor's meaning.

>>> Wavemeter("wm", channels={"1": "397 cooling"}).channel_names
{1: '397 cooling'}
"""

from __future__ import annotations

import ctypes
import functools
import math
import os

from drivers.base import Device, DeviceError, ProtocolError, Reading, locked, utcnow
from drivers.registry import OptionError

from . import header
from .codes import check_get, check_set, status

__all__ = ["CHANNELS", "PORTS", "Wavemeter", "default_library"]

CHANNELS = range(1, 18)
PORTS = range(1, 9)

#: the vendor functions the driver calls (declared from the header's list)
FUNCTIONS = (
    "GetWLMCount", "GetWLMVersion", "GetFrequencyNum", "GetWavelengthNum", "GetPowerNum",
    "GetExposureNum", "SetExposureNum", "GetExposureModeNum", "SetExposureModeNum",
    "GetOperationState", "Operation", "GetSwitcherMode", "SetSwitcherMode",
    "GetSwitcherChannel", "SetSwitcherChannel", "GetSwitcherSignalStates",
    "SetSwitcherSignalStates", "GetChannelsCount", "GetDeviationSignalNum",
    "SetDeviationSignalNum",
)
_STATES = {0: "stopped", 1: "adjustment", 2: "measurement"}
_INT32 = range(-(2**31), 2**31)


def default_library() -> str:
    """The vendor library's name on this system."""
    return "wlmData.dll" if os.name == "nt" else "libwlmData.so"


def _channel_names(channels) -> dict[int, str]:
    if channels is None:
        return {}
    if not isinstance(channels, dict):
        raise OptionError("channels", f"a table of channel number = name, got {channels!r}")
    names = {}
    for key, value in channels.items():
        number = int(key) if isinstance(key, str) and key.isdigit() else key
        if isinstance(number, bool) or number not in CHANNELS:
            raise OptionError(f"channels.{key}", "a channel number 1..17")
        if not isinstance(value, str) or not value.strip():
            raise OptionError(f"channels.{key}", f"a channel name (a string), got {value!r}")
        names[number] = value
    return dict(sorted(names.items()))


def _opened(method):
    """A vendor call: under the device lock, on an open device."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self._require_open()
        return method(self, *args, **kwargs)

    return locked(wrapper)


class Wavemeter(Device):
    """A HighFinesse wavemeter with a fiber switch (channels 1..17, analog ports 1..8).

    `channels` names the channels in use ({"1": "397 cooling", ...}); `read()`
    returns one frequency reading per named channel (every used channel when
    none is named). `library` is the path of wlmData.dll / libwlmData.so.
    """

    kind = "highfinesse"

    def __init__(self, name: str, *, channels: dict | None = None, library: str | None = None):
        super().__init__(name)
        self._names = _channel_names(channels)
        self.library = library or default_library()
        self._lib = None

    @property
    def channel_names(self) -> dict[int, str]:
        """Channel number -> name, for the channels the config names."""
        return dict(self._names)

    def sensor_names(self) -> list[str]:
        """`<device>/<channel>` of each named channel (the used ones are known once open)."""
        return [f"{self.name}/{channel}" for channel in self._names]

    def _open(self):
        self._lib = self._load()

    def _close(self):
        self._lib = None

    def _load(self):
        loader = ctypes.WinDLL if os.name == "nt" else ctypes.CDLL
        try:
            lib = loader(self.library)
        except OSError as exc:
            raise DeviceError(
                self.name, f"cannot load the wavemeter library {self.library!r} ({exc})") from None
        try:
            return header.declare(lib, FUNCTIONS)
        except AttributeError as exc:
            raise DeviceError(
                self.name, f"{self.library!r} is not the wlmData library ({exc})") from None

    # -- checks made before any vendor call

    def _channel(self, channel) -> int:
        if isinstance(channel, bool) or not isinstance(channel, int) or channel not in CHANNELS:
            raise ValueError(f"{self.name}: channel {channel!r} is not a channel number 1..17")
        return channel

    def _port(self, port) -> int:
        if isinstance(port, bool) or not isinstance(port, int) or port not in PORTS:
            raise ValueError(f"{self.name}: port {port!r} is not an analog port 1..8")
        return port

    # -- readings

    def _reading(self, function: str, channel, unit: str) -> Reading:
        channel = self._channel(channel)
        value = getattr(self._lib, function)(channel, 0.0)
        stamp = utcnow()
        sensor = f"{self.name}/{channel}"
        if value > 0:
            return Reading(sensor, value, unit, stamp)
        return Reading(sensor, math.nan, unit, stamp, status(int(value)))

    def _read(self) -> list[Reading]:
        channels = self._names or dict.fromkeys(self.used_channels(), "")
        return [self._reading("GetFrequencyNum", ch, "THz") for ch in channels]

    @_opened
    def frequency(self, channel: int) -> Reading:
        """The channel's last frequency (THz)."""
        return self._reading("GetFrequencyNum", channel, "THz")

    @_opened
    def wavelength(self, channel: int) -> Reading:
        """The channel's last vacuum wavelength (nm)."""
        return self._reading("GetWavelengthNum", channel, "nm")

    @_opened
    def power(self, channel: int) -> Reading:
        """The channel's last power (µW)."""
        return self._reading("GetPowerNum", channel, "µW")

    # -- the instrument

    @_opened
    def instance_count(self) -> int:
        """How many wavemeter servers run (0: the software is not running)."""
        return self._lib.GetWLMCount(0)

    @_opened
    def version(self) -> dict[str, int]:
        """Model (e.g. 7 for a WS7), serial number, software revision and build."""
        keys = ("model", "serial", "revision", "build")
        return {key: check_get(self.name, f"GetWLMVersion({i})", self._lib.GetWLMVersion(i))
                for i, key in enumerate(keys)}

    @_opened
    def operation_state(self) -> str:
        """"stopped", "adjustment" or "measurement"."""
        state = self._lib.GetOperationState(0)
        if state not in _STATES:
            raise ProtocolError(self.name, f"GetOperationState returned {state}, not 0, 1 or 2")
        return _STATES[state]

    @_opened
    def start_measurement(self) -> None:
        check_set(self.name, "Operation(measurement)", self._lib.Operation(2))

    @_opened
    def stop_measurement(self) -> None:
        check_set(self.name, "Operation(stop)", self._lib.Operation(0))

    @_opened
    def channel_count(self) -> int:
        """How many channels the switch has."""
        return check_get(self.name, "GetChannelsCount", self._lib.GetChannelsCount(0))

    @_opened
    def used_channels(self) -> list[int]:
        """The channels whose use flag is on (measured in switcher mode)."""
        return [ch for ch in range(1, self.channel_count() + 1) if self.signal_state(ch)[0]]

    # -- exposure

    def _ccd(self, ccd) -> int:
        if ccd not in (1, 2) or isinstance(ccd, bool):
            raise ValueError(f"{self.name}: ccd {ccd!r} is not 1 or 2")
        return ccd

    @_opened
    def exposure(self, channel: int, ccd: int = 1) -> int:
        """The channel's exposure time on CCD 1 or 2 (ms)."""
        channel, ccd = self._channel(channel), self._ccd(ccd)
        value = self._lib.GetExposureNum(channel, ccd, 0)
        return check_get(self.name, f"GetExposureNum(channel {channel})", value)

    @_opened
    def set_exposure(self, channel: int, ms: int, ccd: int = 1) -> None:
        channel, ccd = self._channel(channel), self._ccd(ccd)
        if isinstance(ms, bool) or not isinstance(ms, int) or ms not in _INT32:
            raise ValueError(f"{self.name}: exposure {ms!r} is not a whole number of ms")
        code = self._lib.SetExposureNum(channel, ccd, ms)
        check_set(self.name, f"SetExposureNum(channel {channel})", code)

    @_opened
    def auto_exposure(self, channel: int) -> bool:
        channel = self._channel(channel)
        value = self._lib.GetExposureModeNum(channel, 0)
        return bool(check_get(self.name, f"GetExposureModeNum(channel {channel})", value))

    @_opened
    def set_auto_exposure(self, channel: int, on: bool) -> None:
        channel = self._channel(channel)
        code = self._lib.SetExposureModeNum(channel, int(bool(on)))
        check_set(self.name, f"SetExposureModeNum(channel {channel})", code)

    # -- the fiber switch

    @_opened
    def switcher_mode(self) -> bool:
        """Whether the switch cycles through the used channels."""
        return bool(check_get(self.name, "GetSwitcherMode", self._lib.GetSwitcherMode(0)))

    @_opened
    def set_switcher_mode(self, on: bool) -> None:
        check_set(self.name, "SetSwitcherMode", self._lib.SetSwitcherMode(int(bool(on))))

    @_opened
    def switcher_channel(self) -> int:
        """The channel the switch is on now."""
        return check_get(self.name, "GetSwitcherChannel", self._lib.GetSwitcherChannel(0))

    @_opened
    def set_switcher_channel(self, channel: int) -> None:
        """Measure only `channel` (switcher mode off)."""
        channel = self._channel(channel)
        code = self._lib.SetSwitcherChannel(channel)
        check_set(self.name, f"SetSwitcherChannel(channel {channel})", code)

    @_opened
    def signal_state(self, channel: int) -> tuple[bool, bool]:
        """(use, show) flags of the channel."""
        channel = self._channel(channel)
        use, show = ctypes.c_int32(), ctypes.c_int32()
        code = self._lib.GetSwitcherSignalStates(channel, use, show)
        check_get(self.name, f"GetSwitcherSignalStates(channel {channel})", code)
        return bool(use.value), bool(show.value)

    @_opened
    def set_signal_state(self, channel: int, use: bool, show: bool) -> None:
        channel = self._channel(channel)
        code = self._lib.SetSwitcherSignalStates(channel, int(bool(use)), int(bool(show)))
        check_set(self.name, f"SetSwitcherSignalStates(channel {channel})", code)

    # -- analog outputs

    @_opened
    def deviation_signal(self, port: int) -> float:
        """The voltage of analog port `port` (mV)."""
        return self._lib.GetDeviationSignalNum(self._port(port), 0.0)

    @_opened
    def set_deviation_signal(self, port: int, mv: float) -> None:
        port = self._port(port)
        if isinstance(mv, bool) or not isinstance(mv, int | float) or not math.isfinite(mv):
            raise ValueError(f"{self.name}: deviation signal {mv!r} is not a finite number of mV")
        code = self._lib.SetDeviationSignalNum(port, float(mv))
        check_set(self.name, f"SetDeviationSignalNum(port {port})", code)
