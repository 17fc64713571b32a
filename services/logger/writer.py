"""The writer thread: buffers readings and writes them in batches, or spools them.

Every `batch_s` seconds (sooner when `max_batch` readings are waiting) the
pending readings go to the store in one write. When the store fails, the
batch is appended to the spool instead and polling goes on; every `retry_s` the
writer tries the store again and, once it answers, replays the spool oldest
first before writing anything new. A `kill -9` loses at most the readings that
were pending in memory, i.e. one batch interval. Whenever no readings wait,
the writer brings lagging rollups up to date (`Store.refresh_rollups`), a
day still being written about once per `rollup_settle_s`.

`add` is thread-safe and never blocks on the database, so pollers and the IO
loop can call it. The pending buffer is bounded by `max_pending`; past that
(the writer is stuck in a call that has not timed out yet) the oldest pending
readings are dropped, counted and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .spool import Spool
from .store import Row, Store, StoreError

__all__ = ["Writer"]

log = logging.getLogger(__name__)


class Writer:
    """One thread that owns the store's write connection and the spool."""

    def __init__(self, store: Store, spool: Spool, *, batch_s: float = 1.0,
                 max_batch: int = 200_000, max_pending: int = 1_000_000, retry_s: float = 2.0,
                 on_stored: Callable[[list[Row]], None] | None = None,
                 retention: tuple[timedelta | None, dict[str, timedelta]] = (None, {}),
                 maintain_s: float = 3600.0, rollup_settle_s: float = 60.0):
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
        self.written = 0  # new rows the store took
        self.spooled = 0  # readings that went to the spool
        self.dropped = 0  # readings lost because the pending buffer was full
        self.errors = 0
        self.accepted = 0  # readings ever queued: `add` returns this as its ticket
        self.handled = 0  # of those, how many were stored, spooled or dropped (in order)
        self.on_write: Callable[[float, int], None] | None = None  # (seconds, rows) per write
        self.last_write: datetime | None = None
        self.last_error: str | None = None
        self.database_ok: bool | None = None
        self._pending: list[Row] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._urgent = False  # someone waits for the pending readings: write them now
        self._handled = threading.Condition()
        self._retry_at = 0.0
        self._maintain_at = 0.0
        self._schema_ok = False
        self._thread = threading.Thread(target=self._run, name="ionlab-writer", daemon=True)

    def __repr__(self):
        return (f"<Writer {self.store!r} pending={len(self._pending)} "
                f"spooled={self.spool.readings} written={self.written}>")

    # -- any thread -------------------------------------------------------------------

    def add(self, rows: list[Row]) -> int:
        """Queue readings for the next batch (thread-safe, never blocks on I/O).

        Returns a ticket for `wait_handled`.
        """
        with self._cond:
            self._pending.extend(rows)
            self.accepted += len(rows)
            ticket = self.accepted
            over = len(self._pending) - self.max_pending
            if over > 0:
                del self._pending[:over]
                self.dropped += over
                log.error("writer is stuck: pending buffer full (%d), %d oldest readings LOST",
                          self.max_pending, over)
            if len(self._pending) >= self.max_batch:
                self._cond.notify()
        if over > 0:
            self._handle(over)
        return ticket

    def wait_handled(self, ticket: int, timeout: float) -> bool:
        """Write what is pending now and wait until every reading queued up to `ticket` is
        stored or spooled (or dropped); False on timeout. Not for the writer's thread."""
        with self._cond:
            if self.handled < ticket:
                self._urgent = True
                self._cond.notify()
        deadline = time.monotonic() + timeout
        with self._handled:
            while self.handled < ticket:
                left = deadline - time.monotonic()
                if left <= 0 or not self._handled.wait(left):
                    return self.handled >= ticket
        return True

    def pending_count(self) -> int:
        return len(self._pending)

    def _handle(self, n: int) -> None:
        with self._handled:
            self.handled += n
            self._handled.notify_all()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write (or spool) what is pending, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("writer did not stop within %.1f s; %d readings still pending",
                      timeout, len(self._pending))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending (for tests and tools); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
        while self._pending or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def status(self) -> dict:
        return {
            "database": {None: "unknown", True: "ok", False: "unreachable"}[self.database_ok],
            "pending": len(self._pending),
            "backlog": self.spool.readings + len(self._pending),
            "spooled_readings": self.spool.readings,
            "spool_bytes": self.spool.bytes,
            "spool_limit_bytes": self.spool.max_bytes,
            "spool_discarded": self.spool.discarded,
            "written": self.written,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_write": self.last_write.isoformat() if self.last_write else None,
            "last_error": self.last_error,
        }

    # -- the writer thread ------------------------------------------------------------

    _busy = False

    def _take(self) -> list[Row]:
        with self._cond:
            batch = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            self._busy = bool(batch)
            self._urgent = bool(self._pending) and self._urgent
            return batch

    def _run(self) -> None:
        try:
            self._ensure_schema()
            self.database_ok = True
        except StoreError as exc:
            self._failed(exc)
        next_batch = time.monotonic() + self.batch_s
        while True:
            with self._cond:
                while (not self._stopping and not self._urgent
                       and len(self._pending) < self.max_batch):
                    wait = next_batch - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                stopping = self._stopping
            next_batch = time.monotonic() + self.batch_s
            try:
                self._tick(final=stopping)
                self._busy = False
                if not stopping:
                    self._catch_up()
            except Exception:  # noqa: BLE001 - the writer must outlive any surprise
                log.exception("writer: unexpected error")
            finally:
                self._busy = False
            if stopping and not self._pending:
                return

    def _tick(self, final: bool = False) -> None:
        batch = self._take()
        if self.database_ok is False and time.monotonic() < self._retry_at:
            self._to_spool(batch)  # known to be down: do not wait on it
        elif self.spool:
            self._to_spool(batch)  # behind the backlog, to keep the order
            if not final:
                self._replay()
        elif batch and not self._write(batch):
            self._to_spool(batch)
        if self.database_ok and not final and time.monotonic() >= self._maintain_at:
            self._maintain()

    def _ensure_schema(self) -> None:
        """Create or migrate the schema once, before the first write (raises StoreError)."""
        if not self._schema_ok:
            self.store.upgrade()
            self._schema_ok = True

    def _write(self, rows: list[Row]) -> bool:
        try:
            self._ensure_schema()
            self.written += self._timed_write(rows)
        except StoreError as exc:
            self._failed(exc)
            return False
        self._succeeded()
        self._stored(rows)
        return True

    def _replay(self) -> None:
        """Store the spool oldest first, removing each segment once all of it is stored."""
        for segment in self.spool.seal():
            for rows in self._joined(self.spool.read(segment)):
                try:
                    self._ensure_schema()
                    self.written += self._timed_write(rows)
                except StoreError as exc:
                    self._failed(exc)
                    return
            self.spool.remove(segment)
            self._succeeded()
            log.info("spool: replayed %s", segment.name)
            self._to_spool(self._take())  # keep memory bounded during a long replay

    def _joined(self, batches: list[list[Row]]):
        """Spooled batches joined, in order, into writes of up to `max_batch` readings."""
        joined: list[Row] = []
        for rows in batches:
            if joined and len(joined) + len(rows) > self.max_batch:
                yield joined
                joined = []
            joined.extend(rows)
        if joined:
            yield joined

    def _timed_write(self, rows: list[Row]) -> int:
        began = time.perf_counter()
        new = self.store.write(rows)
        if self.on_write is not None:
            self.on_write(time.perf_counter() - began, len(rows))
        return new

    def _to_spool(self, rows: list[Row]) -> None:
        if not rows:
            return
        try:
            self.spool.append(rows)
        except OSError as exc:
            self.dropped += len(rows)
            self.errors += 1
            self.last_error = f"spool: {exc}"
            log.error("cannot write the spool (%s): %d readings LOST", exc, len(rows))
            self._handle(len(rows))
            return
        self.spooled += len(rows)
        self._stored(rows)

    def _stored(self, rows: list[Row]) -> None:
        self._handle(len(rows))
        if self.on_stored is not None:
            try:
                self.on_stored(rows)
            except Exception:  # noqa: BLE001
                log.exception("writer: on_stored callback failed")

    def _succeeded(self) -> None:
        if self.database_ok is False:
            log.warning("database %r is back", self.store)
        self.database_ok = True
        self.last_write = datetime.now(UTC)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = str(exc)
        if self.database_ok is not False:
            log.error("database write failed (%s); spooling to %s until it is back",
                      exc, self.spool.directory)
        self.database_ok = False
        self._retry_at = time.monotonic() + self.retry_s

    def _catch_up(self) -> None:
        """Refresh lagging rollups while no readings wait (they go first)."""
        if not self.database_ok:
            return
        try:
            while (not self._pending and not self._stopping
                   and self.store.refresh_rollups(settle=self.rollup_settle)):
                pass
        except StoreError as exc:
            log.warning("rollup refresh failed: %s", exc)

    def _maintain(self) -> None:
        self._maintain_at = time.monotonic() + self.maintain_s
        try:
            now = datetime.now(UTC)
            self.store.maintain(now)
            default, per_sensor = self.retention
            self.store.apply_retention(now, default, per_sensor)
        except StoreError as exc:
            log.warning("database upkeep failed: %s", exc)
