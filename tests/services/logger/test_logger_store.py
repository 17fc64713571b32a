"""Both stores against real databases: schema, idempotent writes, buckets, retention."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest

from services.logger import postgres, sqlite
from services.logger.postgres import PostgresStore
from services.logger.queries import QueryError, from_us, make_query, to_us
from services.logger.store import StoreError, UnknownSensor, open_store

T0 = datetime(2026, 3, 27, 21, 13, 7, 250000, tzinfo=UTC)  # spans Berlin's DST change


def samples(sensor: str, start: datetime, n: int, step_s: float, seed: int) -> list[tuple]:
    rnd = random.Random(seed)
    t0 = to_us(start)
    return [(sensor, "mbar", t0 + round(i * step_s * 1e6), rnd.uniform(-5, 5)) for i in range(n)]


def reference(rows, query):
    """Buckets computed in Python: epoch-aligned in UTC, or on local wall-clock time."""
    width = timedelta(seconds=query.every)
    groups: dict[datetime, list[tuple[int, float]]] = {}
    for _, _, t, v in rows:
        if not query.start_us <= t < query.end_us:
            continue
        when = from_us(t)
        if query.tz is None:
            key = datetime(1970, 1, 1, tzinfo=UTC) + (when - datetime(1970, 1, 1, tzinfo=UTC)) \
                // width * width
        else:
            local = when.astimezone(query.tz).replace(tzinfo=None)
            naive = datetime(1970, 1, 1) + (local - datetime(1970, 1, 1)) // width * width
            key = naive.replace(tzinfo=query.tz)
        groups.setdefault(key, []).append((t, v))
    agg = {
        "avg": lambda g: math.fsum(v for _, v in g) / len(g),
        "min": lambda g: min(v for _, v in g),
        "max": lambda g: max(v for _, v in g),
        "count": len,
        "first": lambda g: min(g)[1],
        "last": lambda g: max(g)[1],
    }[query.agg]
    return [(k.isoformat(), agg(g)) for k, g in sorted(groups.items())]


def test_upgrade_creates_the_schema_and_is_repeatable(store_url):
    a, b = open_store(store_url), open_store(store_url)
    try:
        results = []
        threads = [threading.Thread(target=lambda s=s: results.append(s.upgrade()))
                   for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        version = (postgres if store_url.startswith("postgresql") else sqlite).VERSION
        assert results == [version, version]
        assert a.upgrade() == version
        assert a.prepare() == b.prepare()  # one identity, made once
        assert a.write([("chamber", "mbar", to_us(T0), 1e-9)]) == 1
        assert a.sensors()[0]["sensor"] == "chamber"
    finally:
        a.close()
        b.close()


def test_postgres_schema_is_partitioned_with_views(pg_database):
    import psycopg2

    store = open_store(pg_database)
    store.upgrade()
    store.write([("chamber", "mbar", to_us(T0), 2.5e-10)])
    store.close()
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM ionlab_schema ORDER BY 1")
        assert cur.fetchall() == [(v,) for v, _ in postgres.MIGRATIONS]
        cur.execute("SELECT partstrat FROM pg_partitioned_table "
                    "WHERE partrelid = 'samples'::regclass")
        assert cur.fetchone() == ("r",)
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'samples'::regclass")
        names = {r[0] for r in cur.fetchall()}
        today = datetime.now(UTC)
        ahead = {"samples_" + (today + timedelta(days=d)).strftime("%Y%m%d") for d in range(3)}
        assert ahead | {"samples_20260327"} <= names
        cur.execute("SELECT time, sensor, value, unit FROM readings")
        assert cur.fetchall() == [(T0, "chamber", 2.5e-10, "mbar")]
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'samples'")
        assert "(sensor_id, \"time\")" in cur.fetchone()[0]
    conn.close()


def test_newer_schema_is_refused(pg_database):
    import psycopg2

    store = open_store(pg_database)
    store.upgrade()
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO ionlab_schema (version) VALUES (99)")
    conn.close()
    with pytest.raises(StoreError, match="version 99 is newer than this ionlab knows"):
        store.upgrade()
    store.close()


def test_writes_are_idempotent_and_rollups_count_once(store):
    rows = samples("chamber", T0, 600, 1.0, seed=1)
    assert store.write(rows) == 600
    assert store.write(rows) == 0
    assert store.write(rows[100:200] + samples("chamber", T0 + timedelta(hours=1), 5, 1, 2)) == 5
    everything = make_query("chamber", T0 - timedelta(days=1), T0 + timedelta(days=1), "1d",
                            "count")
    assert everything.rollup == 3600
    assert sum(v for _, v in store.series(everything)) == 605
    raw = store.series(make_query("chamber", T0, T0 + timedelta(seconds=3)))
    assert raw == [(from_us(t), v) for _, _, t, v in rows[:3]]


def test_partitions_across_a_day_boundary(pg_database):
    import psycopg2

    store = open_store(pg_database)
    store.upgrade()
    midnight = datetime(2026, 5, 2, tzinfo=UTC)
    rows = samples("rf", midnight - timedelta(seconds=30), 60, 1.0, seed=3)
    assert store.write(rows) == 60
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM samples_20260501")
        assert cur.fetchone() == (30,)
        cur.execute("SELECT count(*) FROM samples_20260502")
        assert cur.fetchone() == (30,)
    conn.close()
    result = store.series(make_query("rf", midnight - timedelta(minutes=1),
                                     midnight + timedelta(minutes=1)))
    assert [v for _, v in result] == [r[3] for r in rows]
    store.close()



def test_a_shuffled_batch_over_several_days_goes_to_its_partitions(store):
    midnight = datetime(2026, 5, 2, tzinfo=UTC)
    rows = samples("rf", midnight - timedelta(hours=30), 60, 3600.0, seed=6) \
        + samples("gauge", midnight, 5, 60.0, seed=7)
    shuffled = random.Random(8).sample(rows, len(rows))
    assert store.write(shuffled[:40]) == 40
    assert store.write(shuffled) == 25  # a replay in another order: only the new rows
    latest = {r["sensor"]: (r["time"], r["value"]) for r in store.latest()}
    assert latest == {"rf": (from_us(rows[59][2]), rows[59][3]),
                      "gauge": (from_us(rows[64][2]), rows[64][3])}
    for sensor, part in (("rf", rows[:60]), ("gauge", rows[60:])):
        day = make_query(sensor, midnight - timedelta(days=2), midnight + timedelta(days=2))
        assert store.series(day) == [(from_us(t), v) for _, _, t, v in part]



def test_a_batch_of_one_day_out_of_time_order_is_stored_whole(store):
    """As two agents' bodies joined in one batch make it: runs in time order, the later
    first; a repeated (sensor, time) keeps its first value."""
    rf, gauge = samples("rf", T0, 50, 1.0, seed=13), samples("gauge", T0, 30, 2.0, seed=14)
    batch = rf[25:] + gauge + rf[:25] + [(*rf[30][:3], 99.0)]
    assert store.write(batch) == 80
    latest = {r["sensor"]: (r["time"], r["value"]) for r in store.latest()}
    assert latest == {"rf": (from_us(rf[49][2]), rf[49][3]),
                      "gauge": (from_us(gauge[29][2]), gauge[29][3])}
    day = make_query("rf", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert store.series(day) == [(from_us(t), v) for _, _, t, v in rf]
    counts = make_query("rf", T0 - timedelta(days=1), T0 + timedelta(days=1), "1d", "count")
    assert sum(v for _, v in store.series(counts)) == 50
    while store.refresh_rollups():
        pass
    assert sum(v for _, v in store.series(counts)) == 50


def test_a_row_that_cannot_be_encoded_is_refused_and_the_store_goes_on(pg_database):
    store = open_store(pg_database)
    store.upgrade()
    good = samples("rf", T0, 3, 1.0, seed=12)
    with pytest.raises(TypeError, match="a time is not an integer"):
        store.write(good[:2] + [("rf", "mbar", good[2][2] + 0.5, 1.0)])
    assert store.write(good) == 3
    assert [v for _, v in store.series(make_query("rf", T0, T0 + timedelta(minutes=1)))] \
        == [r[3] for r in good]
    store.close()



def test_a_role_that_may_not_write_a_partition_writes_through_samples(pg_database):
    import psycopg2

    owner = open_store(pg_database)
    owner.upgrade()
    owner.create_partitions(T0, T0)  # as another logger's role would: no rights for ours
    owner.close()
    role = f"ionlab_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_database)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON samples, sensors, rollup_dirty, "
                    f"rollup_1m, rollup_1h TO {role}")
        cur.execute(f"GRANT USAGE ON SEQUENCE sensors_id_seq TO {role}")
        parts = urlsplit(pg_database)
        store = open_store(urlunsplit(parts._replace(
            netloc=f"{role}:pw@{parts.hostname}:{parts.port or 5432}")))
        rows = samples("rf", T0, 5, 1.0, seed=13)
        assert store.write(rows[:3]) == 3
        assert store.write(rows) == 2
        assert store.series(make_query("rf", T0, T0 + timedelta(minutes=1))) \
            == [(from_us(t), v) for _, _, t, v in rows]
        store.close()
    finally:
        cur.execute(f"DROP OWNED BY {role}")
        cur.execute(f"DROP ROLE {role}")
        admin.close()


DOWNSAMPLED = samples("chamber", T0, 9000, 37.3, seed=4) + samples("other", T0, 500, 60, seed=5)


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def downsampled(request, tmp_path_factory):
    """One store per kind holding DOWNSAMPLED, written with an overlapping replay."""
    if request.param == "postgres":
        import psycopg2

        base = request.getfixturevalue("pg_url")
        name = f"ionlab_test_ds_{uuid.uuid4().hex[:12]}"
        admin = psycopg2.connect(base)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(base)._replace(path="/" + name))
    else:
        url = str(tmp_path_factory.mktemp("downsampled") / "ionlab.sqlite")
    store = open_store(url)
    store.upgrade()
    store.write(DOWNSAMPLED[:5000])
    while store.refresh_rollups():  # rollups for the first days ...
        pass
    store.write(DOWNSAMPLED[3000:])  # ... then an overlapping replay leaves later days lagging
    yield store
    store.close()
    if request.param == "postgres":
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.parametrize("every,agg,tz", [
    ("90s", "avg", None), ("5min", "min", None), ("5min", "max", None), ("1h", "count", None),
    ("1h", "avg", None), ("1d", "avg", None), ("1d", "first", None), ("7min", "last", None),
    ("1d", "avg", "Europe/Berlin"), ("1d", "count", "Europe/Berlin"),
    ("1d", "last", "Europe/Berlin"), ("1h", "max", "Asia/Kolkata"),
    ("1h", "avg", "Asia/Kolkata"), ("90s", "first", "Asia/Kolkata"),
])
def test_downsampling_equals_a_python_reference(downsampled, every, agg, tz):
    mine = [r for r in DOWNSAMPLED if r[0] == "chamber"]
    for start, end in [(T0 - timedelta(hours=3), T0 + timedelta(days=5)),
                       (T0 + timedelta(minutes=17, seconds=3), T0 + timedelta(hours=50, minutes=1))]:
        query = make_query("chamber", start.isoformat(), end.isoformat(), every, agg, tz)
        got = [(t.isoformat(), v) for t, v in downsampled.series(query)]
        want = reference(mine, query)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-12)


def test_daily_buckets_start_at_local_midnight(store):
    store.write(samples("chamber", T0, 300, 1200, seed=6))
    query = make_query("chamber", "2026-03-28T00:00:00+01:00", "2026-03-31T00:00:00+02:00",
                       "1d", "count", "Europe/Berlin")
    labels = [t.isoformat() for t, _ in store.series(query)]
    assert labels == ["2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00",
                      "2026-03-30T00:00:00+02:00"]


def test_rollups_answer_where_raw_data_was_removed(store):
    old = datetime.now(UTC) - timedelta(days=40)
    rows = samples("chamber", old, 2000, 30, seed=7) + samples("table", old, 200, 300, seed=8)
    store.write(rows)
    hourly = make_query("chamber", old - timedelta(days=1), old + timedelta(days=2), "1h", "avg")
    before = store.series(hourly)
    summary = store.apply_retention(datetime.now(UTC), timedelta(days=30),
                                    {"table": timedelta(days=60)})
    raw = make_query("chamber", old - timedelta(days=1), old + timedelta(days=2))
    assert store.series(raw) == []
    assert len(store.series(make_query("table", old, old + timedelta(days=2)))) == 200
    kept = store.series(hourly)
    assert [t for t, _ in kept] == [t for t, _ in before]
    if "postgresql" in store.url:
        assert summary["dropped"] == [] and summary["deleted"] == 2000
        summary = store.apply_retention(datetime.now(UTC), timedelta(days=30), {})
        day = "samples_" + old.strftime("%Y%m%d")
        assert day in summary["dropped"] and summary["deleted"] == 0
        assert store.series(make_query("table", old, old + timedelta(days=2))) == []
    else:
        assert summary["deleted"] == 2000


def test_latest_and_sensors(store):
    store.describe("chamber", "mbar", "main chamber gauge")
    store.write(samples("chamber", T0, 10, 1, seed=9) + samples("rf", T0, 3, 5, seed=10))
    store.write(samples("chamber", T0 - timedelta(hours=1), 2, 1, seed=11))  # older: not latest
    latest = {r["sensor"]: r for r in store.latest()}
    assert latest["chamber"]["time"] == T0 + timedelta(seconds=9)
    assert latest["rf"]["time"] == T0 + timedelta(seconds=10)
    assert latest["chamber"]["unit"] == "mbar"
    sensors = {s["sensor"]: s for s in store.sensors()}
    assert sensors["chamber"]["description"] == "main chamber gauge"
    assert store.unit("rf") == "mbar"
    with pytest.raises(UnknownSensor, match="no sensor named 'nope'"):
        store.series(make_query("nope", T0, T0 + timedelta(hours=1)))


def test_two_writers_register_the_same_new_sensor_at_once(store_url):
    stores = [open_store(store_url) for _ in range(2)]
    stores[0].upgrade()
    barrier = threading.Barrier(2)
    errors = []

    def write(store, seed):
        try:
            barrier.wait()
            store.write(samples("new sensor", datetime(2027, 1, 1, tzinfo=UTC), 50, 1, seed))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [s["sensor"] for s in stores[0].sensors()] == ["new sensor"]
    count = make_query("new sensor", "2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z", "1d", "count")
    assert [v for _, v in stores[0].series(count)] == [50]
    for s in stores:
        s.close()


def test_queries_refuse_bad_input():
    with pytest.raises(QueryError, match="start: time needs a UTC offset"):
        make_query("x", "2026-01-01T00:00:00", "2026-01-02T00:00:00Z")
    with pytest.raises(QueryError, match="end: must be after start"):
        make_query("x", "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")
    with pytest.raises(QueryError, match="every: expected a duration like 90s"):
        make_query("x", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "fast")
    with pytest.raises(QueryError, match="agg: expected one of avg, min"):
        make_query("x", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "1h", "median")
    with pytest.raises(QueryError, match="tz: unknown time zone 'Mars/Olympus'"):
        make_query("x", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "1h", "avg", "Mars/Olympus")
    with pytest.raises(QueryError, match="every: 31536000 buckets; at most 100000 per query"):
        make_query("x", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "1s")


def test_unknown_url_is_refused():
    with pytest.raises(StoreError, match="unsupported database URL 'mysql://x/y'"):
        open_store("mysql://x/y")


def test_kolkata_hours_do_not_use_the_hourly_rollup():
    q = make_query("x", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "1h", "avg",
                   "Asia/Kolkata")
    assert q.rollup == 60
    assert make_query("x", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "1d", "avg",
                      "Europe/Berlin").rollup == 3600
    assert make_query("x", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "90s").rollup is None


def test_answers_are_the_same_while_rollups_lag_and_after(pg_database):
    import psycopg2

    store = open_store(pg_database)
    store.upgrade()
    store.write(samples("chamber", T0, 4000, 61.7, seed=12))
    queries = [make_query("chamber", T0 - timedelta(hours=1), T0 + timedelta(days=4), every, agg,
                          tz) for every, agg, tz in [("1h", "avg", None), ("1min", "max", None),
                                                     ("1d", "count", "Europe/Berlin")]]
    lagging = [store.series(q) for q in queries]
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rollup_dirty")
        assert cur.fetchone()[0] == 4  # Mar 27, 28, 29, 30 (UTC)
        assert store.refresh_rollups(limit=2) == 2
        assert_same(lagging, [store.series(q) for q in queries])  # half caught up
        while store.refresh_rollups():
            pass
        cur.execute("SELECT (SELECT count(*) FROM rollup_dirty), (SELECT sum(count) FROM rollup_1h)")
        assert cur.fetchone() == (0, 4000)
    conn.close()
    assert_same(lagging, [store.series(q) for q in queries])
    store.close()


def assert_same(expected: list[list[tuple]], got: list[list[tuple]]) -> None:
    """The same buckets with the same values (to float rounding) for every query."""
    for want, have in zip(expected, got, strict=True):
        assert [t for t, _ in have] == [t for t, _ in want]
        assert [v for _, v in have] == pytest.approx([v for _, v in want], rel=1e-12)


def _split_batch():
    """Three sensors over four UTC days from midnight, 24 480 rows; 'b' stops after day one."""
    midnight = datetime(2026, 5, 1, tzinfo=UTC)
    rows = samples("a", midnight, 17280, 20.0, seed=20) \
        + samples("b", midnight, 1440, 60.0, seed=21) \
        + samples("c", midnight + timedelta(seconds=7), 5760, 60.0, seed=22)
    return midnight, sorted(rows, key=lambda r: r[2])


def _stored(url: str, sql: str):
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        result = cur.fetchall()
    conn.close()
    return result


def test_a_large_batch_over_days_is_written_in_two_transactions_once(pg_database):
    midnight, rows = _split_batch()
    store = PostgresStore(pg_database, writers=2)
    store.upgrade()
    assert store.write(rows) == len(rows)
    per_day = _stored(pg_database, "SELECT date_trunc('day', time AT TIME ZONE 'UTC'), "
                      "count(DISTINCT xmin::text), "
                      "count(*) FROM samples GROUP BY 1 ORDER BY 1")
    assert [n for _, _, n in per_day] == [7200, 5760, 5760, 5760]  # a, b, c; then a and c
    assert all(x == 1 for _, x, _ in per_day)  # each day in one transaction ...
    assert _stored(pg_database, "SELECT count(DISTINCT xmin::text) FROM samples") == [(2,)]  # ... of 2
    latest = {r["sensor"]: (r["time"], r["value"]) for r in store.latest()}
    newest = {s: (from_us(t), v) for s, _, t, v in rows}
    assert latest == newest  # 'b' from the first part, 'a' and 'c' from the second
    assert store.write(rows) == 0  # a replay stores nothing
    while store.refresh_rollups():
        pass
    for sensor in "abc":
        q = make_query(sensor, midnight, midnight + timedelta(days=4), "1h", "avg")
        assert q.rollup == 3600
        got = [(t.isoformat(), v) for t, v in store.series(q)]
        want = reference([r for r in rows if r[0] == sensor], q)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-12)
    store.close()


def test_when_one_part_fails_the_other_is_kept_and_a_replay_completes(pg_database):
    midnight, rows = _split_batch()
    store = PostgresStore(pg_database, writers=2)
    store.upgrade()
    store.create_partitions(midnight, midnight + timedelta(days=3))
    last_day = [r for r in rows if r[2] >= to_us(midnight + timedelta(days=3))]
    rows[rows.index(last_day[-1])] = (*last_day[-1][:3], 1000.0)  # refused on the last day
    _stored(pg_database, "ALTER TABLE samples_20260504 ADD CONSTRAINT sane "
            "CHECK (value < 100); SELECT 1")
    with pytest.raises(StoreError, match='violates check constraint "sane"'):
        store.write(rows)
    assert _stored(pg_database, "SELECT count(*) FROM samples") == [(7200 + 5760,)]  # days 1-2
    assert {r["sensor"] for r in store.latest()} == {"b"}  # its newest row is on day 1
    _stored(pg_database, "ALTER TABLE samples_20260504 DROP CONSTRAINT sane; SELECT 1")
    assert store.write(rows) == 2 * 5760  # only what the failed part held
    assert _stored(pg_database, "SELECT count(*), count(DISTINCT (sensor_id, time)) "
                   "FROM samples") == [(len(rows), len(rows))]
    assert {r["sensor"]: r["value"] for r in store.latest()} == {s: v for s, _, _, v in rows}
    store.close()


def test_new_days_get_whole_partitions_with_their_unique_index_attached(pg_database):
    import psycopg2

    store = open_store(pg_database)
    store.upgrade()
    midnight = datetime(2025, 2, 1, tzinfo=UTC)
    rows = samples("rf", midnight, 3 * 1440, 60.0, seed=30)  # three days, none created yet
    assert store.write(rows) == len(rows)
    parts = _stored(pg_database, """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid),
               (SELECT p.relname FROM pg_inherits ii JOIN pg_class p ON p.oid = ii.inhparent
                WHERE ii.inhrelid = x.indexrelid), x.indisunique, x.indisvalid
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_index x ON x.indrelid = c.oid
        WHERE i.inhparent = 'samples'::regclass AND c.relname LIKE 'samples_202502%'
        ORDER BY 1""")
    assert [(name, parent, unique, valid) for name, _, parent, unique, valid in parts] == [
        (f"samples_2025020{d}", "samples_pkey", True, True) for d in (1, 2, 3)]
    assert parts[0][1] == ("FOR VALUES FROM ('2025-02-01 00:00:00+00') "
                           "TO ('2025-02-02 00:00:00+00')")
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("INSERT INTO samples SELECT time, sensor_id, 0 FROM samples LIMIT 1")
    conn.close()
    assert store.write(rows[1000:1010] + samples("rf", midnight, 1, 30.0, seed=31)) == 0
    assert store.write(samples("rf", midnight + timedelta(seconds=30), 1, 1, seed=32)) == 1
    day = make_query("rf", midnight, midnight + timedelta(days=3), "1d", "count")
    assert [v for _, v in store.series(day)] == [1441, 1440, 1440]
    store.close()


def test_a_row_repeated_in_a_batch_for_a_new_day_is_stored_once(pg_database):
    store = open_store(pg_database)
    store.upgrade()
    rows = samples("rf", datetime(2025, 3, 1, 12, tzinfo=UTC), 50, 1.0, seed=33)
    assert store.write(rows + rows[10:12]) == 50
    assert store.series(make_query("rf", "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z")) \
        == [(from_us(t), v) for _, _, t, v in rows]
    store.close()


def test_two_loggers_backfilling_the_same_new_days_at_once(pg_database):
    midnight, rows = _split_batch()
    stores = [PostgresStore(pg_database, writers=2) for _ in range(2)]
    stores[0].upgrade()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def backfill(store, part):
        try:
            barrier.wait()
            results.append(store.write(part))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    halves = (rows[:16000], rows[8000:])  # overlapping, over the same new days
    threads = [threading.Thread(target=backfill, args=args)
               for args in zip(stores, halves, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(results) == len(rows)
    assert _stored(pg_database, "SELECT count(*), count(DISTINCT (sensor_id, time)) "
                   "FROM samples") == [(len(rows), len(rows))]
    assert _stored(pg_database, "SELECT count(*) FROM pg_inherits "
                   "WHERE inhparent = 'samples'::regclass AND inhrelid::regclass::text "
                   "LIKE 'samples_202605%'") == [(4,)]
    for store in stores:
        store.close()


@pytest.mark.parametrize("every", ["1min", "1h"])
@pytest.mark.parametrize("agg", ["avg", "min", "max", "count"])
def test_buckets_as_wide_as_a_rollup_on_whole_buckets_equal_the_reference(store, every, agg):
    rows = samples("chamber", T0, 3000, 17.3, seed=40)
    store.write(rows)
    while store.refresh_rollups():
        pass
    start = T0.replace(minute=0, second=0, microsecond=0)  # whole buckets: no raw edges
    query = make_query("chamber", start, start + timedelta(hours=15), every, agg)
    got = [(t.isoformat(), v) for t, v in store.series(query)]
    want = reference(rows, query)
    assert [t for t, _ in got] == [t for t, _ in want] and len(want) > 10
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-12)


def test_creating_a_partition_leaves_samples_readable_until_commit(pg_database):
    import psycopg2

    from services.logger.postgres import _create_partitions

    store = open_store(pg_database)
    store.upgrade()
    store.write(samples("rf", T0, 10, 1.0, seed=50))
    store.close()
    maker, reader = psycopg2.connect(pg_database), psycopg2.connect(pg_database)
    try:
        with maker.cursor() as cur:
            _create_partitions(cur, [to_us(datetime(2031, 1, 1, tzinfo=UTC)) // 86_400_000_000])
            with reader.cursor() as other:  # the partition is made, not yet committed
                other.execute("SET lock_timeout = '2s'")
                other.execute("SELECT count(*) FROM samples")
                assert other.fetchone() == (10,)
                other.execute("INSERT INTO samples SELECT time + interval '1 h', sensor_id, "
                              "value FROM samples")
            reader.commit()
        maker.commit()
    finally:
        maker.close()
        reader.close()
    assert _stored(pg_database, "SELECT count(*) FROM samples_20310101") == [(0,)]
    assert _stored(pg_database, "SELECT count(*) FROM samples") == [(20,)]


def test_a_connection_lost_in_one_part_keeps_the_other_and_a_rewrite_completes(pg_proxy):
    import psycopg2

    from services.logger.store import StoreUnavailable

    url, proxy, direct = pg_proxy
    midnight, rows = _split_batch()
    store = PostgresStore(url, writers=2)
    store.upgrade()
    store.create_partitions(midnight + timedelta(days=2), midnight + timedelta(days=3))
    blocker = psycopg2.connect(direct)  # holds day 3 so that the second part waits there
    blocker.cursor().execute("LOCK TABLE samples_20260503 IN ACCESS EXCLUSIVE MODE")
    outcome = []
    writing = threading.Thread(target=lambda: outcome.append(_attempt(store.write, rows)))
    writing.start()
    try:
        wait = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ionlab' " \
               "AND wait_event_type = 'Lock'"
        deadline = time.monotonic() + 30
        first_part = "SELECT count(*) FROM samples WHERE time < '2026-05-03T00:00:00Z'"
        while _stored(direct, first_part) != [(7200 + 5760,)] or _stored(direct, wait) != [(1,)]:
            assert time.monotonic() < deadline, "the first part never committed"
            time.sleep(0.02)
        proxy.cut()  # the second part's connection dies in the middle of its transaction
        writing.join(30)
    finally:
        blocker.rollback()
        blocker.close()
        proxy.restore()
    (error,) = outcome
    assert isinstance(error, StoreUnavailable) and "PostgreSQL unreachable" in str(error)
    for _ in range(2):  # the cut reset the other connection too: its next use finds out
        stored = _attempt(store.write, rows)
        if not isinstance(stored, StoreUnavailable):
            break
    assert stored == 2 * 5760  # only what the lost part held
    assert _stored(direct, "SELECT count(*), count(DISTINCT (sensor_id, time)) "
                   "FROM samples") == [(len(rows), len(rows))]
    store.close()


def _attempt(call, *args):
    """The result of call(*args), or the exception it raised."""
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc


def test_rollups_are_caught_up_on_both_writer_connections_exactly(pg_database):
    midnight, rows = _split_batch()  # 9 sensor-days: a and c over 4 days, b over 1
    store = PostgresStore(pg_database, writers=2)
    store.upgrade()
    store.write(rows)
    assert store.refresh_rollups(limit=8) == 8  # a share of 4 on each connection
    assert _stored(pg_database, "SELECT count(DISTINCT xmin::text), count(*) "
                   "FROM rollup_dirty") == [(1, 1)]
    assert _stored(pg_database, "SELECT count(DISTINCT xmin::text) FROM rollup_1h") == [(2,)]
    assert store.refresh_rollups(limit=8) == 1
    assert store.refresh_rollups(limit=8) == 0
    assert _stored(pg_database, "SELECT sum(count) FROM rollup_1m") == [(len(rows),)]
    for sensor in "abc":
        q = make_query(sensor, midnight, midnight + timedelta(days=4), "1d", "max")
        assert q.rollup == 3600
        want = reference([r for r in rows if r[0] == sensor], q)
        assert [(t.isoformat(), v) for t, v in store.series(q)] == want
    store.close()


def test_storing_tags_never_deadlocks_with_a_write_updating_latest_values(pg_database):
    """set_tags (new ingest sensors) takes one sensor row at a time, so a write that holds
    some sensor rows and waits for another (moving latest values) always gets through."""
    import psycopg2

    store = open_store(pg_database)
    store.upgrade()
    store.write([("a", "", to_us(T0), 1.0), ("b", "", to_us(T0), 2.0)])
    writer = psycopg2.connect(pg_database)  # a write's transaction, as the writer's
    cur = writer.cursor()
    cur.execute("SET deadlock_timeout = '100ms'")
    cur.execute("UPDATE sensors SET last_value = 3 WHERE name = 'b'")
    outcome = []

    def tag():
        try:
            store.set_tags({"a": ("", {"k": "1"}), "b": ("", {"k": "2"})})
            outcome.append("stored")
        except Exception as exc:  # noqa: BLE001 - what the test reports
            outcome.append(exc)

    tagger = threading.Thread(target=tag)
    tagger.start()
    deadline = time.monotonic() + 60
    with psycopg2.connect(pg_database) as watch, watch.cursor() as w:
        while True:  # until set_tags waits for 'b', which this transaction holds
            w.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND datname = current_database()")
            if w.fetchone()[0] or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    cur.execute("UPDATE sensors SET last_value = 4 WHERE name = 'a'")  # would close a cycle
    writer.commit()
    tagger.join(60)
    writer.close()
    assert outcome == ["stored"]
    assert {s["sensor"]: s["tags"] for s in store.sensors()} == {"a": {"k": "1"},
                                                               "b": {"k": "2"}}
    store.close()
