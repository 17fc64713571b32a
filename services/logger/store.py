"""The storage interface the logger writes to and queries read from.

Two stores implement it, chosen by URL: PostgreSQL (`postgresql://...`, see
postgres.py) and SQLite (a file path, see sqlite.py). A row is
``(sensor, unit, time_us, value)`` with time in microseconds since the Unix
epoch (UTC). Writes are idempotent on (sensor, time): writing a row twice
stores it once, so a spool replay never duplicates.

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

__all__ = ["Row", "Store", "StoreError", "StoreUnavailable", "UnknownSensor", "open_store",
           "redact"]

#: (sensor, unit, time in µs since the epoch, value)
Row = tuple[str, str, int, float]
DEFAULT_URL = "var/ionlab.sqlite"


class StoreError(Exception):
    """The database refused an operation; the message says what and why."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, network cut, connection lost)."""


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

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()
        self._all: list = []
        self._all_lock = threading.Lock()

    def __repr__(self):
        return f"<{type(self).__name__} {redact(self.url)}>"

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
    def write(self, rows: list[Row]) -> int:
        """Store rows idempotently; returns how many were new.

        A write that raises may have stored some of the rows (a store may
        split a large batch over transactions); writing them again stores the rest.
        """

    @abc.abstractmethod
    def describe(self, sensor: str, unit: str, description: str) -> None:
        """Register a sensor (or update its unit and description)."""

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
        """Every sensor: {sensor, unit, description, last_time}."""

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


def open_store(url: str | None = None) -> Store:
    """The store a URL names: `postgresql://...` or an SQLite file path."""
    url = url or DEFAULT_URL
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if "://" in url and not url.startswith("sqlite://"):
        raise StoreError(f"unknown database URL {redact(url)!r}: expected postgresql://... "
                         "or an SQLite file path")
    from .sqlite import SqliteStore

    return SqliteStore(url.removeprefix("sqlite://"))
