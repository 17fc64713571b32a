"""Every alarm transition, and each alarm's state, in the logger's database.

The tables come with the logger's schema (its migration 2, `ionlab db
upgrade`): ``alarm_events(time, alarm, state, previous, severity, value,
message, who, why, until)`` holds every change (state changes, acknowledges,
silences) and ``alarm_states(alarm, state, updated, data)`` each alarm's
latest snapshot, read back at start so states survive a restart. Times are
TIMESTAMPTZ on PostgreSQL and µs since the epoch on SQLite, as for samples.

`record` is thread-safe and never blocks: one writer thread owns the writes,
so a slow or vanished database never holds up the IO loop; while the
database is unreachable the writes wait (at most `max_pending` events, the
oldest dropped and counted beyond) and are retried every `retry_s`.
`load_states` and `events` block: run them on an executor.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime

from ..logger.queries import from_us, to_us
from ..logger.store import Store, StoreError, StoreUnavailable, redact
from .worker import Worker

__all__ = ["AlarmHistory", "MAX_EVENTS"]

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
_COLUMNS = ("time", "alarm", "state", "previous", "severity", "value", "message", "who", "why",
            "until")


class _Sqlite:
    placeholder = "?"

    def __init__(self, path: str):
        self.path = path

    def connect(self):
        return sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)

    errors = (sqlite3.Error,)

    @staticmethod
    def unavailable(exc) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and any(
            m in str(exc) for m in ("locked", "unable to open", "disk I/O"))

    @staticmethod
    def to_db(t: float | None):  # rounded as the API's times are (datetime.fromtimestamp)
        return None if t is None else to_us(datetime.fromtimestamp(t, UTC))

    at = staticmethod(to_us)

    @staticmethod
    def from_db(v) -> datetime | None:
        return None if v is None else from_us(v)

    def begin(self, conn):
        conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def data(value) -> dict:
        return json.loads(value)


class _Postgres:
    placeholder = "%s"

    def __init__(self, url: str):
        self.url = url

    def connect(self):
        import psycopg2

        return psycopg2.connect(self.url, connect_timeout=5, application_name="ionlab-alarms",
                                options="-c timezone=UTC -c statement_timeout=30s")

    @property
    def errors(self):
        import psycopg2

        return (psycopg2.Error,)

    @staticmethod
    def unavailable(exc) -> bool:
        import psycopg2

        return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)

    @staticmethod
    def to_db(t: float | None):
        return None if t is None else datetime.fromtimestamp(t, UTC)

    @staticmethod
    def at(t: datetime) -> datetime:
        return t

    @staticmethod
    def from_db(v) -> datetime | None:
        return v

    def begin(self, conn):
        pass  # psycopg2 opens the transaction itself

    @staticmethod
    def data(value) -> dict:
        return value if isinstance(value, dict) else json.loads(value)


class AlarmHistory(Worker):
    """Writes transitions and states on its own thread; answers history queries."""

    def __init__(self, store: Store, *, retry_s: float = 5.0, max_pending: int = MAX_EVENTS):
        super().__init__("ionlab-alarm-history")
        self.store = store
        url = store.url
        self._db = _Postgres(url) if url.startswith(("postgresql://", "postgres://")) \
            else _Sqlite(url.removeprefix("sqlite://"))
        self.retry_s = retry_s
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._events: list[tuple] = []
        self._states: dict[str, tuple] = {}
        self._busy = False
        self._local = threading.local()

    def __repr__(self):
        return f"<AlarmHistory {redact(self.store.url)} pending={len(self._events)}>"

    # -- connections (one per thread) -------------------------------------------------

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._db.connect()
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _call(self, body):
        """Run body(conn, cur) in one transaction; driver errors become StoreErrors."""
        try:
            conn = self._conn()
            self._db.begin(conn)
            cur = conn.cursor()
            try:
                result = body(cur)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return result
        except self._db.errors as exc:
            self._drop()
            kind = StoreUnavailable if self._db.unavailable(exc) else StoreError
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise kind(f"alarm history in {redact(self.store.url)}: {text}") from exc

    # -- any thread -------------------------------------------------------------------

    def record(self, events: list[dict], states: dict[str, dict]) -> None:
        """Queue events ({column: value}, times as epoch seconds) and state snapshots."""
        db = self._db
        with self._cond:
            for e in events:
                self._events.append(tuple(db.to_db(e.get(c)) if c in ("time", "until")
                                          else e.get(c) for c in _COLUMNS))
            for name, snapshot in states.items():
                self._states[name] = (name, snapshot["state"], db.to_db(time.time()),
                                      json.dumps(snapshot, allow_nan=False))
            over = len(self._events) - self.max_pending
            if over > 0:
                del self._events[:over]
                self.dropped += over
                log.error("alarm history: %d oldest transitions dropped, the database has "
                          "been unreachable too long", over)
            self._cond.notify()

    def _left(self) -> str | None:
        return f"{len(self._events)} transitions not stored" if self._events else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is written (for tests and tools)."""
        deadline = time.monotonic() + timeout
        while self._events or self._states or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def status(self) -> dict:
        return {"written": self.written, "pending": len(self._events),
                "dropped": self.dropped, "last_error": self.last_error}

    # -- blocking (executor) ------------------------------------------------------------

    def load_states(self) -> dict[str, dict]:
        """Every alarm's last snapshot."""
        self.store.upgrade()
        rows = self._call(lambda cur: (cur.execute("SELECT alarm, data FROM alarm_states"),
                                       cur.fetchall())[1])
        return {name: self._db.data(data) for name, data in rows}

    def events(self, start: datetime, end: datetime, alarm: str | None = None,
               limit: int = 1000) -> list[dict]:
        """Events in [start, end), oldest first; `alarm` an alarm's or a rule's name."""
        db, p = self._db, self._db.placeholder
        sql = f"SELECT {', '.join(_COLUMNS)} FROM alarm_events WHERE time >= {p} AND time < {p}"
        params = [db.at(start), db.at(end)]
        if alarm is not None:  # the alarm, or every alarm of the rule (<rule>/<subject>)
            sql += f" AND (alarm = {p} OR (alarm >= {p} AND alarm < {p}))"
            params += [alarm, alarm + "/", alarm + "0"]
        sql += f" ORDER BY time, id LIMIT {p}"
        params.append(limit)
        rows = self._call(lambda cur: (cur.execute(sql, params), cur.fetchall())[1])
        out = []
        for row in rows:
            event = dict(zip(_COLUMNS, row, strict=True))
            event["time"] = db.from_db(event["time"]).isoformat()
            if event["until"] is not None:
                event["until"] = db.from_db(event["until"]).isoformat()
            out.append(event)
        return out

    # -- the writer thread ----------------------------------------------------------------

    def _write(self, events: list[tuple], states: list[tuple]) -> None:
        p = self._db.placeholder

        def body(cur):
            if events:
                cur.executemany(f"INSERT INTO alarm_events ({', '.join(_COLUMNS)}) VALUES "
                                f"({', '.join([p] * len(_COLUMNS))})", events)
            if states:
                cur.executemany(
                    f"INSERT INTO alarm_states (alarm, state, updated, data) VALUES "
                    f"({p}, {p}, {p}, {p}) ON CONFLICT (alarm) DO UPDATE SET "
                    "state = excluded.state, updated = excluded.updated, data = excluded.data",
                    states)

        self._call(body)

    def _run(self) -> None:
        upgraded = False
        while True:
            with self._cond:
                while not (self._events or self._states) and not self._stopping:
                    self._cond.wait()
                if not (self._events or self._states):
                    return
                events, self._events = self._events, []
                states, self._states = list(self._states.values()), {}
                self._busy = True
            try:
                if not upgraded:
                    self.store.upgrade()
                    upgraded = True
                self._write(events, states)
                self.written += len(events)
                if self.last_error is not None:
                    log.info("alarm history: the database answers again")
                self.last_error = None
            except StoreError as exc:
                if str(exc) != self.last_error:
                    log.error("alarm history not written (retrying every %g s): %s",
                              self.retry_s, exc)
                self.last_error = str(exc)
                with self._cond:
                    self._events[:0] = events
                    for row in states:
                        self._states.setdefault(row[0], row)
                    self._busy = False
                    if not self._pause(self.retry_s):
                        return
                continue
            finally:
                self._busy = False
