"""The PostgreSQL store: daily partitions, binary COPY, incremental rollups.

Schema (created and migrated by `upgrade()`, i.e. `ionlab db upgrade`):

- ``sensors(id, name UNIQUE, unit, description, last_time, last_value)``;
  the last columns answer "latest of every sensor" without touching samples.
- ``samples(time, sensor_id, value)`` range-partitioned by time, one
  partition per UTC day (``samples_YYYYMMDD``), primary key (sensor_id, time):
  every write is idempotent and per-sensor time-range scans use the key.
- ``rollup_1m`` and ``rollup_1h`` (sensor_id, time, count, sum, min, max),
  recomputed from the samples per sensor-hour by `refresh_rollups` (the
  writer runs it whenever no readings wait), so a replay never counts a
  sample twice. A write only marks its sensor-days in ``rollup_dirty``;
  queries read raw samples for those days, so answers are always exact.
- views ``readings(time, sensor, value, unit)`` (what Grafana plots),
  ``readings_1m`` and ``readings_1h`` (rollups by name) and ``latest``.

A batch goes in as binary COPY straight into its daily partitions (one COPY
per day, skipping tuple routing; into samples where the role may not write a
partition another logger created); only if it holds a row that is already
stored (a replay) is it staged and inserted with ON CONFLICT DO NOTHING. A day
that has no partition yet is loaded into a new table whose unique index is
then built in one pass and which is attached to samples before commit.
The server's unique-index upkeep costs far more than encoding the rows, so a
large batch that spans days (a backfill, a spool replay) is split into runs of
whole days, one per `writers` connection, inserting at once into different
partitions; each part is its own transaction, moving the latest value only of
the sensors whose newest row it holds. If one part fails the whole batch goes
to the spool, and its replay stores only what is missing.
Everything that several loggers may do at the same moment (schema upgrade,
partition creation and dropping) runs under transaction-level advisory locks
(one for all partitions, and one per day, always taken in ascending order);
sensor registration is an upsert, rollup refreshes claim their sensor-days with
SKIP LOCKED.

Every connect has libpq's ``connect_timeout`` (the store's timeout, at least
libpq's 2 s) and every statement runs under the watchdog (watchdog.py), so a
server that stops answering costs at most the timeout. A logger never creates
the schema from nothing (`prepare` asks for ``ionlab db upgrade``): a URL that
names the wrong, empty database gets no tables. A database that does not
exist and a refused login are StoreUnusable, with what to do in the message.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import json
import logging
import math
import operator
import os
import re
import struct
import sys
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg2
import psycopg2.errors

from .columns import Columns
from .queries import MAX_POINTS, Query, QueryError, from_us, to_us
from .store import (
    DEFAULT_TIMEOUT_S,
    Row,
    Store,
    StoreError,
    StoreUnavailable,
    StoreUnusable,
    UnknownSensor,
    redact,
)
from .watchdog import Watchdog

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

DAY_US = 86400 * 10**6
PG_EPOCH_US = 946684800 * 10**6  # 2000-01-01, the epoch of binary timestamps
LOCK_SCHEMA = 0x10_4C_AB_01  # advisory lock keys, arbitrary but fixed
LOCK_PARTITIONS = 0x10_4C_AB_02

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_ROW = struct.Struct(">hiqiiid")  # 3 fields: (8, time), (4, sensor id), (8, value)
_COPY_FIELDS = ((6, 8, "q"), (18, 4, "i"), (26, 8, "d"))  # offset in a row, width, array type
_COPY_TEMPLATE = _COPY_ROW.pack(3, 8, 0, 4, 0, 8, 0.0)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_SWAP = sys.byteorder == "little"  # COPY's numbers are big-endian
_FROM_PG_EPOCH = (-PG_EPOCH_US).__add__
_PG_EPOCH_BYTES = PG_EPOCH_US.to_bytes(8, sys.byteorder)

_V1 = """
CREATE TABLE sensors (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    unit text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    last_time timestamptz,
    last_value double precision
);
CREATE TABLE samples (
    time timestamptz NOT NULL,
    sensor_id integer NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (sensor_id, time)
) PARTITION BY RANGE (time);
CREATE TABLE rollup_1m (
    sensor_id integer NOT NULL,
    time timestamptz NOT NULL,
    count bigint NOT NULL,
    sum double precision NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    PRIMARY KEY (sensor_id, time)
);
CREATE TABLE rollup_1h (LIKE rollup_1m INCLUDING ALL);
-- (UTC day, sensor) whose rollups lag the samples: queries read raw samples there
CREATE TABLE rollup_dirty (
    day timestamptz NOT NULL,
    sensor_id integer NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, sensor_id)
);
CREATE VIEW readings AS
    SELECT s.time, n.name AS sensor, s.value, n.unit
    FROM samples s JOIN sensors n ON n.id = s.sensor_id;
CREATE VIEW readings_1m AS
    SELECT r.time, n.name AS sensor, r.sum / r.count AS value, r.min, r.max, r.count, r.sum,
           n.unit
    FROM rollup_1m r JOIN sensors n ON n.id = r.sensor_id;
CREATE VIEW readings_1h AS
    SELECT r.time, n.name AS sensor, r.sum / r.count AS value, r.min, r.max, r.count, r.sum,
           n.unit
    FROM rollup_1h r JOIN sensors n ON n.id = r.sensor_id;
CREATE VIEW latest AS
    SELECT last_time AS time, name AS sensor, last_value AS value, unit
    FROM sensors WHERE last_time IS NOT NULL;
"""

# tags of pushed points (line protocol, MQTT)
_TAGS = "ALTER TABLE sensors ADD COLUMN tags jsonb NOT NULL DEFAULT '{}'"

# The alarms' transitions and current states (services/alarms/history.py).
_ALARMS = """
CREATE TABLE alarm_events (
    id bigserial PRIMARY KEY,
    time timestamptz NOT NULL,
    alarm text NOT NULL,
    state text NOT NULL,
    previous text NOT NULL,
    severity text NOT NULL,
    value double precision,
    message text NOT NULL DEFAULT '',
    who text,
    why text,
    until timestamptz
);
CREATE INDEX alarm_events_by_time ON alarm_events (time);
CREATE INDEX alarm_events_by_alarm ON alarm_events (alarm, time);
CREATE TABLE alarm_states (
    alarm text PRIMARY KEY,
    state text NOT NULL,
    updated timestamptz NOT NULL,
    data jsonb NOT NULL
);
"""

# The store's identity: one random id, made with the schema (see store.py).
_IDENTITY = """
CREATE TABLE ionlab_store (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ionlab_store (id) VALUES (gen_random_uuid()::text);
"""

#: version -> SQL; append, never edit a released step
MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _TAGS), (3, _ALARMS), (4, _IDENTITY)]
VERSION = MIGRATIONS[-1][0]

_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"

# Per sensor of a batch: its first and last time (the days to mark) ...
_MARK_DIRTY = f"""
    INSERT INTO rollup_dirty (day, sensor_id)
    SELECT generate_series(date_bin('1 day', b.first, {_EPOCH}),
                           date_bin('1 day', b.last, {_EPOCH}), interval '1 day'), b.id
    FROM unnest(%s::integer[], %s::timestamptz[], %s::timestamptz[]) AS b(id, first, last)
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING"""

# ... and its newest time and value.
_LATEST = """
    UPDATE sensors s SET last_time = b.last, last_value = b.value
    FROM unnest(%s::integer[], %s::timestamptz[], %s::double precision[]) AS b(id, last, value)
    WHERE s.id = b.id AND (s.last_time IS NULL OR s.last_time < b.last)"""

# A batch that may hold stored rows (a replay): insert only what is new.
_INSERT_NEW = """
    INSERT INTO samples (time, sensor_id, value)
    SELECT time, sensor_id, value FROM ionlab_staging
    ON CONFLICT DO NOTHING"""

# Claim up to n lagging sensor-days marked at least `settle` ago, oldest first,
# skipping those another logger is refreshing. The claim (a DELETE) holds
# their rows locked until commit, so a write meanwhile waits and marks again.
_CLAIM = """
    DELETE FROM rollup_dirty WHERE (day, sensor_id) IN (
        SELECT day, sensor_id FROM rollup_dirty WHERE since <= now() - %(settle)s::interval
        ORDER BY 1, 2 LIMIT %(n)s FOR UPDATE SKIP LOCKED)
    RETURNING sensor_id, day"""

_OVERWRITE = """ON CONFLICT (sensor_id, time) DO UPDATE SET
        count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max"""

# Recompute the claimed days' rollups from the samples (the time bounds let the
# planner read only the partitions concerned): exact and idempotent. A day
# whose samples are gone (retention) produces no rows and keeps its rollups.
_REFRESH = f"""
WITH m AS (
    SELECT s.sensor_id, date_bin('1 minute', s.time, {_EPOCH}) AS time, count(*) AS count,
           sum(s.value) AS sum, min(s.value) AS min, max(s.value) AS max
    FROM samples s
    JOIN unnest(%(ids)s::integer[], %(days)s::timestamptz[]) AS c(sensor_id, day)
      ON s.sensor_id = c.sensor_id AND date_bin('1 day', s.time, {_EPOCH}) = c.day
    WHERE s.time >= %(lo)s AND s.time < %(hi)s
    GROUP BY 1, 2
),
minutes AS (
    INSERT INTO rollup_1m AS r (sensor_id, time, count, sum, min, max)
    SELECT * FROM m ORDER BY 1, 2
    {_OVERWRITE}
)
INSERT INTO rollup_1h AS r (sensor_id, time, count, sum, min, max)
SELECT sensor_id, date_bin('1 hour', time, {_EPOCH}), sum(count), sum(sum), min(min), max(max)
FROM m GROUP BY 1, 2 ORDER BY 1, 2
{_OVERWRITE}
"""


# (bucket, value) rows with each bucket as µs since 1970 (local wall-clock for a zone):
# integers parse far faster than timestamps, and `Query.label` takes either.
# Bucket starts are whole seconds, so the float8 epoch is exact.
_AS_US = "SELECT (date_part('epoch', b) * 1000000)::bigint, v FROM ({}) r(b, v) ORDER BY 1"


def _database(method):
    """Map driver errors: lost connections to StoreUnavailable, the rest to StoreError."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            conn = getattr(self._local, "conn", None)
            self._drop_conn()
            self._partitions = None
            if getattr(conn, "cut", False):
                raise StoreUnavailable(f"PostgreSQL did not answer within {self.timeout_s:g} s "
                                       "(nor did its server answer a probe): connection dropped"
                                       ) from exc
            raise StoreUnavailable(f"PostgreSQL unreachable: {_first_line(exc)}") from exc
        except psycopg2.Error as exc:
            conn = getattr(self._local, "conn", None)
            if conn is not None and not conn.closed:
                conn.rollback()
            self._partitions = None
            raise StoreError(f"PostgreSQL refused: {_first_line(exc)}") from exc

    return wrapper


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _connect_error(url: str, exc: psycopg2.OperationalError) -> StoreError:
    """What a failed connect means: StoreUnusable with the fix, or StoreUnavailable."""
    text = " ".join(str(exc).split())
    where = redact(url)
    missing = re.search(r'database "([^"]*)" does not exist', text)
    if missing:
        parts = psycopg2.extensions.parse_dsn(url)
        host = f" -h {parts['host']}" if parts.get("host") else ""
        port = f" -p {parts['port']}" if parts.get("port") else ""
        return StoreUnusable(f"PostgreSQL has no database {missing[1]!r} ({where}): create it "
                             f"with `createdb{host}{port} {missing[1]}`, then "
                             f"`ionlab db upgrade --db {where}`")
    if re.search(r"authentication failed|role \"[^\"]*\" does not exist|no pg_hba\.conf entry|"
                 r"password|permission denied for database", text):
        return StoreUnusable(f"PostgreSQL refused the login ({where}): "
                             f"{text.partition('FATAL:')[2].strip() or text}; check the user and "
                             "password in the URL (or PGPASSWORD, ~/.pgpass) and pg_hba.conf")
    return StoreUnavailable(f"PostgreSQL unreachable: {_first_line(exc)}")


class _Connection(psycopg2.extensions.connection):
    """A connection whose every statement, commit and rollback runs under the watchdog."""

    watchdog: Watchdog
    cut = False  # the watchdog shut this connection's socket down

    @contextlib.contextmanager
    def watched(self):
        with self.watchdog.watch(self._fd, self._host, self._port) as watch:
            try:
                yield watch
            finally:
                self.cut = self.cut or watch.cut

    def cursor(self, *args, **kwargs):
        kwargs.setdefault("cursor_factory", _Cursor)
        return super().cursor(*args, **kwargs)

    def commit(self):
        with self.watched():
            super().commit()

    def rollback(self):
        with self.watched():
            super().rollback()


class _Cursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
        with self.connection.watched():
            return super().execute(query, vars)

    def copy_expert(self, sql, file, size=8192):
        with self.connection.watched() as watch:
            return super().copy_expert(sql, _Progress(file, self.connection.watchdog, watch),
                                       size)


class _Progress:
    """A COPY source that tells the watchdog each time the server takes more."""

    def __init__(self, file, watchdog: Watchdog, watch):
        self._file, self._watchdog, self._watch = file, watchdog, watch

    def read(self, size: int = -1) -> bytes:
        self._watchdog.progress(self._watch)
        return self._file.read(size)


class _CopyData:
    """Binary COPY data of (time, sensor_id, value) rows, encoded as COPY reads it.

    Each `read` encodes the next few thousand rows, so the server inserts
    one chunk while the next is being encoded.
    """

    CHUNK = 16384

    def __init__(self, times: Sequence[int], sensors: Sequence[int], values: Sequence[float]):
        self._chunks = self._encode(times, sensors, values)
        self.error: Exception | None = None  # why encoding failed, if it did

    def _encode(self, times, sensors, values):
        yield _COPY_HEADER
        size, n = _COPY_ROW.size, len(times)
        for a in range(0, n, self.CHUNK):
            b = min(n, a + self.CHUNK)
            columns = (_from_pg_epoch(times[a:b]), sensors[a:b], values[a:b])
            rows = bytearray(_COPY_TEMPLATE * (b - a))
            for column, (offset, width, kind) in zip(columns, _COPY_FIELDS, strict=True):
                if not (isinstance(column, array) and column.typecode == kind):
                    column = array(kind, column)  # (a slice of an array is a copy already)
                if _COPY_SWAP:
                    column.byteswap()
                raw = column.tobytes()
                for k in range(width):  # byte k of every number into its place in every row
                    rows[offset + k::size] = raw[k::width]
            yield bytes(rows)
        yield _COPY_TRAILER

    def read(self, size: int = -1) -> bytes:
        try:
            return next(self._chunks, b"")
        except Exception as exc:  # e.g. a time that is not an integer
            self.error = exc
            raise

    def copy_into(self, cur, table: str) -> None:
        """COPY into `table`; a row that cannot be encoded rolls back and raises its error."""
        try:
            cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT binary)", self)
        except psycopg2.OperationalError:
            if self.error is None:
                raise
            cur.connection.rollback()
            raise self.error from None


def _extremes(times: Sequence[int], sensors: Sequence[int]) -> tuple[dict, dict]:
    """sensor id -> index of its oldest row, and of its newest (the first of equal oldest, the
    last of equal newest), found run by run of rows in time order.

    >>> [sorted(d.items()) for d in _extremes([5, 6, 1, 2, 7], [1, 2, 1, 2, 3])]
    [[(1, 2), (2, 3), (3, 4)], [(1, 0), (2, 1), (3, 4)]]
    """
    n = len(times)
    back = list(map(operator.gt, times, itertools.islice(times, 1, None)))  # runs end there
    cuts, at = [0], 0
    while True:
        try:
            at = back.index(True, at) + 1
        except ValueError:
            break
        cuts.append(at)
    cuts.append(n)
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for a, b in itertools.pairwise(cuts):
        run = sensors[a:b]
        for i, k in dict(zip(reversed(run), range(b - 1, a - 1, -1), strict=True)).items():
            if i not in starts or times[k] < times[starts[i]]:
                starts[i] = k
        for i, k in dict(zip(run, range(a, b), strict=True)).items():
            if i not in ends or times[k] >= times[ends[i]]:
                ends[i] = k
    return starts, ends


def _from_pg_epoch(times: Sequence[int]) -> array:
    """µs since 1970 as µs since 2000 (binary COPY's timestamps), as array("q").

    Times from 2000 on are shifted all at once, as one long integer: no element borrows
    from the next then.

    >>> list(_from_pg_epoch([PG_EPOCH_US + 5, 2**62])) == [5, 2**62 - PG_EPOCH_US]
    True
    >>> list(_from_pg_epoch([PG_EPOCH_US + 5, PG_EPOCH_US - 1]))
    [5, -1]
    """
    times = times if isinstance(times, array) and times.typecode == "q" else array("q", times)
    if not times or min(times) < PG_EPOCH_US:
        return array("q", map(_FROM_PG_EPOCH, times))
    n = len(times)
    shifted = int.from_bytes(times.tobytes(), sys.byteorder) - \
        int.from_bytes(_PG_EPOCH_BYTES * n, sys.byteorder)
    out = array("q")
    out.frombytes(shifted.to_bytes(8 * n, sys.byteorder))
    return out


def _days(times: Sequence[int]) -> list[tuple[int, int, int]]:
    """(UTC day number, first index, end index) of each day of µs times, which are sorted
    or all of one day."""
    if times and times[0] // DAY_US == times[-1] // DAY_US:
        return [(times[0] // DAY_US, 0, len(times))]
    parts, a, n = [], 0, len(times)
    while a < n:
        day = times[a] // DAY_US
        b = bisect.bisect_left(times, (day + 1) * DAY_US, a)
        parts.append((day, a, b))
        a = b
    return parts


def _bounds(day: int) -> tuple[datetime, datetime]:
    return from_us(day * DAY_US), from_us((day + 1) * DAY_US)


def _claim_new_partition(cur, day: int) -> bool:
    """Lock `day` against other loggers until commit; True if it has no partition yet."""
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s); SELECT to_regclass(%s) IS NULL",
                (LOCK_PARTITIONS, day, partition_name(day)))
    return cur.fetchone()[0]


def _build_partition(cur, day: int, rows: _CopyData | None = None) -> None:
    """A day's table, loaded with `rows`, then its unique index built in one sorted pass."""
    name = partition_name(day)
    cur.execute(f"CREATE TABLE {name} (LIKE samples)")
    if rows is not None:
        rows.copy_into(cur, name)
    cur.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (sensor_id, time)")


def _attach_partitions(cur, days) -> None:
    """Attach built tables to samples (SHARE UPDATE EXCLUSIVE: readers and writers go on)."""
    for day in days:
        cur.execute(f"ALTER TABLE samples ATTACH PARTITION {partition_name(day)} "
                    "FOR VALUES FROM (%s) TO (%s)", _bounds(day))


def _create_partitions(cur, days) -> None:
    """Create the missing partitions of `days`, empty: every day lock first (ascending, as
    everywhere), then samples itself, so no logger waits for a day while holding samples.

    Built and attached rather than `CREATE TABLE ... PARTITION OF`, which would lock
    samples against every reader until commit.
    """
    claimed = [day for day in sorted(days) if _claim_new_partition(cur, day)]
    for day in claimed:
        _build_partition(cur, day)
    _attach_partitions(cur, claimed)


def partition_name(day: int) -> str:
    """`samples_YYYYMMDD` for the UTC day number `day` since the epoch."""
    return "samples_" + from_us(day * DAY_US).strftime("%Y%m%d")


class PostgresStore(Store):
    """Samples in PostgreSQL; see the module docstring for the schema."""

    #: a batch of at least this many rows is split over the writer connections
    SPLIT_ROWS = 10_000

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 writers: int = min(2, os.cpu_count() or 1)):
        super().__init__(url, timeout_s)
        self.watchdog = Watchdog(timeout_s)
        self.writers = max(1, writers)
        self._ids: dict[str, tuple[int, str]] = {}
        self._partitions: set[int] | None = None
        self._direct = True  # COPY into the partitions (see _append)
        self._helpers = ThreadPoolExecutor(self.writers - 1, "ionlab-pg-writer") \
            if self.writers > 1 else None  # the other writers' threads, started when needed

    def _connect(self):
        try:
            conn = psycopg2.connect(
                self.url, connection_factory=_Connection, application_name="ionlab",
                connect_timeout=max(2, math.ceil(self.timeout_s)),  # libpq: whole seconds, >= 2
                keepalives=1, keepalives_idle=10, keepalives_interval=3, keepalives_count=3,
                options="-c timezone=UTC -c statement_timeout=120s -c work_mem=64MB")
        except psycopg2.OperationalError as exc:
            raise _connect_error(self.url, exc) from None
        except psycopg2.ProgrammingError as exc:  # a URL libpq cannot parse
            raise StoreUnusable(f"not a usable PostgreSQL URL {redact(self.url)!r}: "
                                f"{_first_line(exc)}") from None
        conn.watchdog = self.watchdog
        conn._fd, conn._host, conn._port = conn.fileno(), conn.info.host, conn.info.port
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE ionlab_staging (time timestamptz, sensor_id integer, "
                        "value double precision) ON COMMIT DELETE ROWS")
        conn.commit()
        return conn

    # -- schema -----------------------------------------------------------------------

    def close(self) -> None:
        super().close()
        self.watchdog.close()

    @_database
    def prepare(self) -> str:
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('ionlab_schema') IS NOT NULL")
            current = None
            if cur.fetchone()[0]:
                cur.execute("SELECT coalesce(max(version), 0) FROM ionlab_schema")
                current = cur.fetchone()[0]
        conn.commit()
        where = redact(self.url)
        if current is None:
            raise StoreUnusable(f"{where} has no ionlab schema: create it with "
                                f"`ionlab db upgrade --db {where}`")
        if current > VERSION:
            raise StoreUnusable(f"{where} has schema version {current}, newer than this ionlab "
                                f"knows ({VERSION}): upgrade ionlab")
        if current < VERSION:
            try:
                self.upgrade()
            except StoreUnavailable:
                raise
            except StoreError as exc:
                raise StoreUnusable(f"cannot migrate {where} from schema version {current} to "
                                    f"{VERSION} ({exc}): run `ionlab db upgrade --db URL` as the "
                                    "owner of its tables") from None
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM ionlab_store")
            (identity,) = cur.fetchone()
        conn.commit()
        return identity

    @_database
    def upgrade(self) -> int:
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_SCHEMA,))
            cur.execute("CREATE TABLE IF NOT EXISTS ionlab_schema (version integer PRIMARY KEY, "
                        "upgraded_at timestamptz NOT NULL DEFAULT now())")
            cur.execute("SELECT coalesce(max(version), 0) FROM ionlab_schema")
            current = cur.fetchone()[0]
            if current > VERSION:
                conn.rollback()
                raise StoreError(f"database schema version {current} is newer than this ionlab "
                                 f"knows ({VERSION}); upgrade ionlab")
            for version, sql in MIGRATIONS:
                if version > current:
                    log.info("upgrading %s to schema version %d", self, version)
                    cur.execute(sql)
                    cur.execute("INSERT INTO ionlab_schema (version) VALUES (%s)", (version,))
        conn.commit()
        self.maintain(datetime.now(UTC))
        return VERSION

    @_database
    def maintain(self, now: datetime) -> None:
        """Create the partitions of today and the next two days ahead of time."""
        today = int(now.timestamp()) // 86400
        self._ensure_partitions(self._conn(), {today, today + 1, today + 2})

    @_database
    def create_partitions(self, start: datetime, end: datetime) -> None:
        """Create the daily partitions covering [start, end] (e.g. before a bulk load)."""
        first, last = to_us(start) // DAY_US, to_us(end) // DAY_US
        self._ensure_partitions(self._conn(), set(range(first, last + 1)))

    def _ensure_partitions(self, conn, days: set[int]) -> None:
        if self._partitions is None:
            self._partitions = set(self._existing_partitions(conn))
        missing = sorted(days - self._partitions)
        if not missing:
            return
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_PARTITIONS,))
            _create_partitions(cur, missing)
        conn.commit()
        self._partitions.update(missing)

    def _existing_partitions(self, conn) -> dict[int, str]:
        with conn.cursor() as cur:
            out = self._existing_partitions_cur(cur)
        conn.commit()
        return out
    @staticmethod
    def _existing_partitions_cur(cur) -> dict[int, str]:
        """day number -> partition name, for every partition of samples."""
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'samples'::regclass")
        out = {}
        for (name,) in cur.fetchall():
            day = datetime.strptime(name.removeprefix("samples_"), "%Y%m%d").replace(tzinfo=UTC)
            out[int(day.timestamp()) // 86400] = name
        return out

    # -- writing ----------------------------------------------------------------------

    def _sensor_ids(self, conn, rows: Columns) -> dict[str, int]:
        wanted = dict(rows.sensors)  # the last unit given wins
        new = {s: u for s, u in wanted.items() if self._ids.get(s, (None, None))[1] != u}
        if new:
            with conn.cursor() as cur:
                for sensor in sorted(new):
                    cur.execute("INSERT INTO sensors (name, unit) VALUES (%s, %s) "
                                "ON CONFLICT (name) DO UPDATE SET unit = EXCLUDED.unit "
                                "RETURNING id", (sensor, new[sensor]))
                    self._ids[sensor] = (cur.fetchone()[0], new[sensor])
            conn.commit()
        return {s: self._ids[s][0] for s in wanted}

    @_database
    def write(self, rows: Sequence[Row]) -> int:
        """COPY the batch straight into its daily partitions; on a duplicate, insert only the new.

        Rollups are not touched here: the batch's sensor-days are marked
        dirty and `refresh_rollups` recomputes them (queries stay exact
        meanwhile by reading raw samples for dirty days). A large batch is
        split into runs of days over the writer connections (see the module docstring).
        """
        if not rows:
            return 0
        rows = Columns.from_rows(rows)
        conn = self._conn()
        ids = self._sensor_ids(conn, rows)
        of_index = [ids[name] for name, _ in rows.sensors]
        times, values = rows.times, rows.values
        sensors = array("i", map(of_index.__getitem__, rows.index))
        if not all(map(operator.le, times, itertools.islice(times, 1, None))) and \
                min(times) // DAY_US != max(times) // DAY_US:  # sorted, to be cut into days
            order = sorted(range(len(times)), key=times.__getitem__)  # stable: ties keep order
            times = array("q", map(times.__getitem__, order))
            sensors = array("i", map(sensors.__getitem__, order))
            values = array("d", map(values.__getitem__, order))
        days = _days(times)
        if not self._direct:
            self._ensure_partitions(conn, {day for day, _, _ in days})
        known = self._partitions
        if known is None:
            known = self._partitions = set(self._existing_partitions(conn))
        fresh = {day for day, _, _ in days} - known  # days that have no partition yet
        first, *others = parts = self._split(days, times, sensors, values)
        newest: dict[int, int] = {}  # sensor id -> the part holding its newest row
        for k in range(len(parts) - 1, -1, -1):
            newest.update(dict.fromkeys(set(parts[k][1]) - newest.keys(), k))
        owned = [{i for i, k in newest.items() if k == j} for j in range(len(parts))]
        if not others:
            return self._write_part(*first, owned[0], fresh)
        return sum(self._at_once([functools.partial(self._write_part, *part, mine, fresh)
                                  for part, mine in zip(parts, owned, strict=True)]))

    def _at_once(self, calls: list) -> list:
        """Results of calls[0] run here and the others on the helper threads, all at once;
        every call ends before the first error is raised."""
        futures = [self._helpers.submit(call) for call in calls[1:]]
        outcomes = []
        for work in [calls[0], *(f.result for f in futures)]:
            try:
                outcomes.append(work())
            except Exception as exc:  # noqa: BLE001 - raised below, once all have ended
                outcomes.append(exc)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return outcomes

    def _split(self, days: list[tuple[int, int, int]], times: list[int], sensors: list[int],
               values: list[float]) -> list[tuple]:
        """The batch as up to `writers` runs of whole days with about as many rows each."""
        n = len(times)
        k = min(self.writers, len(days)) if n >= self.SPLIT_ROWS else 1  # small: one is enough
        bounds = [b for _, _, b in days[:-1]]  # where a part may end
        cuts = [0]
        for j in range(1, k):
            cut = min(bounds, key=lambda b, at=n * j // k: abs(b - at))
            if cut > cuts[-1]:
                cuts.append(cut)
        cuts.append(n)
        return [(times[a:b], sensors[a:b], values[a:b]) for a, b in itertools.pairwise(cuts)]

    @_database
    def _write_part(self, times: list[int], sensors: list[int], values: list[float],
                    latest: set[int], fresh: set[int]) -> int:
        """Store rows (time-ordered, or all of one day) in one transaction on this thread's
        connection.

        Marks their sensor-days dirty and moves the latest value of the
        sensors in `latest` (those whose newest row of the batch is here);
        `fresh` are the days that had no partition when the batch began.
        """
        conn = self._conn()
        n = len(times)
        starts, ends = _extremes(times, sensors)
        dirty = (list(ends), [from_us(times[starts[i]]) for i in ends],
                 [from_us(times[k]) for k in ends.values()])
        last = [(i, k) for i, k in ends.items() if i in latest]
        moved = ([i for i, _ in last], [from_us(times[k]) for _, k in last],
                 [values[k] for _, k in last])
        with conn.cursor() as cur:
            cur.execute(_MARK_DIRTY, dirty)
            cur.execute("SAVEPOINT append")
            days = _days(times)
            try:
                self._append(cur, days, times, sensors, values, fresh)
                new = n
            except psycopg2.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT append")
                _create_partitions(cur, [day for day, _, _ in days])
                _CopyData(times, sensors, values).copy_into(cur, "ionlab_staging")
                cur.execute(_INSERT_NEW)
                new = cur.rowcount
            cur.execute(_LATEST, moved)
        conn.commit()
        known = self._partitions  # None if a failure elsewhere asked for a reload
        if known is not None:
            known.update(day for day, _, _ in days)
        return new

    def _append(self, cur, parts: list[tuple[int, int, int]], times: list[int],
                sensors: list[int], values: list[float], fresh: set[int]) -> None:
        """COPY each day's rows into its partition, or into samples if this role may not.

        A day with no partition yet (a backfill, a replay) gets a new table:
        rows first, then its unique index built in one sorted pass (about half
        the work of keeping an index up to date row by row), then attached to
        samples at the end; every day lock is taken before that. A partition
        another logger's role created may not grant this role INSERT; samples
        routes the rows then (rights are checked on it alone).
        """
        if self._direct:
            cur.execute("SAVEPOINT direct")
            try:
                built = [day for day, _, _ in parts  # parts are in day order
                         if day in fresh and _claim_new_partition(cur, day)]
                for day, a, b in parts:
                    rows = _CopyData(times[a:b], sensors[a:b], values[a:b])
                    if day in built:
                        _build_partition(cur, day, rows)
                    else:
                        rows.copy_into(cur, partition_name(day))
                _attach_partitions(cur, built)
                return
            except psycopg2.errors.InsufficientPrivilege as exc:
                cur.execute("ROLLBACK TO SAVEPOINT direct")
                self._direct = False
                log.info("writing through samples, not its partitions: %s", _first_line(exc))
        _create_partitions(cur, [day for day, _, _ in parts])
        _CopyData(times, sensors, values).copy_into(cur, "samples")

    @_database
    def refresh_rollups(self, limit: int = 50, settle: timedelta = timedelta(0)) -> int:
        """Recompute up to `limit` lagging sensor-days marked at least `settle` ago.

        Returns how many were done; the writer passes a settle time so a day
        still being written is recomputed about once per `settle`, not per batch.
        Each writer connection claims its share and recomputes it at the same time.
        """
        if self._helpers is None or limit < self.writers:
            return self._refresh(limit, settle)
        share = -(-limit // self.writers)
        return sum(self._at_once([functools.partial(self._refresh, share, settle)]
                                 * self.writers))

    @_database
    def _refresh(self, limit: int, settle: timedelta) -> int:
        """Claim up to `limit` lagging sensor-days and recompute their rollups, on this
        thread's connection."""
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute(_CLAIM, {"n": limit, "settle": settle})
            claimed = cur.fetchall()
            if claimed:
                days = [d for _, d in claimed]
                cur.execute(_REFRESH, {"ids": [i for i, _ in claimed], "days": days,
                                       "lo": min(days), "hi": max(days) + timedelta(days=1)})
        conn.commit()
        return len(claimed)

    @_database
    def describe(self, sensor: str, unit: str, description: str) -> None:
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO sensors (name, unit, description) VALUES (%s, %s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET unit = EXCLUDED.unit, "
                        "description = EXCLUDED.description RETURNING id",
                        (sensor, unit, description))
            self._ids[sensor] = (cur.fetchone()[0], unit)
        conn.commit()

    @_database
    def set_tags(self, sensors: dict[str, tuple[str, dict[str, str]]]) -> None:
        """One sensor per transaction: holding no row while waiting for another, this never
        deadlocks with a write moving the latest values of many."""
        conn = self._conn()
        with conn.cursor() as cur:
            for sensor, (unit, tags) in sorted(sensors.items()):
                cur.execute("INSERT INTO sensors (name, unit, tags) VALUES (%s, %s, %s) "
                            "ON CONFLICT (name) DO UPDATE SET tags = EXCLUDED.tags",
                            (sensor, unit, json.dumps(tags)))
                conn.commit()

    # -- reading ----------------------------------------------------------------------

    def _fetch(self, sql: str, params=None) -> list[tuple]:
        """Rows of one statement, in one round trip (autocommit: no BEGIN, no ROLLBACK)."""
        conn = self._conn()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            if not conn.closed:
                conn.autocommit = False

    def _sensor_id(self, sensor: str) -> int:
        """The id of a sensor (ids never change, so a known one is not asked again)."""
        known = self._ids.get(sensor)
        if known is not None:
            return known[0]
        rows = self._fetch("SELECT id, unit FROM sensors WHERE name = %s", (sensor,))
        if not rows:
            raise UnknownSensor(sensor)
        self._ids.setdefault(sensor, rows[0])
        return rows[0][0]

    @_database
    def unit(self, sensor: str) -> str:
        rows = self._fetch("SELECT unit FROM sensors WHERE name = %s", (sensor,))
        if not rows:
            raise UnknownSensor(sensor)
        return rows[0][0]

    @_database
    def series(self, query: Query) -> list[tuple[datetime, float]]:
        sensor_id = self._sensor_id(query.sensor)
        p = {"id": sensor_id, "start": query.start, "end": query.end, "tz": str(query.tz or ""),
             "every": f"{query.every} seconds"}
        if query.every is None:
            rows = self._fetch("SELECT time, value FROM samples WHERE sensor_id = %(id)s AND "
                               "time >= %(start)s AND time < %(end)s ORDER BY time LIMIT %(n)s",
                               {**p, "n": MAX_POINTS + 1})
            if len(rows) > MAX_POINTS:
                raise QueryError("every", f"more than {MAX_POINTS} samples in this range; "
                                 "ask for buckets (every=...) or a shorter range")
            return [(query.label(t), v) for t, v in rows]
        if query.tz is None:
            bucket = "date_bin(%(every)s::interval, {}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        else:
            bucket = ("date_bin(%(every)s::interval, {} AT TIME ZONE %(tz)s, "
                      "TIMESTAMP '1970-01-01 00:00:00')")
        raw = "FROM samples WHERE sensor_id = %(id)s AND time >= %(start)s AND time < %(end)s"
        if query.agg in ("first", "last"):
            order = "time" if query.agg == "first" else "time DESC"
            sql = (f"SELECT DISTINCT ON (b) b, value FROM (SELECT {bucket.format('time')} AS b, "
                   f"time, value {raw}) q ORDER BY b, {order}")
        elif (width := query.rollup) and (span := _aligned(query, width)):
            return self._from_rollup(query, p, bucket, width, span)
        else:
            value = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)",
                     "count": "count(*)"}[query.agg]
            sql = f"SELECT {bucket.format('time')} AS b, {value} {raw} GROUP BY 1"
        return [(query.label(b), v) for b, v in self._fetch(_AS_US.format(sql), p)]

    def _from_rollup(self, query: Query, p: dict, bucket: str, width: int,
                     span: tuple[datetime, datetime]) -> list[tuple[datetime, float]]:
        """Buckets from a rollup on [a, z), raw samples at the edges and on lagging days.

        One statement answers when no day of the range lags, and says whether
        one does. Otherwise the lagging days are read first and the answer is
        built in the same REPEATABLE READ snapshot, so a refresh or a write in
        between cannot make a day counted twice or not at all.
        """
        a, z = span
        lag = ("FROM rollup_dirty WHERE sensor_id = %s AND day > %s AND day < %s",
               [p["id"], a - timedelta(days=1), z])
        sql, args = self._rollup_statement(query, p, bucket, width, span, [])
        rows = self._fetch(f"SELECT (SELECT count(*) {lag[0]}), q.b, q.v FROM (SELECT) one "
                           f"LEFT JOIN ({sql}) q(b, v) ON true ORDER BY q.b", lag[1] + args)
        if rows[0][0] == 0:
            return [(query.label(b), v) for _, b, v in rows if b is not None]
        conn = self._conn()
        conn.autocommit = True  # the snapshot is begun and ended here
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                            f"SELECT day {lag[0]} ORDER BY day", lag[1])
                lagging = _merge([(max(d, a), min(d + timedelta(days=1), z))
                                  for (d,) in cur.fetchall()])
                cur.execute(*self._rollup_statement(query, p, bucket, width, span, lagging))
                return [(query.label(t), v) for t, v in cur.fetchall()]
        finally:
            if not conn.closed:
                with conn.cursor() as cur:
                    cur.execute("ROLLBACK")  # read only: nothing to keep
                conn.autocommit = False

    @staticmethod
    def _rollup_statement(query: Query, p: dict, bucket: str, width: int,
                          span: tuple[datetime, datetime],
                          lagging: list[tuple[datetime, datetime]]) -> tuple[str, list]:
        """(sql, args) of the buckets: the rollup on [a, z) but for the lagging ranges,
        raw samples on those and at the edges; rows of (µs bucket, value) in order."""
        a, z = span
        raw = [(query.start, a), (z, query.end), *lagging]
        rolled, at = [], a
        for lo, hi in lagging:
            rolled.append((at, lo))
            at = hi
        rolled.append((at, z))
        table = f"rollup_{'1h' if width == 3600 else '1m'}"
        rolled = [(lo, hi) for lo, hi in rolled if lo < hi]
        raw = [(lo, hi) for lo, hi in raw if lo < hi]
        if len(rolled) == 1 and not raw and query.every == width and query.tz is None:
            # the rollup's own rows are the buckets: no grouping
            value = {"avg": "sum / count", "min": "min", "max": "max", "count": "count"}[query.agg]
            return (f"SELECT (date_part('epoch', time) * 1000000)::bigint, {value} FROM {table} "
                    "WHERE sensor_id = %s AND time >= %s AND time < %s ORDER BY time",
                    [p["id"], *rolled[0]])
        parts, args = [], []
        for lo, hi in rolled:
            parts.append("SELECT time AS t, count AS c, sum AS s, min AS lo, max AS hi "
                         f"FROM {table} WHERE sensor_id = %s AND time >= %s AND time < %s")
            args += [p["id"], lo, hi]
        for lo, hi in raw:
            parts.append("SELECT time AS t, 1 AS c, value AS s, value AS lo, value AS hi "
                         "FROM samples WHERE sensor_id = %s AND time >= %s AND time < %s")
            args += [p["id"], lo, hi]
        value = {"avg": "sum(s) / sum(c::integer)::float8", "min": "min(lo)", "max": "max(hi)",
                 "count": "sum(c::integer)"}[query.agg]
        b = bucket.replace("%(every)s", "%s").replace("%(tz)s", "%s").format("t")
        head = [p["every"]] + ([p["tz"]] if query.tz is not None else [])
        return (_AS_US.format(f"SELECT {b} AS b, {value} FROM ({' UNION ALL '.join(parts)}) q "
                              "GROUP BY 1"), head + args)

    @_database
    def latest(self) -> list[dict]:
        rows = self._fetch("SELECT sensor, time, value, unit FROM latest ORDER BY sensor")
        return [{"sensor": s, "time": t, "value": v, "unit": u} for s, t, v, u in rows]

    @_database
    def sensors(self) -> list[dict]:
        rows = self._fetch("SELECT name, unit, description, tags, last_time FROM sensors "
                           "ORDER BY name")
        return [{"sensor": s, "unit": u, "description": d, "tags": g, "last_time": t}
                for s, u, d, g, t in rows]

    # -- retention --------------------------------------------------------------------

    @_database
    def apply_retention(self, now: datetime, default: timedelta | None,
                        per_sensor: dict[str, timedelta]) -> dict:
        """Drop whole daily partitions older than every sensor's retention.

        A sensor whose retention is shorter than the longest loses its rows of
        older partitions one partition at a time (a DELETE bounded to one
        sensor-day, using the primary key), never in one huge DELETE.
        """
        summary = {"dropped": [], "deleted": 0}
        if default is None and not per_sensor:
            return summary
        while self.refresh_rollups():  # the rollups must hold what is about to go
            pass
        conn = self._conn()
        ids = {name: i for i, name in self._fetch("SELECT id, name FROM sensors")}
        kept = [r for r in [default, *per_sensor.values()] if r is not None]
        longest = None if default is None else max(kept)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_PARTITIONS,))
            partitions = self._existing_partitions_cur(cur)
            for day, name in sorted(partitions.items()):
                end = from_us((day + 1) * DAY_US)
                if longest is not None and end <= now - longest:
                    cur.execute(f"DROP TABLE {name}")
                    summary["dropped"].append(name)
                    continue
                for sensor, sensor_id in ids.items():
                    keep = per_sensor.get(sensor, default)
                    if keep is not None and end <= now - keep:
                        cur.execute(f"DELETE FROM {name} WHERE sensor_id = %s", (sensor_id,))
                        summary["deleted"] += cur.rowcount
        conn.commit()
        self._partitions = None
        if summary["dropped"] or summary["deleted"]:
            log.info("retention: dropped %d partitions (%s), deleted %d rows",
                     len(summary["dropped"]), ", ".join(summary["dropped"]), summary["deleted"])
        return summary

def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted, touching or overlapping ranges joined into one."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in ranges:
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _aligned(query: Query, width: int) -> tuple[datetime, datetime] | None:
    """The part of the range on whole rollup buckets, or None when there is none."""
    w = width * 10**6
    a = -(-query.start_us // w) * w
    z = query.end_us // w * w
    return (from_us(a), from_us(z)) if a < z else None
