"""The logger: ingest and queries on PostgreSQL and SQLite against InfluxDB 1.6.

Dataset: 50 sensors, one sample each every ~158 s over a year: 10 million
samples (1 million with --quick), generated in time order as a logger sees them.

- Ingest: samples/s through the logger's Writer (batches of binary COPY)
  into a fresh PostgreSQL database, from the first row handed over to the
  last batch committed; daily partitions are created as the load needs them
  and timed with it (a backfill: each new day is loaded, indexed in one pass
  and attached; rollups are refreshed by the writer while it is idle; the
  time they still needed after the load is printed too). Also into
  partitions that exist beforehand, as live logging finds them (every row
  goes into the unique index as it comes), for 2M samples. Against
  `psql \\copy` of the same rows into the same partitioned table, partitions
  made beforehand (text COPY on one connection, no rollups), and against
  InfluxDB receiving the same points as line protocol over HTTP, 10k per
  request, timed from the same tuples (building the text is timed, as the
  logger's encoding is) on one connection and on two at once (the writer
  splits large batches over two); the POSTs alone are shown too. Both are durable: PostgreSQL with fsync and
  synchronous_commit on (the label says otherwise), InfluxDB fsyncing its WAL
  on every write. The SQLite store's ingest through the same Writer is shown
  too.
- Queries on the loaded data (median of repeated runs, warm): one sensor-day
  at 1-minute buckets, one sensor-year at 1-day buckets, the latest value of
  every sensor; ionlab through `Store.series`/`Store.latest` against InfluxDB's
  `GROUP BY time() fill(none)` and `last()` over HTTP, its JSON answer parsed.

InfluxDB (Debian package `influxdb`) is installed with apt-get when missing and
started on 127.0.0.1 with a throw-away data folder; PostgreSQL is the test
server (IONLAB_TEST_PG, default postgresql://127.0.0.1:5432/test).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from services.logger.queries import from_us, make_query, to_us
from services.logger.spool import Spool
from services.logger.store import open_store
from services.logger.writer import Writer

from .run import Row

__all__ = ["run"]

SENSORS = 50
T0 = datetime(2025, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
CHUNK = 500_000
PG_URL = os.environ.get("IONLAB_TEST_PG", "postgresql://127.0.0.1:5432/test")


def chunks(total: int):
    """The dataset in time order, CHUNK rows at a time: (sensor, unit, time_us, value)."""
    step = to_us(T0 + YEAR) - to_us(T0)
    step //= total // SENSORS
    t0 = to_us(T0)
    rnd = random.Random(5)
    names = [f"s{k:02d}" for k in range(SENSORS)]
    for start in range(0, total, CHUNK):
        yield [(names[i % SENSORS], "V", t0 + (i // SENSORS) * step + i % SENSORS,
                rnd.uniform(0.0, 10.0)) for i in range(start, min(start + CHUNK, total))]


def ingest(store, total: int, spool_dir: Path) -> float:
    """Samples/s through the Writer; only the writer's work is timed, not data generation."""
    writer = Writer(store, Spool(spool_dir, 2**30), batch_s=0.05, max_pending=CHUNK + 1,
                    maintain_s=10**9)
    writer.start()
    writer.flush()
    spent = 0.0
    for rows in chunks(total):
        began = time.perf_counter()
        writer.add(rows)
        if not writer.flush(3600):
            raise RuntimeError("writer did not finish")
        spent += time.perf_counter() - began
    writer.stop()
    if writer.errors or writer.written != total:
        raise RuntimeError(f"writer stored {writer.written} of {total}: {writer.last_error}")
    return total / spent


def psql_copy(url: str, total: int, folder: Path) -> float:
    """Rows/s of `psql \\copy` (text COPY) of the same rows into the same table."""
    store = open_store(url)
    store.upgrade()
    store.create_partitions(T0, T0 + YEAR)
    store.write([(f"s{k:02d}", "V", to_us(T0) - 10**6, 0.0) for k in range(SENSORS)])
    store.close()
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, id FROM sensors")
        ids = dict(cur.fetchall())
    conn.close()
    path = folder / "copy.csv"
    with open(path, "w") as f:
        for rows in chunks(total):
            f.writelines(f"{from_us(t).isoformat()},{ids[s]},{v!r}\n" for s, _, t, v in rows)
    parts = urlsplit(url)
    command = ["psql", "-q", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
               "-d", parts.path.lstrip("/"), "-c",
               f"\\copy samples (time, sensor_id, value) FROM '{path}' WITH (FORMAT csv)"]
    if parts.username:
        command += ["-U", parts.username]
    began = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PGPASSWORD": parts.password or ""})
    return total / (time.perf_counter() - began)


class Http:
    """One keep-alive HTTP connection to influxd."""

    def __init__(self, port: int):
        self.port = port
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            self.conn.request(method, path, body)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise OSError("influxd connection failed") from None
        if response.status >= 300:
            raise RuntimeError(f"influxd {method} {path}: {response.status} {data[:200]!r}")
        return data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Influx:
    """influxd 1.6 on 127.0.0.1 with a throw-away data folder."""

    def __init__(self, folder: Path):
        exe = shutil.which("influxd") or "/usr/bin/influxd"
        if not os.path.exists(exe):
            subprocess.run(["apt-get", "install", "-y", "-qq", "influxdb"], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        self.port, rpc = _free_port(), _free_port()
        conf = folder / "influxdb.conf"
        conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{folder}/meta"
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
        self.proc = subprocess.Popen([exe, "-config", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.http = Http(self.port)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http.request("GET", "/ping")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("influxd did not start") from None
                time.sleep(0.2)

    def ingest(self, total: int, db: str, connections: int = 1) -> tuple[float, float]:
        """Points/s of line protocol POSTed 10k per request into `db`, the text built from the
        same tuples the logger gets (timed, as the logger's encoding is) by `connections`
        threads at once; and, for one connection, of the POSTs alone."""
        self.http.request("POST", "/query?" + urlencode({"q": f"CREATE DATABASE {db}"}))
        write = f"/write?db={db}&precision=u"
        spent = posting = 0.0
        local = threading.local()
        clients = []

        def send(rows):
            if not hasattr(local, "http"):
                local.http = Http(self.port)
                clients.append(local.http)
            local.http.request("POST", write, _lines(rows))

        with ThreadPoolExecutor(connections) as pool:
            for rows in chunks(total):
                parts = [rows[k:k + 10_000] for k in range(0, len(rows), 10_000)]
                began = time.perf_counter()
                if connections > 1:
                    list(pool.map(send, parts))
                else:
                    bodies = list(map(_lines, parts))
                    built = time.perf_counter()
                    for body in bodies:
                        self.http.request("POST", write, body)
                    posting += time.perf_counter() - built
                spent += time.perf_counter() - began
        for client in clients:
            client.close()
        return total / spent, (total / posting if posting else float("nan"))

    def query(self, q: str) -> dict:
        """The parsed answer (ionlab's queries hand back Python values too)."""
        return json.loads(self.http.request("GET", "/query?" + urlencode(
            {"db": "bench", "q": q, "epoch": "u"})))

    def stop(self):
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _lines(rows) -> bytes:
    return "\n".join(f"m,sensor={s} value={v!r} {t}" for s, _, t, v in rows).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _durability(url: str) -> str:
    """'' when every commit is flushed to disk, else what makes the figure not durable."""
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        unsafe = []
        for name, safe in (("fsync", "on"), ("synchronous_commit", "on"),
                           ("full_page_writes", "on")):
            cur.execute(f"SHOW {name}")
            value = cur.fetchone()[0]
            if value != safe:
                unsafe.append(f"{name}={value}")
    conn.close()
    return f" NOT DURABLE ({', '.join(unsafe)})" if unsafe else ""


def median_ms(fn, repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def _database(name: str):
    import psycopg2

    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    return admin, urlunsplit(urlsplit(PG_URL)._replace(path="/" + name))


def run(quick: bool) -> list[Row]:
    total = 1_000_000 if quick else 10_000_000
    size = f"{total / 1e6:g}M samples, {SENSORS} sensors, 1 year"
    repeat = 10 if quick else 20
    name = f"ionlab_bench_{uuid.uuid4().hex[:10]}"
    admin, url = _database(name)
    folder = Path(tempfile.mkdtemp(prefix="ionlab-bench-logger-"))
    influx = None
    rows: list[Row] = []
    try:
        for db in (name, name + "_copy", name + "_ahead"):
            admin.cursor().execute(f'CREATE DATABASE "{db}"')
        pg = open_store(url)
        pg.upgrade()
        print(f"bench_logger: loading {size} into PostgreSQL ...", file=sys.stderr, flush=True)
        pg_rate = ingest(pg, total, folder / "spool-pg")
        began = time.perf_counter()
        while pg.refresh_rollups(1000):
            pass
        catch_up = time.perf_counter() - began
        print("bench_logger: psql COPY ...", file=sys.stderr, flush=True)
        copy_n = min(total, 2_000_000)
        copy_rate = psql_copy(url + "_copy", copy_n, folder)
        print("bench_logger: PostgreSQL, partitions made ahead ...", file=sys.stderr, flush=True)
        ahead = open_store(url + "_ahead")
        ahead.upgrade()
        ahead.create_partitions(T0, T0 + YEAR)
        ahead_rate = ingest(ahead, copy_n, folder / "spool-ahead")
        ahead.close()
        print("bench_logger: SQLite ...", file=sys.stderr, flush=True)
        lite = open_store(str(folder / "bench.sqlite"))
        lite.upgrade()
        lite_rate = ingest(lite, total, folder / "spool-lite")
        print("bench_logger: InfluxDB ...", file=sys.stderr, flush=True)
        influx = Influx(folder)
        influx_rate, influx_post_rate = influx.ingest(total, "bench")
        influx_rate2, _ = influx.ingest(total, "bench2", connections=2)

        unit = "samples/s"
        influx_name = "InfluxDB 1.6 line protocol"
        pg_label = f"ingest, Writer -> PostgreSQL{_durability(url)} ({size})"
        rows += [
            Row("logger", pg_label, pg_rate, copy_rate,
                f"psql \\copy of {copy_n / 1e6:g}M rows (text COPY, one connection)", unit),
            Row("logger", pg_label, pg_rate, influx_rate, influx_name + ", one connection", unit),
            Row("logger", pg_label, pg_rate, influx_rate2, influx_name + ", two connections",
                unit),
            Row("logger", pg_label, pg_rate, influx_post_rate,
                influx_name + " (POSTs only, text built untimed)", unit),
            Row("logger", f"ingest, Writer -> PostgreSQL, partitions made ahead as for live "
                f"logging ({copy_n / 1e6:g}M samples)", ahead_rate, copy_rate,
                f"psql \\copy of the same {copy_n / 1e6:g}M rows", unit),
            Row("logger", f"ingest, Writer -> PostgreSQL, partitions made ahead as for live "
                f"logging ({copy_n / 1e6:g}M samples)", ahead_rate, influx_rate,
                influx_name + f", one connection ({size})", unit),
            Row("logger", f"ingest, Writer -> SQLite ({size})", lite_rate, influx_rate,
                influx_name + ", one connection", unit),
            Row("logger", "PostgreSQL rollups still lagging when the load ended, catch-up",
                catch_up, unit="s", higher_is_better=False),
        ]

        day = T0 + timedelta(days=180)
        sensor = "s07"
        day_q = make_query(sensor, day, day + timedelta(days=1), "1min", "avg")
        year_q = make_query(sensor, T0, T0 + YEAR, "1d", "avg")
        influx_day = (f"SELECT mean(value) FROM m WHERE sensor = '{sensor}' AND time >= "
                      f"{to_us(day)}u AND time < {to_us(day + timedelta(days=1))}u "
                      "GROUP BY time(1m) fill(none)")
        influx_year = (f"SELECT mean(value) FROM m WHERE sensor = '{sensor}' AND time >= "
                       f"{to_us(T0)}u AND time < {to_us(T0 + YEAR)}u GROUP BY time(1d) fill(none)")
        influx_latest = "SELECT last(value) FROM m GROUP BY sensor"
        if len(pg.series(day_q)) != len(lite.series(day_q)) or len(pg.latest()) != SENSORS:
            raise RuntimeError("PostgreSQL and SQLite disagree on the loaded data")
        baselines = {
            "sensor-day @1min avg": median_ms(lambda: influx.query(influx_day), repeat),
            "sensor-year @1d avg": median_ms(lambda: influx.query(influx_year), repeat),
            "latest of all sensors": median_ms(lambda: influx.query(influx_latest), repeat),
        }
        for label, store in (("PostgreSQL", pg), ("SQLite", lite)):
            mine = {
                "sensor-day @1min avg": median_ms(lambda s=store: s.series(day_q), repeat),
                "sensor-year @1d avg": median_ms(lambda s=store: s.series(year_q), repeat),
                "latest of all sensors": median_ms(lambda s=store: s.latest(), repeat),
            }
            for metric, ms in mine.items():
                rows.append(Row("logger", f"{metric}, {label} ({size})", ms, baselines[metric],
                                "InfluxDB 1.6 GROUP BY time()/last()", "ms",
                                higher_is_better=False))
        pg.close()
        lite.close()
    finally:
        if influx is not None:
            influx.stop()
        for db in (name, name + "_copy", name + "_ahead"):
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rows
