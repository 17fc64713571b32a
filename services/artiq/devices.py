"""One pc_rpc target per configured device: a generic ARTIQ controller for any driver.

A device target offers ``read()`` (every sensor now: value, unit, status and
read time), ``value(sensor)`` (one sensor's value, an error unless its status
is ok) and the driver's own public methods with their signatures and
docstrings: ``voltage(port)``, ``limits(port)`` and ``set_voltage(port, volts)``
of a DAC, ``wavelength()`` and ``set_wavelength(nm)`` of a power meter. A
method whose name starts with ``set_`` changes the lab and is guarded like
every write.

Every call runs on the executor of the device's owner, never on the IO loop.
In ``ionlab run`` the owner is the logger, which opened and polls the device
(`LoggerService.device_call`): one connection per instrument, a call waits
between two polls. ``ionlab artiq`` on its own has no logger; there the
`DeviceHost` below owns the devices, each on its own thread, opened at the
first call and reopened after a failure.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drivers.base import Device, DeviceError, Reading, Status
from drivers.base import TimeoutError as DeviceTimeout
from drivers.registry import OptionError, create, driver_class

from ..config import Config, DeviceSpec
from ..web.http import ApiError
from ..web.pcrpc import Target
from ..web.rpc import Method

__all__ = ["DeviceHost", "device_target", "reading_json"]

log = logging.getLogger(__name__)


def reading_json(reading: Reading) -> dict[str, Any]:
    return {"sensor": reading.sensor, "value": reading.value, "unit": reading.unit,
            "status": reading.status.value, "timestamp": reading.timestamp.isoformat()}


def _driver_methods(cls: type[Device]) -> list[str]:
    """The public methods a driver adds to the device base (open, close, read)."""
    base = set(dir(Device))
    return sorted(name for name in dir(cls)
                  if not name.startswith("_") and name not in base
                  and inspect.isfunction(inspect.getattr_static(cls, name)))


class _DeviceMethods:
    """The methods of one device target, each a call on the owner's executor."""

    def __init__(self, spec: DeviceSpec, owner):
        self.spec, self.owner = spec, owner

    async def _call(self, fn: Callable[..., Any], *args) -> Any:
        try:
            return await self.owner.device_call(self.spec.name, fn, *args)
        except DeviceTimeout as exc:
            raise TimeoutError(str(exc)) from None
        except DeviceError as exc:
            raise ApiError(502, str(exc)) from None
        except ValueError as exc:  # a driver's own kinds of ValueError, as the builtin
            if type(exc) is ValueError:
                raise
            raise ValueError(str(exc)) from None

    async def read(self) -> list[dict[str, Any]]:
        """Read every sensor now: sensor, value, unit, status and read time (UTC) of each."""
        return [reading_json(r) for r in await self._call(Device.read)]

    async def value(self, sensor: str = "") -> float:
        """One sensor's value read now (the device's only sensor when none is named);
        an error unless its status is ok."""
        readings = await self._call(Device.read)
        names = [r.sensor for r in readings]
        if not sensor and len(readings) == 1:
            sensor = names[0]
        for reading in readings:
            if reading.sensor == sensor:
                if reading.status is not Status.OK:
                    raise ApiError(503, f"{sensor}: no current value ({reading.status.value})")
                return reading.value
        raise ApiError(404, f"{self.spec.name} has no sensor {sensor!r} (sensors: "
                       f"{', '.join(names)})", "sensor")

    def driver_method(self, name: str, probe: Method) -> Method:
        """The driver's method `name` as a Method run on the executor."""
        function = getattr(driver_class(self.spec.kind, self.spec.simulation), name)

        @functools.wraps(function)
        async def run(**kwargs):
            return await self._call(lambda device: getattr(device, name)(**kwargs))

        return Method(run, name.startswith("set_"), probe.params, probe.doc)


def device_target(spec: DeviceSpec, owner) -> Target:
    """The target of device `spec`, its calls run by `owner.device_call(name, fn, *args)`."""
    cls = driver_class(spec.kind, spec.simulation)
    methods = _DeviceMethods(spec, owner)
    table = {"read": Method(methods.read), "value": Method(methods.value)}
    for name in _driver_methods(cls):
        try:  # bound to the class only so that Method reads the signature without `self`
            probe = Method(types.MethodType(getattr(cls, name), cls))
        except TypeError as exc:  # a parameter RPC cannot describe
            log.warning("%s: %s is not offered to ARTIQ: %s", spec.name, name, exc)
            continue
        table[name] = methods.driver_method(name, probe)
    doc = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
    return Target(spec.name, f"{spec.name}: {spec.kind}{' (simulated)' if spec.simulation else ''}"
                  f". {doc}".rstrip(), table)


class DeviceHost:
    """The owner of the devices in ``ionlab artiq`` on its own: one thread per device.

    Has the service shape of services.web.app. Option errors show at
    construction (a ConfigError); a device is opened at its first call, and a
    call that fails with a device error closes it, so the next call opens it
    again (a power-cycled instrument comes back by itself).
    """

    name = "devices"

    def __init__(self, config: Config, names: list[str]):
        self.devices: dict[str, DeviceSpec] = {n: config.devices[n] for n in names}
        self._drivers: dict[str, Device] = {}
        for name, spec in self.devices.items():
            try:
                self._drivers[name] = create(spec.kind, name, spec.simulation, spec.options)
            except OptionError as exc:
                raise spec.section.error(exc.key, exc.expected) from None
        self._executors = {n: ThreadPoolExecutor(1, thread_name_prefix=f"artiq-{n}")
                           for n in names}

    def __repr__(self):
        opened = [n for n, d in self._drivers.items() if d.is_open]
        return f"<DeviceHost devices={list(self.devices)} open={opened}>"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        closing = [loop.run_in_executor(self._executors[n], d.close)
                   for n, d in self._drivers.items() if d.is_open]
        if closing:
            await asyncio.wait(closing, timeout=1.0)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)

    def routes(self) -> list:
        return []

    def rpc_methods(self) -> dict:
        return {}

    def health(self) -> dict:
        return {"ok": True, "open": sorted(n for n, d in self._drivers.items() if d.is_open)}

    async def device_call(self, name: str, fn: Callable[..., Any], *args) -> Any:
        """``fn(device, *args)`` on the device's thread, opening the device first if needed."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executors[name], _opened_call, self._drivers[name], fn, args)


def _opened_call(device: Device, fn: Callable[..., Any], args: tuple) -> Any:
    """On the device's thread: open it if needed, call, and close it after a device error."""
    if not device.is_open:
        device.open()
        log.info("opened %s", device.name)
    try:
        return fn(device, *args)
    except DeviceError:
        try:
            device.close()
        except DeviceError as exc:
            log.debug("closing %s after a failure: %s", device.name, exc)
        raise
