"""What agents push: line protocol into PostgreSQL against InfluxDB 1.6, MQTT, /metrics.

- Line protocol: the same bodies (10 000 lines each, 50 series, timestamps in
  µs) POSTed to ``ionlab logger``'s ``/write`` (into a fresh PostgreSQL
  database; the answer comes once the points are in the fsynced spool, and a
  second figure runs until all are in PostgreSQL) and to InfluxDB
  1.6's own ``/write`` (started here on free ports with a throw-away folder,
  WAL fsynced on every write), on two connections at once; points/s and the
  peak RSS of both servers. Beside them, PostgreSQL's own ceiling: the same
  points as rows, COPYed into a fresh database of the same schema by a client
  that does nothing else (`copy_ceiling`).
- MQTT: paho publishers in two processes send plain-number QoS 1 messages
  through our own Mosquitto (free port, generated config) to ``ionlab
  logger``; messages/s from the first publish until every one is stored in
  PostgreSQL, and how many were lost (goal: 20 000 msgs/s, none lost); beside it,
  what Mosquitto's own C client ``mosquitto_sub`` receives from the same publishers
  (it stores nothing: the ceiling this machine sets, the publishers' CPU included).
- ``/metrics`` with 1 000 sensors: the median scrape time (goal: under 50 ms).

PostgreSQL is the test server (IONLAB_TEST_PG, default postgresql://127.0.0.1:5432/test).
"""

from __future__ import annotations

import http.client
import io
import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.logger.postgres import DAY_US, _CopyData, partition_name
from services.logger.store import open_store

from .bench_logger import Influx, _database, _free_port
from .run import Row

__all__ = ["run"]

TOKEN = "bench-token"
LINES_PER_BODY = 10_000
SERIES = 50
T0_US = 1_767_225_600 * 10**6  # 2026-01-01
WINDOW = 30_000  # QoS 1 messages a publisher has in flight at most


def bodies(total: int) -> list[bytes]:
    """Line protocol bodies holding `total` points, 50 series, one field each."""
    out = []
    for start in range(0, total, LINES_PER_BODY):
        out.append("\n".join(
            f"bench,sensor=s{i % SERIES:02d} value={(i % 1000) * 0.001!r} {T0_US + i * 1000}"
            for i in range(start, min(start + LINES_PER_BODY, total))).encode())
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Logger:
    """`ionlab logger` in its own process, on a free port."""

    def __init__(self, folder: Path, db: str, extra: str = ""):
        self.port = _free_port()
        config = folder / f"logger-{self.port}.toml"
        config.write_text(f'[server]\nport = {self.port}\ntoken = "{TOKEN}"\n[logger]\n'
                          f'db = "{db}"\nspool_dir = "{folder}/spool-{self.port}"\n{extra}')
        exe = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))
        self.log = (folder / f"logger-{self.port}.log").open("wb")
        self.proc = subprocess.Popen([exe, "logger", "--config", str(config)], cwd=folder,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ionlab logger did not start") from None
                time.sleep(0.1)

    def written(self) -> int:
        """Rows the logger's store has taken (committed), by its status page: asking
        PostgreSQL for count(*) all the time would take a core from the writes measured."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", "/api/v1/logger/status")
            return json.loads(conn.getresponse().read())["written"]
        finally:
            conn.close()

    def wait_written(self, n: int, timeout: float = 600) -> None:
        """Until the store has taken `n` rows (RuntimeError if not within `timeout`)."""
        deadline = time.monotonic() + timeout
        while (written := self.written()) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ionlab stored {written} of {n} points")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def post_all(port: int, path: str, payloads: list[bytes], headers: dict) -> float:
    """Seconds to POST every body on two connections at once (each answered 2xx)."""
    local = threading.local()

    def send(body: bytes) -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        local.conn.request("POST", path, body, headers)
        response = local.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"POST {path}: {response.status} {data[:200]!r}")

    began = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(send, payloads))
    return time.perf_counter() - began


def count_rows(url: str) -> int:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM samples")
        n = cur.fetchone()[0]
    conn.close()
    return n


def copy_ceiling(url: str, total: int) -> float:
    """Seconds PostgreSQL takes to COPY the same points as rows into the same schema from a
    client that does nothing else: binary COPY prepared beforehand, 100 000 rows a
    transaction, on two connections at once (what the server allows on this machine)."""
    import psycopg2

    store = open_store(url)
    start = datetime.fromtimestamp(T0_US / 1e6, UTC)
    store.create_partitions(start, start + timedelta(microseconds=total * 1000))
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        ids = []
        for k in range(SERIES):
            cur.execute("INSERT INTO sensors (name, unit) VALUES (%s, '') RETURNING id",
                        (f"bench,sensor=s{k:02d}",))
            ids.append(cur.fetchone()[0])
    conn.close()
    store.close()
    table = partition_name(T0_US // DAY_US)
    per = 100_000
    encoded = [b"".join(iter(_CopyData(
        array("q", range(T0_US + a * 1000, T0_US + (a + per) * 1000, 1000)),
        array("i", (ids[i % SERIES] for i in range(a, a + per))),
        array("d", ((i % 1000) * 0.001 for i in range(a, a + per)))).read, b""))
        for a in range(0, total, per)]

    def load(mine: list[bytes]) -> None:
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for data in mine:
                cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT binary)",
                                io.BytesIO(data))
                conn.commit()
        conn.close()

    began = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(load, [encoded[0::2], encoded[1::2]]))
    elapsed = time.perf_counter() - began
    if (stored := count_rows(url)) != total:
        raise RuntimeError(f"the bare COPY stored {stored} of {total} rows")
    return elapsed


def line_protocol(folder: Path, url: str, total: int) -> list[Row]:
    payloads = bodies(total)
    logger = Logger(folder, url, "batch_s = 0.2\n")
    influx = Influx(folder)
    try:
        influx.http.request("POST", "/query?q=CREATE+DATABASE+bench")
        warm = bodies(LINES_PER_BODY)  # first connection, schema, partitions
        post_all(logger.port, "/write?db=lab&precision=u", [w.replace(b"bench,", b"warm,")
                                                            for w in warm],
                 {"Authorization": f"Token {TOKEN}"})
        logger.wait_written(LINES_PER_BODY)
        began = time.perf_counter()
        mine = post_all(logger.port, "/write?db=lab&precision=u", payloads,
                        {"Authorization": f"Token {TOKEN}"})
        logger.wait_written(LINES_PER_BODY + total)
        in_db = time.perf_counter() - began
        if (stored := count_rows(url)) != LINES_PER_BODY + total:
            raise RuntimeError(f"PostgreSQL holds {stored} of {LINES_PER_BODY + total} points")
        theirs = post_all(influx.port, "/write?db=bench&precision=u", payloads, {})
        rss = (peak_rss_mb(logger.proc.pid), peak_rss_mb(influx.proc.pid))
    finally:
        logger.stop()
        influx.stop()
    ceiling = copy_ceiling(url + "_copy", total)
    print(f"bench_ingest: line protocol, peak RSS: ionlab logger {rss[0]:.0f} MB, "
          f"influxd {rss[1]:.0f} MB", file=sys.stderr, flush=True)
    label = f"line protocol POST /write -> PostgreSQL ({total / 1e6:g}M points, 10k/request, " \
            "2 connections)"
    return [Row("ingest", label, total / mine, total / theirs, "InfluxDB 1.6 /write", "points/s"),
            Row("ingest", "  the same, until every point is in PostgreSQL (not only spooled)",
                total / in_db, total / theirs, "InfluxDB 1.6 /write", "points/s"),
            Row("ingest", "  the same, until every point is in PostgreSQL (not only spooled)",
                total / in_db, total / ceiling, "bare binary COPY of the rows", "points/s"),
            Row("ingest", "  PostgreSQL's own ceiling: bare binary COPY of the rows, 2 connections",
                total / ceiling, total / theirs, "InfluxDB 1.6 /write", "points/s"),
            Row("ingest", "peak RSS of the server while ingesting", rss[0], rss[1],
                "influxd", "MB", higher_is_better=False)]


def _publish(port: int, prefix: str, n: int, topics: int) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    infos = []
    for k in range(n):  # at most WINDOW unacknowledged: message ids are 16-bit
        if k >= WINDOW:
            infos[k - WINDOW].wait_for_publish(600)
        infos.append(client.publish(f"{prefix}/{k % topics}", str(k), qos=1))
    for info in infos[-WINDOW:]:
        info.wait_for_publish(600)
    client.disconnect()
    client.loop_stop()


def _publishers(port: int, prefix: str, half: int) -> list[multiprocessing.Process]:
    """Two paho publisher processes sending `half` messages each, started."""
    procs = [multiprocessing.Process(target=_publish, args=(port, f"{prefix}/p{k}", half, 25))
             for k in range(2)]
    for p in procs:
        p.start()
    return procs


def c_subscriber_rate(port: int, half: int) -> float | None:
    """messages/s that Mosquitto's own C client (mosquitto_sub, QoS 1) receives from the
    same publishers: what this machine allows, the publishers' share of it included."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        print("bench_ingest: no mosquitto_sub (Debian mosquitto-clients): no C baseline",
              file=sys.stderr, flush=True)
        return None
    session = ["-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "base/#", "-c",
               "-i", f"bench-c-{uuid.uuid4().hex[:6]}"]
    subprocess.run([exe, *session, "-E"], check=True, timeout=60)  # subscribed: the broker
    began = time.perf_counter()  # keeps what comes for this session from here on
    procs = _publishers(port, "base", half)
    try:
        subprocess.run([exe, *session, "-C", str(2 * half)], check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError("mosquitto_sub did not receive every message") from None
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join(60)
    return 2 * half / elapsed


def mqtt_rate(folder: Path, url: str, total: int) -> list[Row]:
    broker_dir = folder / "mosquitto"
    broker_dir.mkdir()
    port = _free_port()
    import getpass

    (broker_dir / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n")
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(broker_dir / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logger = None
    half = total // 2
    try:
        time.sleep(0.5)
        theirs = c_subscriber_rate(port, half)
        logger = Logger(folder, url, f'batch_s = 0.2\n[[logger.mqtt]]\nport = {port}\n'
                        f'client_id = "bench-{uuid.uuid4().hex[:6]}"\ntopics = ["bench/#"]\n'
                        'sensor = "mqtt {1}"\n')
        deadline = time.monotonic() + 30
        while "connected to" not in Path(logger.log.name).read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("the logger did not connect to Mosquitto")
            time.sleep(0.1)
        before = count_rows(url)
        began = time.perf_counter()
        procs = _publishers(port, "bench", half)
        deadline = time.monotonic() + 600
        while logger.written() < 2 * half and time.monotonic() < deadline:  # a new logger
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        for p in procs:
            p.join(60)
        time.sleep(1)
        stored = count_rows(url) - before
    finally:
        if logger is not None:
            logger.stop()
        broker.terminate()
        broker.wait(30)
    lost = 2 * half - stored
    label = f"MQTT QoS 1 numbers, 2 paho publishers -> Mosquitto -> PostgreSQL ({2 * half} messages)"
    rows = [Row("ingest", label, 2 * half / elapsed, 20_000, "goal", "msgs/s")]
    if theirs is not None:
        rows.append(Row("ingest", label, 2 * half / elapsed, theirs,
                        "mosquitto_sub (C), receiving only", "msgs/s"))
    return rows + [Row("ingest", "MQTT messages lost", lost, unit="messages",
                       higher_is_better=False)]


def metrics_scrape(folder: Path, url: str) -> list[Row]:
    logger = Logger(folder, url)
    try:
        body = "\n".join(f"many,n={k} value={k} {T0_US}" for k in range(1000)).encode()
        post_all(logger.port, "/write?db=lab&precision=u", [body],
                 {"Authorization": f"Token {TOKEN}"})
        conn = http.client.HTTPConnection("127.0.0.1", logger.port, timeout=60)
        times = []
        for _ in range(60):
            began = time.perf_counter()
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            text = response.read()
            times.append(time.perf_counter() - began)
        if text.count(b'ionlab_sensor_value{sensor="many,n=') != 1000:
            raise RuntimeError("/metrics does not show the 1000 sensors")
    finally:
        logger.stop()
    return [Row("ingest", "/metrics scrape with 1000 sensors (median)",
                statistics.median(times[10:]) * 1000, 50, "goal", "ms", higher_is_better=False)]


def run(quick: bool) -> list[Row]:
    total = 200_000 if quick else 2_000_000
    messages = 40_000 if quick else 200_000
    name = f"ionlab_bench_{uuid.uuid4().hex[:10]}"
    admin, url = _database(name)
    folder = Path(tempfile.mkdtemp(prefix="ionlab-bench-ingest-"))
    rows: list[Row] = []
    dbs = [name, name + "_copy", name + "_mqtt", name + "_metrics"]
    try:
        for db in dbs:
            admin.cursor().execute(f'CREATE DATABASE "{db}"')
            store = open_store(url + db.removeprefix(name))  # as `ionlab db upgrade` does
            store.upgrade()
            store.close()
        print("bench_ingest: line protocol ...", file=sys.stderr, flush=True)
        rows += line_protocol(folder, url, total)
        print("bench_ingest: MQTT ...", file=sys.stderr, flush=True)
        rows += mqtt_rate(folder, url + "_mqtt", messages)
        print("bench_ingest: /metrics ...", file=sys.stderr, flush=True)
        rows += metrics_scrape(folder, url + "_metrics")
    finally:
        for db in dbs:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rows

