"""The storage interface the logger writes to and queries read from.

Two stores implement it, chosen by URL: PostgreSQL (`postgresql://...`, see
postgres.py) and SQLite (a file path, see sqlite.py). A row is
``(sensor, unit, time_us, value)`` with time in microseconds since the Unix
epoch (UTC). Writes are idempotent on (sensor, time): writing a row twice
stores it once, so a spool replay never duplicates.

Every store has an identity: a random id made when its schema is created
(`ionlab db upgrade`), kept in the database itself. `prepare()` returns it, so
the spool can tell which database a batch is for even when two URLs name the
same database or one URL comes to name another.

Errors come in three kinds: StoreUnavailable (the database cannot be reached
now: down, cut off, not answering in time; waiting helps), StoreUnusable (it
can never be written as configured: no such database, login refused, no
schema; the message says how to fix it) and StoreError (refused otherwise).

A store is safe to share between threads: each thread gets its own connection.

>>> redact("postgresql://logger:secret@db.lab:5432/ionlab")
'postgresql://logger:***@db.lab:5432/ionlab'
>>> redact("postgresql://db.lab/ionlab?user=logger&password=secret")
'postgresql://db.lab/ionlab?user=logger&password=***'
"""

from __future__ import annotations

import abc
import threading
from datetime import datetime, timedelta

from ..web.http import redact_url
from .queries import Query

__all__ = ["DEFAULT_TIMEOUT_S", "Row", "Store", "StoreError", "StoreUnavailable", "StoreUnusable",
           "UnknownSensor", "check_url", "open_store", "redact"]

#: (sensor, unit, time in µs since the epoch, value)
Row = tuple[str, str, int, float]
DEFAULT_URL = "var/ionlab.sqlite"
#: how long a connect or a statement may take before the database counts as unreachable
DEFAULT_TIMEOUT_S = 5.0


class StoreError(Exception):
    """The database refused an operation; the message says what and why."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, network cut, connection lost, no answer)."""


class StoreUnusable(StoreError):
    """The database cannot be used as configured (waiting will not help); says how to fix it."""


class UnknownSensor(StoreError):
    """A query named a sensor the database has never stored."""

    def __init__(self, sensor: str):
        super().__init__(f"no sensor named {sensor!r}")
        self.sensor = sensor


def redact(url: str) -> str:
    """The URL with any password replaced (in the user part or the query), for logs and
    status pages."""
    return redact_url(url)


class Store(abc.ABC):
    """Samples by (sensor, time), rollups, latest values and retention."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.url = url
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list = []
        self._all_lock = threading.Lock()

    def __repr__(self):
        return f"<{type(self).__name__} {redact(self.url)}>"

    @property
    def address(self) -> str:
        """Where the store is, as spooled batches name it (no password)."""
        return redact(self.url)

    # -- connections, one per thread --------------------------------------------------

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _drop_conn(self) -> None:
        """Forget this thread's connection (after it failed); the next call reconnects."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._all_lock:
                if conn in self._all:
                    self._all.remove(conn)
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def close(self) -> None:
        """Close every thread's connection."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._local = threading.local()

    @abc.abstractmethod
    def _connect(self): ...

    # -- the interface ----------------------------------------------------------------

    @abc.abstractmethod
    def upgrade(self) -> int:
        """Create or migrate the schema (safe to run concurrently); returns its version."""

    @abc.abstractmethod
    def prepare(self) -> str:
        """Check this is a store this version can write (migrating an older schema) and
        return its identity; StoreUnusable when it cannot be (no schema: `upgrade` first)."""

    @abc.abstractmethod
    def write(self, rows: list[Row]) -> int:
        """Store rows idempotently; returns how many were new.

        A write that raises may have stored some of the rows (a store may
        split a large batch over transactions); writing them again stores the rest.
        """

    @abc.abstractmethod
    def describe(self, sensor: str, unit: str, description: str) -> None:
        """Register a sensor (or update its unit and description)."""

    @abc.abstractmethod
    def set_tags(self, sensors: dict[str, tuple[str, dict[str, str]]]) -> None:
        """Register sensors with their unit and tags (metadata of pushed points)."""

    @abc.abstractmethod
    def series(self, query: Query) -> list[tuple[datetime, float]]:
        """Raw samples, or one (bucket start, aggregate) per non-empty bucket, in time order."""

    @abc.abstractmethod
    def unit(self, sensor: str) -> str:
        """The unit of a sensor; UnknownSensor if it was never stored."""

    @abc.abstractmethod
    def latest(self) -> list[dict]:
        """The newest sample of every sensor: {sensor, time, value, unit}."""

    @abc.abstractmethod
    def sensors(self) -> list[dict]:
        """Every sensor: {sensor, unit, description, tags, last_time}."""

    @abc.abstractmethod
    def apply_retention(self, now: datetime, default: timedelta | None,
                        per_sensor: dict[str, timedelta]) -> dict:
        """Remove raw samples older than their retention; rollups are kept. Returns a summary."""

    def refresh_rollups(self, limit: int = 50, settle: timedelta = timedelta(0)) -> int:
        """Bring lagging rollups up to date (a bounded amount); returns how much was done.

        Stores that update rollups as they write have nothing to do.
        """
        return 0

    def maintain(self, now: datetime) -> None:  # noqa: B027 - optional hook
        """Periodic upkeep (e.g. create partitions ahead); nothing by default."""


def check_url(url: str) -> str:
    """The URL if ionlab has a store for it, else StoreUnusable naming what it accepts.

    >>> check_url("mysql://db.lab/ionlab")
    Traceback (most recent call last):
    ...
    services.logger.store.StoreUnusable: unsupported database URL 'mysql://db.lab/ionlab': \
expected postgresql://[user@]host[:port]/database or an SQLite file path
    """
    if "://" in url and not url.startswith(("postgresql://", "postgres://", "sqlite://")):
        raise StoreUnusable(f"unsupported database URL {redact(url)!r}: expected "
                            "postgresql://[user@]host[:port]/database or an SQLite file path")
    if not url.removeprefix("sqlite://"):
        raise StoreUnusable("empty database URL: expected postgresql://... or an SQLite file")
    return url


def open_store(url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Store:
    """The store a URL names: `postgresql://...` or an SQLite file path."""
    url = check_url(url or DEFAULT_URL)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, timeout_s=timeout_s)
    from .sqlite import SqliteStore

    return SqliteStore(url.removeprefix("sqlite://"), timeout_s=timeout_s)
