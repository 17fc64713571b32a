"""The logger service: poll devices, store every reading, publish what was stored.

Each device is polled on its own single-thread executor at its own `poll_s`,
the next read scheduled when the previous one finished, so a slow or hung
device delays only itself. Readings are stamped by the driver when read;
readings whose status is not ok (a non-finite value is status "error") are
counted and not stored. A device that cannot be opened is tried again with a
backoff (0.5 s doubling to 10 s); a link lost later is reopened by the driver
(drivers/links.py). The status page and /healthz name every device in error
and since when.

Wavemeters are read by the wavemeter service, so by default the logger polls
every configured device except those of kind "highfinesse"; what other
services publish reaches the write buffer through `ingest(reading)`, which
any thread may call.

At start the logger takes its spool folder (and an SQLite store) for itself
(services/lockfile.py) and checks its database: one that can never be written
as configured (it does not exist, the login is refused, it has no schema) is
a ConfigError saying what to do, so the command exits 2; one that is merely
unreachable is an outage (readings wait in the spool). Once a second a
supervisor starts again a writer thread or a poller that died; /healthz stays
unhealthy with the reason until it runs again.

Stored (or spooled) samples are published on the hub as ``logger/<sensor>``
with {"sensor", "value", "unit", "timestamp", "status"}, in order: of each
spooled batch, every reading of a polled device's sensors and of any other
sensor (an agent's, whose bursts come in thousands) the newest
`PUBLISH_PER_SENSOR`, which is what a subscriber would keep of them anyway,
`PUBLISH_CHUNK` per IO-loop callback (many sensors never hold the loop, and a subscriber
draining once per iteration sees them all).
That channel is declared (so a stream can ask for it) as soon as the service
knows the sensor: at start for every sensor of a polled device and every one
the database or ``[logger.sensors]`` names, else (pushed by an agent) when its
first reading comes in. Since an agent may push any name, a stream may ask
for any ``logger/...`` channel from the start, before its first reading.
What cannot wait for storage (the alarms) takes readings as they are accepted,
before the spool, through `listen`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from tornado.ioloop import IOLoop, PeriodicCallback

from drivers.base import Device, NotOpenError, Reading, Status, utcnow

from ..config import Config, DeviceSpec
from ..lockfile import LockHeld, PidLock
from .columns import Columns
from .ingest.receiver import Receiver
from .metrics import LoggerMetrics
from .queries import from_us, to_us
from .settings import LoggerSettings
from .spool import LEGACY, LOCK_NAME, Spool
from .sqlite import SqliteStore
from .store import Row, StoreError, StoreUnavailable, open_store, redact
from .writer import Writer

__all__ = ["LoggerService"]

log = logging.getLogger(__name__)

#: device kinds another service reads (their readings arrive through `ingest`)
SERVED_ELSEWHERE = ("highfinesse",)
OPEN_RETRY_S = (0.5, 10.0)  # backoff between attempts to open a device
PUBLISH_CHUNK = 100  # stored readings published on the hub per IO-loop callback
PUBLISH_PER_SENSOR = 4  # of each spooled batch, the newest readings of a sensor published
PUBLISH_BACKLOG = 200_000  # stored readings waiting to be published at most (oldest go)
LISTEN_BACKLOG = 200_000  # accepted readings waiting for the listeners at most (oldest go)
LISTEN_EVERY_S = 0.005  # accepted readings are handed to the listeners this often at most


class _DeviceState:
    """What the status page shows of one polled device."""

    def __init__(self):
        self.reads = 0
        self.errors = 0
        self.last_read: datetime | None = None
        self.last_error: str | None = None
        self.error_since: datetime | None = None  # failing since then (None: fine)
        self.fault: str | None = None  # why its poller died, until it runs again
        self.open_failures = 0
        self.open_at = 0.0  # monotonic time of the next attempt to open it

    def read(self, when: datetime | None) -> None:
        self.reads += 1
        self.last_read = when or self.last_read
        self.error_since = None

    def failed(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        if self.error_since is None:
            self.error_since = utcnow()

    def as_dict(self) -> dict:
        state = "error" if self.error_since else "ok" if self.reads else "starting"
        return {"state": state, "reads": self.reads, "errors": self.errors,
                "last_error": self.last_error,
                "error_since": self.error_since.isoformat() if self.error_since else None,
                "last_read": self.last_read.isoformat() if self.last_read else None}


class LoggerService:
    """See the module docstring; mount with `routes()`, run with `start()`/`stop()`."""

    name = "logger"

    def __init__(self, config: Config, hub, *, db_url: str | None = None):
        self.config = config
        self.hub = hub
        self.settings = s = LoggerSettings.from_config(config, db_url)
        self.devices = self.polled(config, s.devices)
        self._polled: frozenset[str] = frozenset()  # sensors of the polled devices (start)
        self.store = open_store(s.db, s.timeout_s)
        self.writer = Writer(
            self.store, Spool(s.spool_dir, int(s.spool_max_mb * 2**20)),
            batch_s=s.batch_s, max_batch=s.max_batch, retry_s=s.retry_s,
            on_stored=self._on_stored, retention=(s.retention, s.per_sensor_retention))
        self.writer.on_accepted = self._on_accepted
        self._listeners: list[Callable[[list[Row]], None]] = []
        self._heard: list[Row] = []  # accepted rows for the listeners' next callback
        self._heard_lock = threading.Lock()
        self.unheard = 0  # accepted rows the listeners never got: LISTEN_BACKLOG was full
        self.queries = ThreadPoolExecutor(2, thread_name_prefix="ionlab-query")
        self.receiver = Receiver(self)  # what agents push (line protocol, MQTT)
        self._metrics = LoggerMetrics(self)
        self.lookups = ThreadPoolExecutor(1, thread_name_prefix="ionlab-lookup")  # latest, units
        self._announced: set[str] = set()  # sensors whose hub channel is declared
        self._known: list[str] = []  # the sensors the database held at start
        self.skipped_status = 0
        self.unpublished = 0  # stored readings never published: PUBLISH_BACKLOG was full
        self._to_publish: collections.deque[Row] = collections.deque()  # IO loop only
        self._warned_error: set[str] = set()
        self._state = {n: _DeviceState() for n in self.devices}
        self._tasks: dict[str, asyncio.Task] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._open: dict[str, Device] = {}
        self._locks: list[PidLock] = []
        self._supervisor: PeriodicCallback | None = None
        self._loop: IOLoop | None = None
        self._prepared = False

    def __repr__(self):
        return f"<LoggerService {redact(self.settings.db)} devices={list(self.devices)}>"

    # -- taking readings in ---------------------------------------------------------------

    def ingest(self, reading: Reading) -> bool:
        """Queue one reading for storage (thread-safe); False if it was skipped."""
        if reading.status is not Status.OK:
            self.skipped_status += 1
            if reading.status is Status.ERROR and reading.sensor not in self._warned_error:
                self._warned_error.add(reading.sensor)
                log.warning("%s: not storing a reading with status error (value %r; counted in "
                            "/api/v1/logger/status, warned once per sensor)", reading.sensor,
                            reading.value)
            return False
        self.writer.add([(reading.sensor, reading.unit, to_us(reading.timestamp),
                          float(reading.value))])
        if reading.sensor not in self._announced:
            self._announce([reading.sensor])
        return True

    def _announce(self, sensors) -> None:
        """Declare ``logger/<sensor>`` on the hub (from any thread, once started)."""
        if self._loop is not None:
            self._announced.update(sensors)
            self._loop.add_callback(self.hub.declare, *(f"logger/{s}" for s in sensors))

    def listen(self, listener: Callable[[list[Row]], None]) -> None:
        """Call `listener(rows)` on the IO loop with the readings `Writer.add` takes, within
        `LISTEN_EVERY_S` of their arrival, before the spool: what must react at once (the
        alarms) need not wait for ``batch_s`` and the database."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[list[Row]], None]) -> None:
        """Stop calling `listener` (given to `listen`)."""
        self._listeners.remove(listener)

    def _on_accepted(self, rows: list[Row]) -> None:
        # any thread -> IO loop, one callback for whatever accumulates until it runs
        if self._loop is None or not self._listeners:
            return
        with self._heard_lock:
            first = not self._heard
            self._heard.extend(rows)
            over = len(self._heard) - LISTEN_BACKLOG
            if over > 0:  # the loop cannot keep up: the oldest go unheard (they are stored)
                del self._heard[:over]
                if not self.unheard:
                    log.warning("the IO loop falls behind the readings: the oldest beyond %d "
                                "are stored but not shown to the alarms (counted in "
                                "unheard)", LISTEN_BACKLOG)
                self.unheard += over
        if first:  # one wake-up of the loop per LISTEN_EVERY_S, however many readings come
            self._loop.add_callback(self._listen_later)

    def _listen_later(self) -> None:
        # returns None: a callback's result that is not None (call_later's handle) costs
        # Tornado a BadYieldError with the handle's repr, the logger's among it
        self._loop.call_later(LISTEN_EVERY_S, self._tell_listeners)

    def _tell_listeners(self) -> None:
        with self._heard_lock:
            rows, self._heard = self._heard, []
        for listener in list(self._listeners):
            try:
                listener(rows)
            except Exception:  # one listener's bug neither stops the others nor the loop
                log.exception("logger: a listener failed on %d readings", len(rows))

    def _on_stored(self, rows: list[Row]) -> None:
        # writer thread -> IO loop: the hub is not thread-safe
        if self._loop is not None:
            self._loop.add_callback(self._publish, newest_per_sensor(rows, PUBLISH_PER_SENSOR, self._polled))

    def _publish(self, rows: list[Row]) -> None:
        """Queue stored rows for the hub; `_publish_some` sends them a chunk per callback."""
        waiting = self._to_publish
        if not waiting and rows:  # one chain of callbacks at a time, while rows wait
            self._loop.add_callback(self._publish_some)
        waiting.extend(rows)
        over = len(waiting) - PUBLISH_BACKLOG
        if over > 0:  # the loop cannot keep up: the oldest are stored, never published
            if not self.unpublished:
                log.warning("the hub falls behind the stored readings: the oldest beyond %d "
                            "are not published (counted in unpublished)", PUBLISH_BACKLOG)
            for _ in range(over):
                waiting.popleft()
            self.unpublished += over

    def _publish_some(self) -> None:
        waiting, publish, ok = self._to_publish, self.hub.publish, Status.OK.value
        for _ in range(min(PUBLISH_CHUNK, len(waiting))):
            sensor, unit, t, value = waiting.popleft()
            publish(f"logger/{sensor}", {"sensor": sensor, "value": value, "unit": unit,
                                         "timestamp": from_us(t).isoformat(), "status": ok})
        if waiting:  # the next chunk after whatever else is ready (the hub's listeners)
            self._loop.add_callback(self._publish_some)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """`prepare` (unless done), then start writing and polling."""
        self._loop = IOLoop.current()
        if not self._prepared:
            await self._loop.run_in_executor(self.queries, self.prepare)
        self.hub.declare_prefix("logger/")
        self._announce(self.settings.sensors)
        self._announce(self._known)
        self._polled = frozenset(n for spec in self.devices.values()
                                 for n in spec.create().sensor_names())
        self._announce(self._polled)
        self.writer.start()
        await self.receiver.start()
        for name, spec in self.devices.items():
            self._executors[name] = ThreadPoolExecutor(1, thread_name_prefix=f"poll-{name}")
            self._tasks[name] = asyncio.ensure_future(self._poll(spec))
        self._supervisor = PeriodicCallback(self._supervise, 1000)
        self._supervisor.start()
        log.info("logging %d devices to %s", len(self.devices), redact(self.settings.db))

    def prepare(self) -> None:
        """Take the spool folder (and an SQLite file), read the spool, check the database;
        a ConfigError when this logger cannot run as configured. Blocking: a command calls
        it before serving (so a mistake is one line and nothing else), `start` otherwise."""
        try:
            self._prepare()
        except BaseException:
            self._release()
            raise
        finally:
            self.store.close()  # this thread's connection: the writer makes its own
        self._prepared = True

    def _prepare(self) -> None:
        s = self.settings
        self._claim(Path(s.spool_dir) / LOCK_NAME, "spool_dir", "its own spool_dir")
        if isinstance(self.store, SqliteStore):
            self._claim(Path(f"{self.store.path}.lock"), "db", "its own database file")
        try:
            self.writer.spool.open()
        except OSError as exc:
            raise s.error("spool_dir", f"cannot use {s.spool_dir!r} as the spool folder "
                          f"({exc})") from None
        try:
            self.writer.identity = self.store.prepare()
        except StoreUnavailable as exc:
            log.error("database %s not reachable (%s); readings go to the spool %s until it is",
                      redact(s.db), exc, s.spool_dir)
            return
        except StoreError as exc:  # no such database, login refused, no schema, no rights
            raise s.error("db", str(exc)) from None
        self._report_spool()
        try:
            units = {row["sensor"]: row["unit"] for row in self.store.sensors()}
            self._known = list(units)
            for name, sensor in s.sensors.items():
                if sensor.description:
                    self.store.describe(name, units.get(name, ""), sensor.description)
        except StoreError as exc:  # the descriptions wait for the next start
            log.warning("cannot store the sensor descriptions: %s", exc)

    def _claim(self, path: Path, key: str, other: str) -> None:
        try:
            self._locks.append(PidLock(path).acquire())
        except LockHeld as exc:
            raise self.settings.error(key, f"{exc}: stop that one first, or give this logger "
                                      f"{other}") from None
        except OSError as exc:
            raise self.settings.error(key, f"cannot make the lock file {path} ({exc})") from None

    def _report_spool(self) -> None:
        """Say at start what in the spool is for another store, and what is in quarantine."""
        spool, mine = self.writer.spool, self.writer.destination
        waiting = spool.waiting(mine.accepts)
        if waiting:
            log.warning("spool %s holds %d readings from before for this store; they are "
                        "replayed now", spool.directory, waiting)
        for destination, n in spool.destinations().items():
            if not mine.accepts(destination):
                how = "--adopt" if destination == LEGACY else "--db URL"
                log.warning("spool %s holds %d readings for another store, %s: they are kept "
                            "(store them with `ionlab spool replay --spool-dir %s %s`)",
                            spool.directory, n, destination, spool.directory, how)
        held = spool.quarantine_files()
        if held:
            log.warning("spool %s: %d files set aside in %s (`ionlab spool list` shows them)",
                        spool.directory, len(held), spool.quarantine)

    async def stop(self) -> None:
        """Stop polling, spool what is pending, close the devices (about 2 s)."""
        await self.receiver.stop()
        if self._supervisor is not None:
            self._supervisor.stop()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        loop = asyncio.get_running_loop()
        closing = [loop.run_in_executor(self._executors[n], device.close)
                   for n, device in self._open.items()]
        if closing:
            await asyncio.wait(closing, timeout=0.5)
        stopped = await loop.run_in_executor(None, self.writer.stop, 1.5)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self.queries.shutdown(wait=False, cancel_futures=True)
        self.lookups.shutdown(wait=False, cancel_futures=True)
        if stopped:  # else the storer still works: the store and the spool stay ours
            self.store.close()
            self._release()

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()

    @staticmethod
    def polled(config: Config, names: tuple[str, ...] | None) -> dict[str, DeviceSpec]:
        """The devices a logger with ``[logger] devices = names`` polls (None: all but wavemeters)."""
        return {n: s for n, s in config.devices.items()
                if (n in names if names is not None else s.kind not in SERVED_ELSEWHERE)}

    def open_device(self, spec: DeviceSpec) -> Device:
        """Open one configured device (on its poll thread); a subclass may supply its own."""
        return spec.open()

    async def device_call(self, name: str, fn, *args):
        """``fn(device, *args)`` on the thread that polls device `name`, between two polls.

        For services that reach a polled device (the ARTIQ device targets); a
        NotOpenError until the poller has opened it.
        """
        device = self._open.get(name)
        if device is None:
            raise NotOpenError(name, f"not open yet ({self._state[name].last_error or 'opening'})")
        return await asyncio.get_running_loop().run_in_executor(self._executors[name], fn,
                                                                device, *args)

    async def _poll(self, spec: DeviceSpec) -> None:
        """Poll one device for ever; a poller that fails unexpectedly starts again."""
        state = self._state[spec.name]
        while True:
            try:
                await self._poll_device(spec, state)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - even a driver's SystemExit: reported,
                # then the poller starts again (escaping, it would stop the whole lab)
                state.fault = f"poller of {spec.name} died ({type(exc).__name__}: {exc})"
                log.error("%s; starting it again", state.fault,
                          exc_info=not isinstance(exc, SystemExit))
                await asyncio.sleep(1.0)

    async def _poll_device(self, spec: DeviceSpec, state: _DeviceState) -> None:
        loop = asyncio.get_running_loop()
        executor = self._executors[spec.name]
        while True:
            began = loop.time()
            try:
                device = self._open.get(spec.name)
                if device is None and time.monotonic() >= state.open_at:
                    device = await loop.run_in_executor(executor, self._opened, spec, state)
                if device is not None:
                    readings = await loop.run_in_executor(executor, device.read)
                    state.read(max((r.timestamp for r in readings), default=None))
                    for reading in readings:
                        self.ingest(reading)
            except Exception as exc:  # noqa: BLE001 - a device failing must not stop the others
                if str(exc) != state.last_error:
                    log.warning("polling %s failed: %s", spec.name, exc)
                state.failed(str(exc))
            if state.fault is not None:
                log.warning("the poller of %s runs again", spec.name)
                state.fault = None
            await asyncio.sleep(max(0.0, spec.poll_s - (loop.time() - began)))

    def _opened(self, spec: DeviceSpec, state: _DeviceState) -> Device:
        """On the poll thread: open the device, or note when to try again."""
        try:
            device = self.open_device(spec)
        except Exception:
            state.open_failures += 1
            first, most = OPEN_RETRY_S
            state.open_at = time.monotonic() + min(most, first * 2 ** min(state.open_failures - 1,
                                                                         30))
            raise
        state.open_failures = 0
        self._open[spec.name] = device
        return device

    def _supervise(self) -> None:
        """Once a second: start again a writer thread or a poller task that ended."""
        self.writer.supervise()
        for name, task in list(self._tasks.items()):
            if task.done() and not task.cancelled():
                exc = task.exception()
                why = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
                self._state[name].fault = f"poller of {name} ended ({why})"
                state = self._state[name]
                log.error("%s; starting it again", state.fault)
                self._tasks[name] = asyncio.ensure_future(self._poll(self.devices[name]))

    # -- what the web app asks --------------------------------------------------------

    def routes(self) -> list:
        from .api import routes

        return routes(self)

    def rpc_methods(self) -> dict:
        return {}

    def metrics(self):
        """Prometheus families of the writer, spool and ingest (services/web/metrics.py)."""
        return self._metrics.collect()

    def status(self) -> dict:
        return {
            "store": redact(self.settings.db),
            **self.writer.status(),
            "skipped_status": self.skipped_status,
            "devices": {n: s.as_dict() for n, s in self._state.items()},
            "ingest": self.receiver.status(),
        }

    def problems(self) -> list[str]:
        """What is wrong now, one line each (empty when all is well)."""
        out = list(self.writer.problems())
        if self.writer.database_ok is False:
            out.append(f"database unreachable: {self.writer.last_error}")
        for name, state in self._state.items():
            if state.fault:
                out.append(state.fault)
            elif state.error_since is not None:
                out.append(f"device {name} in error since {state.error_since.isoformat()}: "
                           f"{state.last_error}")
        return out

    def health(self) -> dict:
        status = self.writer.status()
        problems = self.problems()
        return {"ok": not problems, "database": status["database"], "backlog": status["backlog"],
                "problems": problems,
                "devices_in_error": {n: {"since": s.error_since.isoformat(), "error": s.last_error}
                                     for n, s in self._state.items() if s.error_since}}


def newest_per_sensor(rows: Sequence[Row], k: int, keep=frozenset()) -> list[Row]:
    """The newest `k` rows of each sensor in `rows` (rows or `Columns`), in their order;
    every row of the sensors named in `keep`.

    >>> newest_per_sensor([("a", "", 1, 1.0), ("b", "", 1, 2.0), ("a", "", 2, 3.0)], 1)
    [('b', '', 1, 2.0), ('a', '', 2, 3.0)]
    >>> newest_per_sensor([("a", "", 1, 1.0), ("b", "", 1, 2.0), ("a", "", 2, 3.0)], 1, {"a"})
    [('a', '', 1, 1.0), ('b', '', 1, 2.0), ('a', '', 2, 3.0)]
    """
    if isinstance(rows, Columns):
        keys = rows.index
        kept = {i for i, (name, _unit) in enumerate(rows.sensors) if name in keep}
    else:
        keys = [row[0] for row in rows]
        kept = set(keep)
    present = set(keys)
    short = len(present - kept)  # thinned sensors with fewer than k picked
    left = dict.fromkeys(present & kept, -1)  # never runs out
    picked = []
    for i in range(len(keys) - 1, -1, -1):  # from the newest, until every sensor has its k
        n = left.get(keys[i], k)
        if n:
            left[keys[i]] = n - 1
            picked.append(i)
            if n == 1:
                short -= 1
                if not short and not kept & present:
                    break
    return [tuple(rows[i]) for i in reversed(picked)]
