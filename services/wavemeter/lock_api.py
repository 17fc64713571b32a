"""The laser locks as a service: fed by the hub, writing outputs off the IO loop.

`LockService` joins the wavemeter service in one application
(services.web.app): it subscribes to the hub's ``wavemeter/<n>`` events,
hands each new reading to that channel's `Controller`, writes the voltage it
asks for on the wavemeter service's executor and publishes the lock's state
on ``lock/<n>``. A write still in flight when the next decision comes is
followed by the newest decision only, so a slow output costs one pending
value per channel, never a queue.

HTTP (writes need the token)::

    GET /api/v1/locks            every lock's status
    GET /api/v1/locks/{n}        {"state", "error_mhz", "output_v", "reason", "setpoint_thz", ...}
    PUT /api/v1/locks/{n}        {"locked": true, "setpoint_thz" | "setpoint_nm", "p", "i", "d",
                                  "capture_mhz", "min_v", "max_v"}

RPC: ``lock(channel, setpoint_thz)`` (or ``setpoint_nm``; gains ``p``, ``i``, ``d``
optional), ``unlock(channel)``, ``lock_status(channel)``, ``locks()`` and
``set_lock(channel, setpoint_thz, setpoint_nm, p, i, d, capture_mhz, min_v, max_v)``
(output limits within what the output accepts); lock, unlock and set_lock need the
token. Settings changed here persist in the state file; after a restart every lock is
off unless `resume` is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import datetime
from typing import Any

import tornado.ioloop

from drivers.analog import AnalogOutput
from drivers.base import DeviceError, utcnow
from drivers.highfinesse.outputs import WavemeterOutputs

from ..config import Config, ConfigError
from ..lockfile import LockHeld, PidLock
from ..web.http import ApiError, JsonHandler, path_number
from ..web.hub import Hub
from ..web.rpc import Method, Param
from .locks import Controller, LockConfig, LockSettings, Reason, SettingsError, SettingsStore
from .service import settings_from_config

__all__ = ["LockHandler", "LockService", "LocksHandler"]

log = logging.getLogger(__name__)

_PUT_KEYS = {"locked", "setpoint_thz", "setpoint_nm", "p", "i", "d", "capture_mhz", "min_v",
             "max_v"}


class LockService:
    """Every wavemeter channel's lock, run on the IO loop.

    `wavemeter` is the wavemeter service: its acquisition's device gives the
    deviation-signal ports (once it is open), its `executor` runs every
    output call. `owner` (the logger in ``ionlab run``) already polls some
    devices: an output among its ``devices`` is used through its
    ``device_call``, between two polls, so one connection serves both and the
    logged voltage is the one the lock wrote. `state_file` overrides the
    config's (tests use a temporary folder); `tick_s` is how often staleness
    and signal loss are checked.
    """

    name = "locks"

    def __init__(self, config: Config, hub: Hub, wavemeter, *, owner=None, state_file=None,
                 tick_s: float = 0.25):
        self.config = config
        self.hub = hub
        self.wavemeter = wavemeter
        self.owner = owner
        self.tick_s = tick_s
        device_name, _ = settings_from_config(config)
        names = config.devices[device_name].options.get("channels") or {}
        channels = [int(k) for k in names if str(k).isdigit()] or list(range(1, 9))
        self.lock_config = LockConfig.from_config(config, channels)
        self.store = SettingsStore(state_file or self.lock_config.state_file)
        self._file_lock = PidLock(f"{self.store.path}.lock")  # one writer of the state file
        self.controllers = {n: Controller(s) for n, s in self.lock_config.settings.items()}
        self._devices: dict[str, Any] = {}  # output devices this service opened (and closes)
        self._own: WavemeterOutputs | None = None
        self._locked = dict.fromkeys(self.controllers, False)  # asked for; persisted
        self._pending: dict[int, float] = {}  # channel -> newest voltage not yet written
        self._writers: dict[int, asyncio.Task] = {}
        self._resuming: set[asyncio.Task] = set()
        self._saving: asyncio.Task | None = None
        self._dirty = False
        self._task: asyncio.Task | None = None
        self._ticker: tornado.ioloop.PeriodicCallback | None = None

    def __repr__(self):
        engaged = sorted(n for n, c in self.controllers.items() if c.engaged)
        return f"<LockService channels={sorted(self.controllers)} engaged={engaged}>"

    # -- service shape (services.web.app) ----------------------------------------

    async def start(self) -> None:
        """Take the state file (one writer), load saved settings, follow the readings (from
        the latest already published),
        resume locks if configured."""
        loop = asyncio.get_running_loop()
        claim = loop.run_in_executor(None, self._file_lock.acquire)  # beside the load, not after
        try:
            saved = await loop.run_in_executor(None, self.store.load)
            await claim
        except (LockHeld, OSError, SettingsError) as exc:
            await asyncio.gather(claim, return_exceptions=True)
            self._file_lock.release()
            fix = "stop that one first, or give this one its own state_file" \
                if isinstance(exc, LockHeld) else f"cannot use {self.store.path}"
            raise ConfigError(self.config.file, "locks.state_file", f"{fix}: {exc}") from None
        for channel, controller in self.controllers.items():
            values = saved.get(channel, {})
            changes = {k: v for k, v in values.items() if k in LockSettings.WRITABLE}
            try:
                controller.configure(controller.settings.replace(**changes))
            except SettingsError as exc:
                log.warning("lock %d: saved settings ignored (%s)", channel, exc)
            self._locked[channel] = values.get("locked") is True
            self.hub.declare(f"lock/{channel}")
        subscription = self.hub.subscribe(["wavemeter/*"])
        for channel in self.controllers:  # what came before the subscription: the latest
            latest = self.hub.latest(f"wavemeter/{channel}")
            if latest is not None:
                self._on_reading(latest.channel, latest.data)
        self._task = asyncio.create_task(self._follow(subscription))
        self._ticker = tornado.ioloop.PeriodicCallback(self._tick, self.tick_s * 1000)
        self._ticker.start()
        for channel, controller in self.controllers.items():
            self._publish(channel)
            if self._locked[channel] and controller.settings.resume:
                task = asyncio.create_task(self._resume(channel))
                self._resuming.add(task)
                task.add_done_callback(self._resuming.discard)

    async def stop(self) -> None:
        """Stop following readings; finish pending writes and the settings file."""
        if self._ticker is not None:
            self._ticker.stop()
        for task in [self._task, *self._resuming]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._writers.values(), return_exceptions=True)
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        for device in reversed(list(self._devices.values())):
            try:
                await self._run(device.close)
            except DeviceError as exc:
                log.warning("closing %s: %s", device.name, exc)
        self._devices.clear()
        self._file_lock.release()

    def routes(self) -> list:
        return [
            (r"/api/v1/locks", LocksHandler, {"service": self}),
            (r"/api/v1/locks/([^/]+)", LockHandler, {"service": self}),
        ]

    def rpc_methods(self) -> dict[str, Method]:
        channel = Param("channel", int)
        setpoint = [Param(name, float, None) for name in ("setpoint_thz", "setpoint_nm")]
        gains = [Param(name, float, None) for name in ("p", "i", "d")]
        ranges = [Param(name, float, None) for name in ("capture_mhz", "min_v", "max_v")]
        return {
            "lock": Method(self.lock, True, (channel, *setpoint, *gains),
                           "Lock a channel at setpoint_thz (default: its saved setpoint)."),
            "unlock": Method(self.unlock, True, (channel,),
                             "Unlock a channel; its output stays where it is."),
            "lock_status": Method(self.lock_status, False, (channel,),
                                  "A lock's state, error (MHz), output (V), reason, setpoint."),
            "locks": Method(self.locks, False, (), "Every lock's status."),
            "set_lock": Method(self.set_lock, True, (channel, *setpoint, *gains, *ranges),
                               "Change a lock's setpoint, gains, capture range or output "
                               "limits (locked or not)."),
            "set_lock_setpoint": Method(self.set_lock_setpoint, True, (channel, *setpoint)),
        }

    def health(self) -> dict:
        faults = {str(n): c.reason for n, c in self.controllers.items()
                  if self._locked[n] and not c.engaged}
        return {"ok": not faults, "faults": faults,
                "engaged": sorted(n for n, c in self.controllers.items() if c.engaged)}

    # -- operations (HTTP and RPC) ---------------------------------------------------

    def set_lock_setpoint(self, channel: int, setpoint_thz: float | None = None,
                          setpoint_nm: float | None = None) -> dict[str, Any]:
        """Move a lock's setpoint (THz or vacuum nm); a locked laser follows without a kick."""
        if (setpoint_thz is None) == (setpoint_nm is None):
            raise ApiError(400, "give setpoint_thz or setpoint_nm (one of them)", "setpoint_thz")
        return self.set_lock(channel, setpoint_thz=setpoint_thz, setpoint_nm=setpoint_nm)

    def lock_status(self, channel: int) -> dict[str, Any]:
        """The status of one lock."""
        return self._controller(channel).status()

    def locks(self) -> list[dict[str, Any]]:
        """The status of every lock."""
        return [c.status() for _, c in sorted(self.controllers.items())]

    async def lock(self, channel: int, setpoint_thz: float | None = None,
                   setpoint_nm: float | None = None, p: float | None = None,
                   i: float | None = None, d: float | None = None) -> dict[str, Any]:
        """Engage without a bump from the port's present voltage (checked whole first)."""
        controller = self._controller(channel)
        with _refused(channel):
            settings = _changed(controller.settings, setpoint_thz=setpoint_thz,
                                setpoint_nm=setpoint_nm, p=p, i=i, d=d)
            controller.check(settings, locking=True)
        output = await self._output(channel)
        low, high = output.limits(settings.port)
        if settings.min_v < low or settings.max_v > high:
            settings = settings.replace(min_v=max(settings.min_v, low),
                                        max_v=min(settings.max_v, high))
        try:
            present = await self._io(output, "voltage", settings.port)
        except (DeviceError, ValueError) as exc:
            raise ApiError(502, f"lock {channel}: cannot read {output.name} port "
                           f"{settings.port}: {exc}") from None
        with _refused(channel):  # checked again: a reading may have come meanwhile
            controller.configure(settings)
        if not controller.engaged:
            controller.engage(present, utcnow())
            log.info("lock %d engaged at %.6f THz from %+.4f V", channel,
                     settings.setpoint_thz, present)
        self._locked[channel] = True
        self._save()
        self._publish(channel)
        return controller.status()

    def unlock(self, channel: int) -> dict[str, Any]:
        """Disengage; the output stays where it is."""
        controller = self._controller(channel)
        controller.disengage(Reason.REQUESTED, utcnow())
        self._pending.pop(channel, None)
        self._locked[channel] = False
        self._save()
        self._publish(channel)
        return controller.status()

    async def set_lock(self, channel: int, setpoint_thz: float | None = None,
                       setpoint_nm: float | None = None, p: float | None = None,
                       i: float | None = None, d: float | None = None,
                       capture_mhz: float | None = None, min_v: float | None = None,
                       max_v: float | None = None) -> dict[str, Any]:
        """Change the setpoint, gains, capture range or output limits; a locked channel
        follows without a kick. Limits beyond what the output accepts are refused."""
        controller = self._controller(channel)
        with _refused(channel):
            settings = _changed(controller.settings, setpoint_thz=setpoint_thz,
                                setpoint_nm=setpoint_nm, p=p, i=i, d=d, capture_mhz=capture_mhz,
                                min_v=min_v, max_v=max_v)
            controller.check(settings, locking=controller.engaged)
        if min_v is not None or max_v is not None:
            output = await self._output(channel)
            low, high = output.limits(settings.port)
            for name, value in (("min_v", min_v), ("max_v", max_v)):
                if value is not None and not low <= value <= high:
                    raise ApiError(400, f"lock {channel}: {name}: {output.name} port "
                                   f"{settings.port} accepts {low:g}..{high:g} V, not {value:g}",
                                   name)
        with _refused(channel):  # checked again: a reading may have come meanwhile
            controller.configure(settings)
        self._save()
        self._publish(channel)
        return controller.status()

    # -- internals -----------------------------------------------------------------

    def _controller(self, channel: int | str) -> Controller:
        try:
            return self.controllers[channel]
        except KeyError:
            known = ", ".join(map(str, sorted(self.controllers))) or "none"
            raise ApiError(404, f"no lock on channel {str(channel)[:20]}; lockable channels: "
                           f"{known}", "channel") from None

    async def _output(self, channel: int) -> AnalogOutput:
        """The channel's analog output; 503/409 when it is not there or lacks the port."""
        settings = self.controllers[channel].settings
        name = settings.output
        if name is None:
            device = self.wavemeter.acquisition.device
            if device is None:
                raise ApiError(503, "the wavemeter is not available yet; its ports come "
                               "with it")
            if self._own is None or self._own.wavemeter is not device:
                self._own = WavemeterOutputs(device)
            output = self._own
        elif self._owned(name):
            try:
                output = await self.owner.device_call(name, lambda device: device)
            except DeviceError as exc:
                raise ApiError(503, f"cannot use output {name!r}: {exc}") from None
        else:
            if name not in self._devices:
                try:
                    self._devices[name] = await self._run(self.config.devices[name].open)
                except DeviceError as exc:
                    raise ApiError(503, f"cannot open output {name!r}: {exc}") from None
            output = self._devices[name]
        if not isinstance(output, AnalogOutput):
            raise ApiError(409, str(self.lock_config.error(
                channel, "output", f"{name!r} is not an analog output")), "channel")
        if settings.port not in output.ports():
            raise ApiError(409, f"lock {channel}: {output.name} has no port {settings.port} "
                           f"(ports {', '.join(map(str, output.ports()))}); set output and "
                           f"port in [locks.{channel}]", "channel")
        return output

    async def _resume(self, channel: int) -> None:
        """Re-engage a lock that was on before the restart, once the wavemeter is there."""
        while self._locked[channel] and not self.controllers[channel].engaged:
            try:
                await self.lock(channel)
                log.info("lock %d resumed", channel)
                return
            except ApiError as exc:
                if exc.status_code != 503:
                    log.warning("lock %d not resumed: %s", channel, exc.message)
                    return
            await asyncio.sleep(self.tick_s)

    async def _run(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.wavemeter.executor,
                                                                func, *args)

    def _owned(self, name: str) -> bool:
        """Whether output `name` is a device the owner polls (and so drives)."""
        return self.owner is not None and name in self.owner.devices

    async def _io(self, output: AnalogOutput, method: str, *args):
        """``output.method(*args)`` off the loop: on the poll thread of a device the owner
        polls, else on the wavemeter's executor."""
        if self._owned(output.name):
            return await self.owner.device_call(output.name,
                                                lambda device: getattr(device, method)(*args))
        return await self._run(getattr(output, method), *args)

    async def _follow(self, subscription) -> None:
        with subscription:
            async for event in subscription:
                try:
                    self._on_reading(event.channel, event.data)
                except Exception:
                    log.exception("lock: cannot use event %s %r", event.channel, event.data)

    def _on_reading(self, topic: str, data: dict[str, Any]) -> None:
        _, _, number = topic.partition("/")
        if not number.isdigit() or int(number) not in self.controllers:
            return
        channel = int(number)
        timestamp = data.get("timestamp")
        if isinstance(timestamp, str):
            timestamp = datetime.fromisoformat(timestamp)
        if not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
            return
        frequency = data.get("frequency_thz")
        if not isinstance(frequency, int | float) or not math.isfinite(frequency):
            frequency = None
        controller = self.controllers[channel]
        before = (controller.state, controller.reason, controller.error_mhz)
        volts = controller.update(timestamp, frequency, data.get("status", "ok"))
        if volts is not None:
            self._write(channel, volts)
        if volts is not None or (controller.state, controller.reason,
                                 controller.error_mhz) != before:
            self._publish(channel)

    def _write(self, channel: int, volts: float) -> None:
        self._pending[channel] = volts
        if channel not in self._writers:
            self._writers[channel] = asyncio.create_task(self._writer(channel))

    async def _writer(self, channel: int) -> None:
        controller = self.controllers[channel]
        try:
            output = await self._output(channel)
            while channel in self._pending:
                volts = self._pending.pop(channel)
                await self._io(output, "set_voltage", controller.settings.port, volts)
        except (ApiError, DeviceError, ValueError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            log.error("lock %d: output write failed: %s", channel, message)
            controller.disengage(f"{Reason.OUTPUT_FAILED}: {message}", utcnow())
            self._pending.pop(channel, None)
            self._publish(channel)
        finally:
            del self._writers[channel]

    def _tick(self) -> None:
        now = utcnow()
        for channel, controller in self.controllers.items():
            before = (controller.state, controller.reason)
            controller.tick(now)
            if (controller.state, controller.reason) != before:
                self._publish(channel)

    def _publish(self, channel: int) -> None:
        self.hub.publish(f"lock/{channel}", self.controllers[channel].status())

    def _save(self) -> None:
        """Persist the run-time settings soon, off the IO loop; writes never overlap."""
        self._dirty = True
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._saver())

    async def _saver(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            self._dirty = False
            snapshot = {n: {**c.settings.writable(), "locked": self._locked[n]}
                        for n, c in self.controllers.items()}
            try:
                await loop.run_in_executor(None, self.store.save, snapshot)
            except OSError as exc:
                log.error("cannot save lock settings to %s: %s", self.store.path, exc)


def _changed(settings: LockSettings, **changes: float | None) -> LockSettings:
    """`settings` with `changes` (None: unchanged), checked."""
    return settings.replace(**{k: v for k, v in changes.items() if v is not None})


@contextlib.contextmanager
def _refused(channel: int):
    """Settings a lock refuses become a 400 naming the field (an RPC invalid-params error)."""
    try:
        yield
    except SettingsError as exc:
        raise ApiError(400, f"lock {channel}: {exc}", exc.field) from None


def _lock_number(service: LockService, text: str) -> int:
    """The channel a URL names; 404 (naming the lockable ones) for anything else."""
    number = path_number(text, "channel", max_digits=3)
    service._controller(text if number is None else number)
    return number


class LocksHandler(JsonHandler):
    """``GET /api/v1/locks``: every lock's status."""

    def initialize(self, service: LockService):
        self.service = service

    def get(self):
        self.write_json(self.service.locks())


class LockHandler(JsonHandler):
    """``GET``/``PUT /api/v1/locks/{n}``: one lock's status; lock, unlock, setpoint, gains."""

    def initialize(self, service: LockService):
        self.service = service

    def get(self, channel: str):
        self.write_json(self.service.lock_status(_lock_number(self.service, channel)))

    async def put(self, channel: str):
        self.require_token()
        service, n = self.service, _lock_number(self.service, channel)
        body = self.json_body()
        if not body:
            raise ApiError(400, f"nothing to change; give one or more of "
                           f"{', '.join(sorted(_PUT_KEYS))}")
        for key, value in body.items():
            if key not in _PUT_KEYS:
                raise ApiError(400, f"{key}: unknown field; expected one of "
                               f"{', '.join(sorted(_PUT_KEYS))}", key)
            if key == "locked":
                if not isinstance(value, bool):
                    raise ApiError(400, f"locked: expected true or false, got {value!r}", key)
            elif not isinstance(value, int | float) or isinstance(value, bool):
                raise ApiError(400, f"{key}: expected a number, got {value!r}", key)
        locked = body.pop("locked", None)
        if locked:
            status = await service.lock(n, **body)
        else:
            status = await service.set_lock(n, **body) if body else service.lock_status(n)
            if locked is False:
                status = service.unlock(n)
        self.write_json(status)
