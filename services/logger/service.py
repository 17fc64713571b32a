"""The logger service: poll devices, store every reading, publish what was stored.

Each device is polled on its own single-thread executor at its own `poll_s`,
the next read scheduled when the previous one finished, so a slow or hung
device delays only itself. Readings are stamped by the driver when read;
non-finite values are skipped and counted (a warning the first time per
sensor), readings whose status is not ok are counted and not stored.

Wavemeters are read by the wavemeter service, so by default the logger polls
every configured device except those of kind "highfinesse"; what other
services publish reaches the write buffer through `ingest(reading)`, which
any thread may call.

Every stored (or spooled) sample is published on the hub as
``logger/<sensor>`` with {"sensor", "value", "unit", "timestamp", "status"}.
That channel is declared (so a stream can ask for it) as soon as the service
knows the sensor: at start for every sensor the database or ``[logger.sensors]``
names, else when its first reading comes in.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tornado.ioloop import IOLoop

from drivers.base import Device, Reading, Status

from ..config import Config, ConfigError, DeviceSpec
from .queries import from_us, to_us
from .settings import LoggerSettings
from .spool import Spool
from .store import Row, StoreError, open_store, redact
from .writer import Writer

__all__ = ["LoggerService"]

log = logging.getLogger(__name__)

#: device kinds another service reads (their readings arrive through `ingest`)
SERVED_ELSEWHERE = ("highfinesse",)


class _DeviceState:
    """Counters of one polled device, for the status page."""

    def __init__(self):
        self.reads = 0
        self.errors = 0
        self.last_read: datetime | None = None
        self.last_error: str | None = None

    def as_dict(self) -> dict:
        return {"reads": self.reads, "errors": self.errors, "last_error": self.last_error,
                "last_read": self.last_read.isoformat() if self.last_read else None}


class LoggerService:
    """See the module docstring; mount with `routes()`, run with `start()`/`stop()`."""

    name = "logger"

    def __init__(self, config: Config, hub, *, db_url: str | None = None):
        self.config = config
        self.hub = hub
        self.settings = LoggerSettings.from_config(config, db_url)
        names = self.settings.devices
        self.devices: dict[str, DeviceSpec] = {
            n: s for n, s in config.devices.items()
            if (n in names if names is not None else s.kind not in SERVED_ELSEWHERE)}
        self.store = open_store(self.settings.db)
        self.writer = Writer(
            self.store, Spool(self.settings.spool_dir, int(self.settings.spool_max_mb * 2**20)),
            batch_s=self.settings.batch_s, max_batch=self.settings.max_batch,
            retry_s=self.settings.retry_s, on_stored=self._on_stored,
            retention=(self.settings.retention, self.settings.per_sensor_retention))
        self.queries = ThreadPoolExecutor(2, thread_name_prefix="ionlab-query")
        self.lookups = ThreadPoolExecutor(1, thread_name_prefix="ionlab-lookup")  # latest, units
        self._announced: set[str] = set()  # sensors whose hub channel is declared
        self.skipped_nonfinite = 0
        self.skipped_status = 0
        self._warned_nonfinite: set[str] = set()
        self._state = {n: _DeviceState() for n in self.devices}
        self._tasks: list[asyncio.Task] = []
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._open: dict[str, object] = {}
        self._loop: IOLoop | None = None

    def __repr__(self):
        return f"<LoggerService {redact(self.settings.db)} devices={list(self.devices)}>"

    # -- taking readings in ---------------------------------------------------------------

    def ingest(self, reading: Reading) -> bool:
        """Queue one reading for storage (thread-safe); False if it was skipped."""
        if reading.status is not Status.OK:
            self.skipped_status += 1
            return False
        value = float(reading.value)
        if not math.isfinite(value):
            self.skipped_nonfinite += 1
            if reading.sensor not in self._warned_nonfinite:
                self._warned_nonfinite.add(reading.sensor)
                log.warning("%s: skipping non-finite value %r (counted in "
                            "/api/v1/logger/status; warned once per sensor)", reading.sensor, value)
            return False
        self.writer.add([(reading.sensor, reading.unit, to_us(reading.timestamp), value)])
        if reading.sensor not in self._announced:
            self._announce([reading.sensor])
        return True

    def _announce(self, sensors) -> None:
        """Declare ``logger/<sensor>`` on the hub (from any thread, once started)."""
        if self._loop is not None:
            self._announced.update(sensors)
            self._loop.add_callback(self.hub.declare, *(f"logger/{s}" for s in sensors))

    def _on_stored(self, rows: list[Row]) -> None:
        # writer thread -> IO loop: the hub is not thread-safe
        if self._loop is not None:
            self._loop.add_callback(self._publish, rows)

    def _publish(self, rows: list[Row]) -> None:
        for sensor, unit, t, value in rows:
            self.hub.publish(f"logger/{sensor}", {
                "sensor": sensor, "value": value, "unit": unit,
                "timestamp": from_us(t).isoformat(), "status": Status.OK.value})

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = IOLoop.current()
        self._announce(self.settings.sensors)
        try:
            self._announce(await self._loop.run_in_executor(self.queries, self._prepare))
        except StoreError as exc:  # the writer spools until the database is back
            log.error("database %s not ready: %s", redact(self.settings.db), exc)
        self.writer.start()
        for name, spec in self.devices.items():
            self._executors[name] = ThreadPoolExecutor(1, thread_name_prefix=f"poll-{name}")
            self._tasks.append(asyncio.ensure_future(self._poll(spec)))
        log.info("logging %d devices to %s", len(self.devices), redact(self.settings.db))

    def _prepare(self) -> list[str]:
        """Create or migrate the schema, store the configured sensor descriptions; the
        sensors the database knows."""
        self.store.upgrade()
        units = {s["sensor"]: s["unit"] for s in self.store.sensors()}
        for name, sensor in self.settings.sensors.items():
            if sensor.description:
                self.store.describe(name, units.get(name, ""), sensor.description)
        return list(units)

    async def stop(self) -> None:
        """Stop polling, write or spool what is pending, close the devices (about 2 s)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        loop = asyncio.get_running_loop()
        closing = [loop.run_in_executor(self._executors[n], device.close)
                   for n, device in self._open.items()]
        if closing:
            await asyncio.wait(closing, timeout=0.5)
        await loop.run_in_executor(None, self.writer.stop, 1.5)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self.queries.shutdown(wait=False, cancel_futures=True)
        self.lookups.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def open_device(self, spec: DeviceSpec) -> Device:
        """Open one configured device (on its poll thread); a subclass may supply its own."""
        return spec.open()

    async def _poll(self, spec: DeviceSpec) -> None:
        loop = asyncio.get_running_loop()
        executor, state = self._executors[spec.name], self._state[spec.name]
        while True:
            began = loop.time()
            try:
                if spec.name not in self._open:
                    self._open[spec.name] = await loop.run_in_executor(executor, self.open_device,
                                                                       spec)
                readings = await loop.run_in_executor(executor, self._open[spec.name].read)
                state.reads += 1
                state.last_read = max((r.timestamp for r in readings), default=None)
                for reading in readings:
                    self.ingest(reading)
            except ConfigError as exc:
                log.error("not polling %s: %s", spec.name, exc)
                state.last_error = str(exc)
                return
            except Exception as exc:  # noqa: BLE001 - a device failing must not stop the others
                state.errors += 1
                if str(exc) != state.last_error:
                    log.warning("polling %s failed: %s", spec.name, exc)
                state.last_error = str(exc)
            await asyncio.sleep(max(0.0, spec.poll_s - (loop.time() - began)))

    # -- what the web app asks --------------------------------------------------------

    def routes(self) -> list:
        from .api import routes

        return routes(self)

    def rpc_methods(self) -> dict:
        return {}

    def status(self) -> dict:
        return {
            "store": redact(self.settings.db),
            **self.writer.status(),
            "skipped_nonfinite": self.skipped_nonfinite,
            "skipped_status": self.skipped_status,
            "devices": {n: s.as_dict() for n, s in self._state.items()},
        }

    def health(self) -> dict:
        status = self.writer.status()
        return {"ok": status["database"] != "unreachable", "database": status["database"],
                "backlog": status["backlog"]}
