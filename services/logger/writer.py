"""The writer: readings made durable in the spool every batch interval, then stored.

Two threads share the work, so that the database can never hold readings back:

- the *batcher* takes what is pending every `batch_s` (sooner when `max_batch`
  readings wait) and appends it to the spool, fsynced. It never waits on the
  database, so a kill -9 at any moment, during a database hang too, loses at
  most the readings of the interval in progress (and of one fsync).
- the *storer* owns the database connections. It replays the spool into the
  store oldest first, only the batches meant for that store (by its
  identity), joined into writes of up to `max_batch` readings; a segment goes
  once it is stored. When the store fails (unreachable, refused, no answer
  within its timeout) the storer retries every `retry_s`, reconnecting, while
  the spool grows (bounded). Whenever nothing waits it brings lagging rollups
  up to date (`Store.refresh_rollups`, a day still being written about once
  per `rollup_settle_s`) and, every `maintain_s`, does upkeep and retention.

When the disk will not take a batch (full, failing) the batch stays in memory
and the storer writes it straight from there; it counts as spooled only once
it is on disk. Rows that cannot be stored at all (a value that is not finite,
a time that is not an integer) are refused one by one, counted and logged.

`add` is thread-safe and never blocks on I/O, so pollers and the IO loop can
call it. The pending buffer is bounded by `max_pending`; past that (the disk
does not take batches and the database is away) the oldest pending readings
are dropped, counted and logged.

A thread that dies is started again by `supervise()`, which each thread calls
for the other every interval (the logger service calls it too); until the new
one has run through once, `problems()` names what happened.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from .columns import Columns
from .spool import Destination, Record, Spool, SpoolError
from .store import Row, Store, StoreError, StoreUnavailable

__all__ = ["Writer"]

log = logging.getLogger(__name__)

_THREADS = ("batcher", "storer")


class Writer:
    """The batcher and the storer of one store and its spool; see the module docstring."""

    def __init__(self, store: Store, spool: Spool, *, batch_s: float = 1.0,
                 max_batch: int = 200_000, max_pending: int = 1_000_000, retry_s: float = 2.0,
                 on_stored: Callable[[list[Row]], None] | None = None,
                 retention: tuple[timedelta | None, dict[str, timedelta]] = (None, {}),
                 maintain_s: float = 3600.0, rollup_settle_s: float = 60.0,
                 identity: str | None = None):
        self.store = store
        self.spool = spool
        self.batch_s = batch_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.retry_s = retry_s
        self.on_stored = on_stored
        self.retention = retention
        self.maintain_s = maintain_s
        self.rollup_settle = timedelta(seconds=rollup_settle_s)
        self.identity = identity  # of the store, once known (see Store.prepare)
        self.written = 0  # new rows the store took
        self.spooled = 0  # readings appended to the spool
        self.dropped = 0  # readings lost: the pending buffer was full
        self.rejected = 0  # rows that can never be stored (not finite, wrong types)
        self.errors = 0
        self.accepted = 0  # readings ever queued: `add` returns this as its ticket
        self.handled = 0  # of those, how many were spooled, stored or dropped (in order)
        self.on_write: Callable[[float, int], None] | None = None  # (seconds, rows) per write
        self.on_accepted: Callable[[list[Row]], None] | None = None  # rows, as `add` takes them
        self.last_write: datetime | None = None
        self.last_error: str | None = None
        self.spool_error: str | None = None  # why the disk does not take batches, while so
        self.database_ok: bool | None = None
        self._pending: deque[Sequence[Row]] = deque()  # what `add` took, oldest first
        self._pending_n = 0  # readings in _pending
        self._unspooled: deque[list[Row]] = deque()  # batches the disk would not take
        self._cond = threading.Condition()
        self._stopping = False
        self._urgent = False  # someone waits for the pending readings: spool them now
        self._handled = threading.Condition()
        self._stop_by = math.inf  # the storer's last pass ends by then
        self._appends = 0  # batches appended (the storer looks for them when this moves)
        self._seen = -1
        self._batching = self._storing = False
        self._checked = False  # the store's identity was checked on this connection
        self._retry_at = 0.0
        self._maintain_at = 0.0
        self._faults: dict[str, str] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._restart_at = dict.fromkeys(_THREADS, 0.0)
        self._started = False

    def __repr__(self):
        return (f"<Writer {self.store!r} pending={self._pending_n} "
                f"spooled={self.spool.readings} written={self.written}>")

    @property
    def destination(self) -> Destination:
        """The store this writer's batches are for."""
        return Destination(self.identity, self.store.address)

    # -- any thread -------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> int:
        """Queue readings (rows or `Columns`) for the next batch (thread-safe, never blocks on
        I/O).

        Returns a ticket for `wait_handled`.
        """
        if not isinstance(rows, Columns):
            rows = list(rows)
        with self._cond:
            self._pending.append(rows)
            self._pending_n += len(rows)
            self.accepted += len(rows)
            ticket = self.accepted
            over = self._pending_n - self.max_pending
            if over > 0:
                self._take(over)
                self.dropped += over
                log.error("writer is stuck: pending buffer full (%d), %d oldest readings LOST",
                          self.max_pending, over)
            if self._pending_n >= self.max_batch:
                self._cond.notify_all()
        if over > 0:
            self._handle(over)
        if self.on_accepted is not None:  # what will be stored: Columns are checked already
            self.on_accepted(rows if isinstance(rows, Columns) else
                             [r for r in rows if _storable(r)])
        return ticket

    def wait_handled(self, ticket: int, timeout: float) -> bool:
        """Spool what is pending now and wait until every reading queued up to `ticket` is
        in the spool or stored (or dropped); False on timeout. Not for the writer's threads."""
        with self._cond:
            if self.handled < ticket:
                self._urgent = True
                self._cond.notify_all()
        deadline = time.monotonic() + timeout
        with self._handled:
            while self.handled < ticket:
                left = deadline - time.monotonic()
                if left <= 0 or not self._handled.wait(left):
                    return self.handled >= ticket
        return True

    def pending_count(self) -> int:
        return self._pending_n

    def _take(self, n: int) -> list[Sequence[Row]]:
        """The oldest `n` pending readings (or all), taken out (holding the condition)."""
        taken, count = [], 0
        while self._pending and count < n:
            part = self._pending[0]
            if count + len(part) > n:
                part, self._pending[0] = part[:n - count], part[n - count:]
            else:
                self._pending.popleft()
            taken.append(part)
            count += len(part)
        self._pending_n -= count
        return taken

    def _handle(self, n: int) -> None:
        with self._handled:
            self.handled += n
            self._handled.notify_all()

    def start(self) -> None:
        """Open the spool (if not yet) and start both threads."""
        if not self.spool._opened:
            self.spool.open()
        self._started = True
        for name in _THREADS:
            self._start(name)

    def stop(self, timeout: float = 10.0) -> bool:
        """Spool what is pending, give the storer until `timeout` to store what it can, end
        both threads; False if the storer was still busy (the rest waits in the spool)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._stop_by = deadline
            self._cond.notify_all()
        for name in _THREADS:
            thread = self._threads.get(name)
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._unspooled:
            lost = sum(map(len, self._unspooled))
            log.error("writer stopped with %d readings neither spooled (%s) nor stored: LOST",
                      lost, self.spool_error)
        busy = any(t.is_alive() for t in self._threads.values())
        if not busy:
            self.spool.close()
        else:
            log.warning("writer: the store did not finish within %.1f s; %d readings wait in "
                        "%s for the next start", timeout, self.spool.readings,
                        self.spool.directory)
        return not busy

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything added so far is stored (for tests and tools); False on
        timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
        # In this order, each stage's flag read after what it hands on: a batch spooled
        # once `_batching` reads False is in `waiting`, and records the storer took from
        # `waiting` meanwhile show in `_storing`, set before it takes any.
        while (self._pending or self._batching or self._unspooled
               or self.spool.waiting(self.destination.accepts) or self._storing):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def supervise(self) -> None:
        """Start again a thread that died (at most once a second each)."""
        if not self._started or self._stopping:
            return
        now = time.monotonic()
        for name in _THREADS:
            thread = self._threads.get(name)
            if thread is not None and not thread.is_alive() and now >= self._restart_at[name]:
                self._restart_at[name] = now + 1.0
                log.warning("writer: starting the %s thread again", name)
                self._start(name)

    def problems(self) -> list[str]:
        """What keeps the writer from doing its job, for /healthz (empty when healthy)."""
        out = list(self._faults.values())
        if self.spool_error is not None:
            out.append(f"spool: {self.spool_error} (batches held in memory)")
        return out

    def status(self) -> dict:
        destinations = self.spool.destinations()
        mine = self.destination.accepts
        waiting = sum(n for d, n in destinations.items() if mine(d))
        return {
            "database": {None: "unknown", True: "ok", False: "unreachable"}[self.database_ok],
            "store_id": self.identity,
            "pending": self._pending_n + sum(map(len, self._unspooled)),
            "backlog": waiting + self._pending_n + sum(map(len, self._unspooled)),
            "spooled_readings": waiting,
            "spool_foreign_readings": sum(destinations.values()) - waiting,
            "spool_bytes": self.spool.bytes,
            "spool_limit_bytes": self.spool.max_bytes,
            "spool_discarded": self.spool.discarded,
            "spool_damaged_bytes": self.spool.damaged_bytes,
            "spool_quarantined": self.spool.quarantined,
            "spool_quarantined_bytes": self.spool.quarantined_bytes,
            "spool_error": self.spool_error,
            "spooled": self.spooled,
            "written": self.written,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "errors": self.errors,
            "last_write": self.last_write.isoformat() if self.last_write else None,
            "last_error": self.last_error,
            "faults": list(self._faults.values()),
        }

    # -- both threads -----------------------------------------------------------------

    def _start(self, name: str) -> None:
        loop = self._batch_loop if name == "batcher" else self._store_loop
        thread = threading.Thread(target=self._guarded, args=(name, loop),
                                  name=f"ionlab-writer-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _guarded(self, name: str, loop) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - a dying thread is reported, then restarted
            self._faults[name] = f"writer {name} thread died ({type(exc).__name__}: {exc})"
            log.critical("%s", self._faults[name], exc_info=not isinstance(exc, SystemExit))

    def _ran(self, name: str) -> None:
        """One round done: a restarted thread is healthy again; look after the other one."""
        if self._faults.pop(name, None) is not None:
            log.warning("writer: the %s thread runs again", name)
        self.supervise()

    # -- the batcher --------------------------------------------------------------------

    def _batch_loop(self) -> None:
        due = time.monotonic() + self.batch_s
        while True:
            with self._cond:
                while (not self._stopping and not self._urgent
                       and self._pending_n < self.max_batch):
                    wait = due - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                stopping = self._stopping
                parts = self._take(self.max_batch)
                self._batching = bool(parts)
                self._urgent = bool(self._pending_n) and self._urgent
            if time.monotonic() >= due:
                due = time.monotonic() + self.batch_s
            try:
                batch = self._columns(parts)
                self._spool(batch)
            except Exception:  # noqa: BLE001 - the batcher must outlive any surprise
                log.exception("writer: unexpected error spooling %d readings",
                              sum(map(len, parts)))
                self._hold([row for part in parts for row in part])
            finally:
                self._batching = False
            self._ran("batcher")
            if stopping and not self._pending_n:
                return

    def _columns(self, parts: list[Sequence[Row]]) -> Columns:
        """The pending parts as one batch; rows that can never be stored are refused."""
        columns = []
        for is_columns, run in itertools.groupby(parts, lambda part: isinstance(part, Columns)):
            if is_columns:
                columns.extend(run)
                continue
            rows = [row for part in run for row in part]  # one conversion for many small adds
            try:
                columns.append(Columns.from_rows(rows))
            except (ValueError, TypeError, OverflowError):
                good = self._refuse_bad_rows(rows)
                if good:
                    columns.append(Columns.from_rows(good))
        return Columns.join(columns) if columns else Columns.from_rows([])

    def _spool(self, batch: Columns) -> None:
        """Append a batch to the spool (hand it to the storer in memory if the disk fails)."""
        if not batch:
            return
        try:
            self.spool.append(batch, self.destination)
        except SpoolError as exc:
            if self.spool_error is None:
                log.error("writer: the spool does not take batches (%s); holding them in "
                          "memory and writing them straight to the database", exc)
            self.spool_error = str(exc)
            self.errors += 1
            self._hold(batch)
            return
        if self.spool_error is not None:
            log.warning("writer: the spool takes batches again")
            self.spool_error = None
        self.spooled += len(batch)
        self._stored(batch)
        with self._cond:
            self._appends += 1
            self._cond.notify_all()

    def _hold(self, batch: list[Row]) -> None:
        """Keep a batch the disk would not take for the storer (bounded by max_pending)."""
        with self._cond:
            self._unspooled.append(batch)
            while sum(map(len, self._unspooled)) > self.max_pending and len(self._unspooled) > 1:
                lost = self._unspooled.popleft()
                self.dropped += len(lost)
                self._handle(len(lost))
                log.error("writer: %d readings neither spooled nor stored: LOST", len(lost))
            self._cond.notify_all()

    def _refuse_bad_rows(self, batch: list[Row]) -> list[Row]:
        good = [r for r in batch if _storable(r)]
        bad = len(batch) - len(good)
        if bad:
            self.rejected += bad
            self._handle(bad)
            example = next(r for r in batch if not _storable(r))
            log.error("writer: %d rows can never be stored (e.g. %r: expected sensor, unit, "
                      "integer µs, finite value); dropped", bad, example)
        return good

    def _stored(self, rows: list[Row]) -> None:
        self._handle(len(rows))
        if self.on_stored is not None:
            try:
                self.on_stored(rows)
            except Exception:  # noqa: BLE001
                log.exception("writer: on_stored callback failed")

    # -- the storer ---------------------------------------------------------------------

    def _store_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._due():
                    self._cond.wait(self._idle_s())
                stopping = self._stopping
            if stopping:  # the batcher spools the last readings first
                batcher = self._threads.get("batcher")
                if batcher is not None and batcher is not threading.current_thread():
                    batcher.join(max(0.0, self._stop_by - time.monotonic()))
            with self._cond:
                self._seen = self._appends
                self._storing = True
            try:
                if self.database_ok is not False or time.monotonic() >= self._retry_at:
                    self._store(stopping)
            except StoreError as exc:
                self._failed(exc)
            except Exception as exc:  # noqa: BLE001 - the storer must outlive any surprise
                log.exception("writer: unexpected error storing")
                self._failed(exc)
            finally:
                self._storing = False
            self._ran("storer")
            if stopping:
                return

    def _due(self) -> bool:
        """Whether the storer has something to do now (called holding the condition)."""
        if self.database_ok is False and time.monotonic() < self._retry_at:
            return False
        return (bool(self._unspooled) or self._appends != self._seen
                or self.database_ok is not True or time.monotonic() >= self._maintain_at)

    def _idle_s(self) -> float:
        if self.database_ok is False:
            return max(0.001, self._retry_at - time.monotonic())
        return max(0.001, min(1.0, self._maintain_at - time.monotonic()))

    def _store(self, stopping: bool) -> None:
        self._check_identity()
        while self._unspooled:
            batch = self._unspooled[0]
            self._write(batch)
            self._stored(batch)
            with self._cond:
                self._unspooled.popleft()
        if self._replay(stopping) and not stopping:
            self._catch_up()
            if time.monotonic() >= self._maintain_at:
                self._maintain()

    def _check_identity(self) -> None:
        """After each (re)connect: which store the URL names now."""
        if self._checked:
            return
        identity = self.store.prepare()
        if self.identity is not None and identity != self.identity:
            log.error("%s is another database now (store %s, it was %s): batches for the "
                      "other one stay in the spool", self.store.address, identity, self.identity)
        self.identity = identity
        self._checked = True
        self._reached()

    def _write(self, rows: list[Row]) -> None:
        began = time.perf_counter()
        self.written += self.store.write(rows)
        if self.on_write is not None:
            self.on_write(time.perf_counter() - began, len(rows))
        self._reached()
        self.last_write = datetime.now(UTC)

    def replay(self, *, adopt: bool = False) -> bool:
        """Store the spool now, on this thread, while the writer's threads are not running
        (`ionlab spool replay`): the batches for this store or, with `adopt`, every batch
        whatever store it was meant for. True when none is left; StoreError as a write."""
        self._check_identity()
        return self._replay(False, (lambda _: True) if adopt else None)

    def _replay(self, stopping: bool, accepts=None) -> bool:
        """Store the spool's batches for this store, oldest first; True when none is left."""
        accepts = accepts or self.destination.accepts
        for path in self.spool.backlog(accepts):
            found = self.spool.read(path)
            if found is None:
                continue
            for rows in self._joined(r for r in found.records if accepts(r.destination)):
                if stopping and time.monotonic() > self._stop_by:
                    return False
                self._write(rows)
            try:
                self.spool.consumed(path, found, accepts)
            except OSError as exc:
                log.error("writer: cannot set aside the damaged part of %s (%s); the segment "
                          "is kept and replayed again later", path.name, exc)
                return False
        return True

    def _joined(self, records: Iterable[Record]):
        """Spooled batches joined, in order, into writes of up to `max_batch` readings."""
        joined: list[Columns] = []
        count = 0
        for record in records:
            if joined and count + record.count > self.max_batch:
                yield Columns.join(joined)
                joined, count = [], 0
            joined.append(record.columns())
            count += record.count
        if joined:
            yield Columns.join(joined)

    def _reached(self) -> None:
        if self.database_ok is False:
            log.warning("database %r is back", self.store)
        self.database_ok = True

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = str(exc)
        if self.database_ok is not False:
            log.error("database write failed (%s); spooling to %s until it is back",
                      exc, self.spool.directory)
        self.database_ok = False
        self._checked = self._checked and not isinstance(exc, StoreUnavailable)
        self._retry_at = time.monotonic() + self.retry_s

    def _catch_up(self) -> None:
        """Refresh lagging rollups while no readings wait (they go first)."""
        try:
            while (self._appends == self._seen and not self._unspooled and not self._stopping
                   and self.store.refresh_rollups(settle=self.rollup_settle)):
                pass
        except StoreUnavailable:
            raise  # an outage like any other
        except StoreError as exc:
            log.warning("rollup refresh failed: %s", exc)

    def _maintain(self) -> None:
        self._maintain_at = time.monotonic() + self.maintain_s
        try:
            now = datetime.now(UTC)
            self.store.maintain(now)
            default, per_sensor = self.retention
            self.store.apply_retention(now, default, per_sensor)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            log.warning("database upkeep failed: %s", exc)


def _storable(row) -> bool:
    """Whether a row is (sensor, unit, integer µs in 64 bits, finite number)."""
    try:
        sensor, unit, t, value = row
        finite = isinstance(value, int | float) and math.isfinite(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return (isinstance(sensor, str) and isinstance(unit, str) and isinstance(t, int)
            and not isinstance(t, bool) and -2**63 <= t < 2**63 and finite)
