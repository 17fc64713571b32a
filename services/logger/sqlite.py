"""The SQLite store: one file, the same tables and behaviour as PostgreSQL.

Times are integers (microseconds since the Unix epoch, UTC). Samples are keyed
(sensor_id, time) in a WITHOUT ROWID table, so writes are idempotent and
per-sensor range scans read one contiguous stretch. The 1-minute and 1-hour
rollups are updated in the write transaction from the rows that were new.
The file runs in WAL mode: queries never wait for the writer. SQLite has no
partitions, so retention deletes one sensor-day at a time.

`prepare` creates the schema in a new or empty file (the demo lab needs no
setup step) but refuses a file that holds something else, and a lock held
longer than the store's timeout is StoreUnavailable.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

from .queries import MAX_POINTS, Query, QueryError, from_us, offset_segments, to_us
from .store import DEFAULT_TIMEOUT_S, Row, Store, StoreError, StoreUnavailable, StoreUnusable, UnknownSensor

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

DAY_US = 86400 * 10**6

_V1 = """
CREATE TABLE sensors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    unit TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    last_time INTEGER,
    last_value REAL
);
CREATE TABLE samples (
    sensor_id INTEGER NOT NULL,
    time INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (sensor_id, time)
) WITHOUT ROWID;
CREATE TABLE rollup_1m (
    sensor_id INTEGER NOT NULL,
    time INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    PRIMARY KEY (sensor_id, time)
) WITHOUT ROWID;
CREATE TABLE rollup_1h (
    sensor_id INTEGER NOT NULL,
    time INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    PRIMARY KEY (sensor_id, time)
) WITHOUT ROWID;
-- time as Unix seconds, which Grafana's SQLite data source reads directly
CREATE VIEW readings AS
    SELECT s.time / 1e6 AS time, n.name AS sensor, s.value, n.unit
    FROM samples s JOIN sensors n ON n.id = s.sensor_id;
CREATE VIEW latest AS
    SELECT last_time / 1e6 AS time, name AS sensor, last_value AS value, unit
    FROM sensors WHERE last_time IS NOT NULL;
"""

# tags of pushed points (line protocol, MQTT): a JSON object
_TAGS = "ALTER TABLE sensors ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'"

# The alarms' transitions and current states (services/alarms/history.py).
_ALARMS = """
CREATE TABLE alarm_events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    alarm TEXT NOT NULL,
    state TEXT NOT NULL,
    previous TEXT NOT NULL,
    severity TEXT NOT NULL,
    value REAL,
    message TEXT NOT NULL DEFAULT '',
    who TEXT,
    why TEXT,
    until INTEGER
);
CREATE INDEX alarm_events_by_time ON alarm_events (time);
CREATE INDEX alarm_events_by_alarm ON alarm_events (alarm, time);
CREATE TABLE alarm_states (
    alarm TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated INTEGER NOT NULL,
    data TEXT NOT NULL
);
"""

# The store's identity: one random id, made with the schema (see store.py).
_IDENTITY = """
CREATE TABLE ionlab_store (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO ionlab_store VALUES (1, lower(hex(randomblob(16))), strftime('%Y-%m-%dT%H:%M:%SZ'))
"""

#: version -> SQL; append, never edit a released step
MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _TAGS), (3, _ALARMS), (4, _IDENTITY)]
VERSION = MIGRATIONS[-1][0]

_ROLLUP_UPSERT = """
    INSERT INTO rollup_{suffix} (sensor_id, time, count, sum, min, max)
    SELECT sensor_id, time - time % {width}, count(*), sum(value), min(value), max(value)
    FROM temp.staging WHERE true GROUP BY 1, 2
    ON CONFLICT (sensor_id, time) DO UPDATE SET
        count = count + excluded.count, sum = sum + excluded.sum,
        min = min(min, excluded.min), max = max(max, excluded.max)"""


def _database(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            self._drop_conn()
            unavailable = any(m in str(exc) for m in ("locked", "unable to open", "disk I/O"))
            raise (StoreUnavailable if unavailable else StoreError)(
                f"SQLite {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            self._drop_conn()
            raise StoreError(f"SQLite {self.path}: {exc}") from exc
        except OSError as exc:  # the file's folder cannot be made
            raise StoreUnusable(f"SQLite {self.path}: cannot use this path: {exc}") from exc

    return wrapper


def _local_time(column: str, query: Query) -> tuple[str, list]:
    """SQL (and parameters) for `column` as local wall-clock µs in the query's time zone."""
    if query.tz is None:
        return column, []
    segments = offset_segments(query.tz, query.start_us, query.end_us)
    if len(segments) == 1:
        return f"({column} + ?)", [segments[0][1]]
    whens = " ".join(f"WHEN {column} < ? THEN ?" for _ in segments[:-1])
    params = [x for until, offset in segments[:-1] for x in (until, offset)]
    return f"({column} + CASE {whens} ELSE ? END)", [*params, segments[-1][1]]


class SqliteStore(Store):
    """Samples in one SQLite file (created with its folder when missing)."""

    def __init__(self, path: str, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        super().__init__(path, timeout_s)
        self.path = Path(path)
        self._ids: dict[str, tuple[int, str]] = {}

    @property
    def address(self) -> str:
        return str(self.path.absolute())

    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None,
                               check_same_thread=False)
        for attempt in range(100):  # the switch to WAL (once per file) does not wait on locks
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS staging (sensor_id INTEGER, time INTEGER, "
                     "value REAL, PRIMARY KEY (sensor_id, time)) WITHOUT ROWID")
        return conn

    def _transaction(self, conn, body):
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def prepare(self) -> str:
        try:
            return self._prepare()
        except (StoreUnavailable, StoreUnusable):
            raise
        except StoreError as exc:  # not an SQLite file, a read-only one, ...
            raise StoreUnusable(f"{exc}; point [logger] db (or --db) at an ionlab SQLite "
                                "file, or a new one") from None

    @_database
    def _prepare(self) -> str:
        conn = self._conn()
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreUnusable(f"SQLite {self.path} holds tables but not an ionlab store; "
                                "point [logger] db (or --db) at another file")
        if current > VERSION:
            raise StoreUnusable(f"SQLite {self.path} has schema version {current}, newer than "
                                f"this ionlab knows ({VERSION}): upgrade ionlab")
        if current < VERSION:
            self.upgrade()
        return conn.execute("SELECT id FROM ionlab_store").fetchone()[0]

    @_database
    def upgrade(self) -> int:
        conn = self._conn()

        def migrate():
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > VERSION:
                raise StoreError(f"database schema version {current} is newer than this ionlab "
                                 f"knows ({VERSION}); upgrade ionlab")
            for version, sql in MIGRATIONS:
                if version > current:
                    log.info("upgrading %s to schema version %d", self, version)
                    for statement in sql.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
            return VERSION

        return self._transaction(conn, migrate)

    def _sensor_ids(self, conn, rows: list[Row]) -> dict[str, int]:
        wanted = {}
        for sensor, unit, _, _ in rows:
            wanted[sensor] = unit
        new = {s: u for s, u in wanted.items() if self._ids.get(s, (None, None))[1] != u}
        if new:
            def register():
                return {s: conn.execute("INSERT INTO sensors (name, unit) VALUES (?, ?) "
                                        "ON CONFLICT (name) DO UPDATE SET unit = excluded.unit "
                                        "RETURNING id", (s, u)).fetchone()[0]
                        for s, u in sorted(new.items())}

            for s, i in self._transaction(conn, register).items():
                self._ids[s] = (i, new[s])
        return {s: self._ids[s][0] for s in wanted}

    @_database
    def write(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        conn = self._conn()
        ids = self._sensor_ids(conn, rows)

        def insert():
            conn.execute("DELETE FROM temp.staging")
            conn.executemany("INSERT OR IGNORE INTO temp.staging VALUES (?, ?, ?)",
                             [(ids[s], t, v) for s, _, t, v in rows])
            conn.execute("DELETE FROM temp.staging WHERE EXISTS (SELECT 1 FROM samples s "
                         "WHERE s.sensor_id = staging.sensor_id AND s.time = staging.time)")
            new = conn.execute("INSERT INTO samples SELECT sensor_id, time, value "
                               "FROM temp.staging").rowcount
            for suffix, width in (("1m", 60 * 10**6), ("1h", 3600 * 10**6)):
                conn.execute(_ROLLUP_UPSERT.format(suffix=suffix, width=width))
            conn.execute("UPDATE sensors SET last_time = n.time, last_value = n.value "
                         "FROM (SELECT sensor_id, value, max(time) AS time FROM temp.staging "
                         "GROUP BY sensor_id) n WHERE sensors.id = n.sensor_id "
                         "AND (sensors.last_time IS NULL OR sensors.last_time < n.time)")
            return new

        return self._transaction(conn, insert)

    @_database
    def describe(self, sensor: str, unit: str, description: str) -> None:
        conn = self._conn()
        sensor_id = self._transaction(conn, lambda: conn.execute(
            "INSERT INTO sensors (name, unit, description) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, "
            "description = excluded.description RETURNING id",
            (sensor, unit, description)).fetchone()[0])
        self._ids[sensor] = (sensor_id, unit)

    @_database
    def set_tags(self, sensors: dict[str, tuple[str, dict[str, str]]]) -> None:
        conn = self._conn()
        self._transaction(conn, lambda: conn.executemany(
            "INSERT INTO sensors (name, unit, tags) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET tags = excluded.tags",
            [(s, u, json.dumps(t, sort_keys=True)) for s, (u, t) in sorted(sensors.items())]))

    def _sensor(self, sensor: str) -> tuple[int, str]:
        row = self._conn().execute("SELECT id, unit FROM sensors WHERE name = ?",
                                   (sensor,)).fetchone()
        if row is None:
            raise UnknownSensor(sensor)
        return row

    @_database
    def unit(self, sensor: str) -> str:
        return self._sensor(sensor)[1]

    @_database
    def series(self, query: Query) -> list[tuple[datetime, float]]:
        sensor_id, _ = self._sensor(query.sensor)
        conn = self._conn()
        start, end = query.start_us, query.end_us
        raw = "FROM samples WHERE sensor_id = ? AND time >= ? AND time < ?"
        if query.every is None:
            rows = conn.execute(f"SELECT time, value {raw} ORDER BY time LIMIT ?",
                                (sensor_id, start, end, MAX_POINTS + 1)).fetchall()
            if len(rows) > MAX_POINTS:
                raise QueryError("every", f"more than {MAX_POINTS} samples in this range; "
                                 "ask for buckets (every=...) or a shorter range")
            return [(from_us(t), v) for t, v in rows]
        width = query.every * 10**6
        bucket = f"(lt - ((lt % {width}) + {width}) % {width})"
        if query.agg in ("first", "last"):
            local, local_params = _local_time("time", query)
            pick = "min" if query.agg == "first" else "max"
            sql = (f"SELECT {bucket} AS b, value, {pick}(t) FROM (SELECT time AS t, {local} AS lt, "
                   f"value {raw}) GROUP BY b ORDER BY b")
            rows = conn.execute(sql, (*local_params, sensor_id, start, end)).fetchall()
            return [(query.label(b), v) for b, v, _ in rows]
        value = {"avg": "sum(s) / sum(c)", "min": "min(lo)", "max": "max(hi)",
                 "count": "sum(c)"}[query.agg]
        local, local_params = _local_time("t", query)
        rollup = query.rollup
        r = rollup * 10**6 if rollup else None
        a, z = (-(-start // r) * r, end // r * r) if r else (0, 0)
        if r and a < z:
            parts = (f"SELECT time AS t, count AS c, sum AS s, min AS lo, max AS hi "
                     f"FROM rollup_{'1h' if rollup == 3600 else '1m'} "
                     f"WHERE sensor_id = ? AND time >= ? AND time < ? "
                     f"UNION ALL SELECT time, 1, value, value, value {raw} "
                     f"UNION ALL SELECT time, 1, value, value, value {raw}")
            params = (sensor_id, a, z, sensor_id, start, a, sensor_id, z, end)
        else:
            parts = f"SELECT time AS t, 1 AS c, value AS s, value AS lo, value AS hi {raw}"
            params = (sensor_id, start, end)
        sql = (f"SELECT {bucket} AS b, {value} FROM (SELECT {local} AS lt, c, s, lo, hi "
               f"FROM ({parts})) GROUP BY b ORDER BY b")
        rows = conn.execute(sql, (*local_params, *params)).fetchall()
        return [(query.label(b), v) for b, v in rows]

    @_database
    def latest(self) -> list[dict]:
        rows = self._conn().execute("SELECT name, last_time, last_value, unit FROM sensors "
                                    "WHERE last_time IS NOT NULL ORDER BY name").fetchall()
        return [{"sensor": s, "time": from_us(t), "value": v, "unit": u} for s, t, v, u in rows]

    @_database
    def sensors(self) -> list[dict]:
        rows = self._conn().execute("SELECT name, unit, description, tags, last_time FROM sensors "
                                    "ORDER BY name").fetchall()
        return [{"sensor": s, "unit": u, "description": d, "tags": json.loads(g),
                 "last_time": from_us(t) if t is not None else None} for s, u, d, g, t in rows]

    @_database
    def apply_retention(self, now: datetime, default: timedelta | None,
                        per_sensor: dict[str, timedelta]) -> dict:
        """Delete each sensor's samples older than its retention, one day per transaction."""
        summary = {"dropped": [], "deleted": 0}
        conn = self._conn()
        for sensor_id, name in conn.execute("SELECT id, name FROM sensors").fetchall():
            keep = per_sensor.get(name, default)
            if keep is None:
                continue
            cutoff = to_us(now - keep)
            oldest = conn.execute("SELECT min(time) FROM samples WHERE sensor_id = ?",
                                  (sensor_id,)).fetchone()[0]
            day = oldest
            while day is not None and day < cutoff:
                upto = min(day + DAY_US, cutoff)
                delete = functools.partial(conn.execute, "DELETE FROM samples WHERE "
                                           "sensor_id = ? AND time < ?", (sensor_id, upto))
                summary["deleted"] += self._transaction(conn, delete).rowcount
                day = upto if upto < cutoff else None
        if summary["deleted"]:
            log.info("retention: deleted %d samples", summary["deleted"])
        return summary
