"""The writer: outages, replays, kill -9, all against real databases."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from services.logger.queries import from_us, make_query
from services.logger.spool import Destination, Spool
from services.logger.store import open_store
from services.logger.writer import Writer
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
T0_US = 1_790_000_000 * 10**6


def rows(start: int, n: int, sensor: str = "k") -> list[tuple]:
    return [(sensor, "V", T0_US + i * 1000, float(i)) for i in range(start, start + n)]


def upgraded(url: str) -> str:
    """`url` after `ionlab db upgrade` (a logger never makes the schema itself)."""
    store = open_store(url)
    store.upgrade()
    store.close()
    return url


def spooled(spool: Spool) -> list[tuple]:
    """Every reading in the spool's segments, in order."""
    return [row for path in spool.segments() for r in spool.read(path).records
            for row in r.rows()]


def stored_indices(url: str) -> tuple[list[int], int]:
    """Values of sensor k in the database, and the count the 1-minute rollup holds."""
    store = open_store(url)
    while store.refresh_rollups():
        pass
    store.close()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM readings WHERE sensor = 'k' ORDER BY time")
        values = [int(v) for (v,) in cur.fetchall()]
        cur.execute("SELECT coalesce(sum(count), 0) FROM rollup_1m")
        rolled = cur.fetchone()[0]
    conn.close()
    return values, rolled


DEST = Destination("test-store", "postgresql://db.lab/ionlab")


def test_spool_round_trip_keeps_every_value_exactly(tmp_path):
    spool = Spool(tmp_path, 10**6).open()
    batch = [("397 cooling", "THz", T0_US + 1, 755.222_333_444_555_6),
             ("Druck ü", "mbar", -5, 1e-300), ("k", "", 2**62, -2**63 * 0.0),
             ("k", "", -2**63, 5e-324), ("x" * 300, "µW", 2**63 - 1, 1.7976931348623157e308)]
    spool.append(batch, DEST)
    spool.append(rows(0, 3), Destination(None, "var/ionlab.sqlite"))
    assert spool.readings == 8
    reopened = Spool(tmp_path, 10**6).open()
    (segment,) = reopened.segments()
    records = reopened.read(segment).records
    assert [r.rows() for r in records] == [batch, rows(0, 3)]
    assert [repr(v) for *_, v in records[0].rows()] == [repr(v) for *_, v in batch]  # -0.0 too
    assert [r.destination for r in records] == [DEST, Destination(None, "var/ionlab.sqlite")]
    assert reopened.destinations() == {DEST: 5, Destination(None, "var/ionlab.sqlite"): 3}


def test_spool_bound_discards_oldest_with_loud_warnings(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    spool = Spool(tmp_path, max_bytes=12_000, segment_bytes=2_000).open()
    for i in range(40):
        spool.append(rows(i * 20, 20), DEST)
    assert spool.bytes <= 12_000
    assert spool.discarded > 0
    kept = spooled(spool)
    assert kept[-1] == rows(799, 1)[0]  # the newest readings are kept
    assert len(kept) + spool.discarded == 800
    assert "spool" in caplog.text and "50% full" in caplog.text and "90% full" in caplog.text
    assert "readings LOST" in caplog.text


def test_writer_batches_into_sqlite_and_reports_status(tmp_path):
    store = open_store(str(tmp_path / "ionlab.sqlite"))
    seen = []
    writer = Writer(store, Spool(tmp_path / "spool", 10**6), batch_s=0.05, on_stored=seen.extend)
    writer.start()
    writer.add(rows(0, 100))
    writer.add(rows(50, 100))  # half of it again: stored once
    assert writer.flush()
    assert writer.stop()
    status = writer.status()
    assert status["database"] == "ok" and status["written"] == 150 and status["backlog"] == 0
    assert status["store_id"] == store.prepare() and status["faults"] == []
    assert status["last_write"] is not None and status["spooled"] == 200
    assert len(seen) == 200
    assert [s["sensor"] for s in store.latest()] == ["k"]
    assert list((tmp_path / "spool").iterdir()) == []  # all stored: nothing left behind
    store.close()


def test_a_full_pending_buffer_drops_the_oldest_and_batches_the_rest(tmp_path, caplog):
    store = open_store(str(tmp_path / "ionlab.sqlite"))
    seen = []
    writer = Writer(store, Spool(tmp_path / "spool", 10**6), batch_s=0.05, max_batch=30,
                    max_pending=100, on_stored=lambda batch: seen.append(len(batch)))
    writer.add(rows(0, 70))  # not started yet: as if stuck in a database call
    with caplog.at_level(logging.ERROR):
        writer.add(rows(70, 80))
    assert "pending buffer full (100), 50 oldest readings LOST" in caplog.text
    writer.start()
    assert writer.flush()
    writer.stop()
    assert writer.dropped == 50 and writer.written == 100 and seen == [30, 30, 30, 10]
    stored = store.series(make_query("k", from_us(T0_US), from_us(T0_US + 10**9)))
    assert [v for _, v in stored] == [float(i) for i in range(50, 150)]
    store.close()


def run_outage(url: str, spool_dir: Path, interrupt, restore,
               spools: bool = True) -> tuple[Writer, int]:
    """Feed readings steadily, interrupt the database mid-way, restore it; returns the writer."""
    writer = Writer(open_store(url, timeout_s=2), Spool(spool_dir, 10**7), batch_s=0.05,
                    retry_s=0.2)
    writer.start()
    n = 0
    for step in range(60):
        writer.add(rows(n, 25))
        n += 25
        if step == 15:
            wait_until(lambda: writer.written > 0, what="first writes")
            interrupt()
        if step == 30 and spools:
            wait_until(lambda: writer.database_ok is False and writer.spool.readings > 0,
                     what="spooling")
        if step == 40:
            restore()
        time.sleep(0.02)
    wait_until(lambda: writer.flush(1) and not writer.spool.readings, what="spool replayed")
    assert writer.stop()
    return writer, n


def test_database_cut_mid_logging_loses_nothing_and_duplicates_nothing(pg_proxy, tmp_path):
    url, proxy, direct = pg_proxy
    upgraded(direct)
    writer, n = run_outage(url, tmp_path / "spool", proxy.cut, proxy.restore)
    values, rolled = stored_indices(direct)
    assert values == list(range(n))
    assert rolled == n
    assert writer.errors >= 1 and writer.dropped == 0
    assert list((tmp_path / "spool").glob("*.spool")) == []


def test_backends_terminated_mid_logging(pg_database, tmp_path):
    upgraded(pg_database)

    def terminate():
        with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'ionlab' AND datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            assert cur.fetchone()[0] >= 1
        conn.close()

    # the connection may be cut mid-write (the batch is spooled) or between writes
    writer, n = run_outage(pg_database, tmp_path / "spool", terminate, lambda: None,
                           spools=False)
    values, rolled = stored_indices(pg_database)
    assert values == list(range(n)) and rolled == n


def test_replaying_what_is_already_stored_changes_nothing(pg_database, tmp_path):
    store = open_store(upgraded(pg_database))
    spool = Spool(tmp_path, 10**6).open()
    spool.append(rows(0, 300), Destination(store.prepare(), store.address))
    store.write(rows(0, 200))
    writer = Writer(store, spool, batch_s=0.02)
    writer.start()
    wait_until(lambda: not spool.readings, what="replay")
    writer.stop()
    values, rolled = stored_indices(pg_database)
    assert values == list(range(300)) and rolled == 300


def test_a_replay_joins_spooled_batches_into_few_writes(pg_database, tmp_path):
    store = open_store(upgraded(pg_database))
    spool = Spool(tmp_path, 10**7).open()
    for k in range(50):  # an outage of 50 batch intervals
        spool.append(rows(k * 100, 100), Destination(None, store.address))
    writer = Writer(store, spool, batch_s=0.02, max_batch=1000)
    writer.start()
    wait_until(lambda: not spool.readings, what="replay")
    writer.stop()
    values, rolled = stored_indices(pg_database)
    assert values == list(range(5000)) and rolled == 5000
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(DISTINCT xmin::text) FROM samples")
        assert cur.fetchone() == (5,)  # one transaction per 1000 readings, not per batch
    conn.close()


@pytest.mark.slow
def test_kill_9_then_restart_loses_at_most_the_current_batch(pg_proxy, tmp_path):
    url, proxy, direct = pg_proxy
    upgraded(direct)
    spool_dir = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    feeder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("feeder.py")), url,
                               str(spool_dir)], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=ROOT)
    acked = -1
    lines = iter(feeder.stdout.readline, "")
    try:
        for count, line in enumerate(line for line in lines if line.startswith("stored")):
            acked = int(line.split()[1])
            if count == 20:
                proxy.cut()  # the next batches go to the spool
            if count == 40:
                break
    finally:
        feeder.send_signal(signal.SIGKILL)
        feeder.wait()
    assert list(spool_dir.glob("*.spool")), "the feeder should have been spooling"
    proxy.restore()
    writer = Writer(open_store(url), Spool(spool_dir, 50 * 2**20), batch_s=0.05)
    writer.start()
    wait_until(lambda: not writer.spool.readings, what="replay after restart")
    writer.stop()
    values, rolled = stored_indices(direct)
    assert values[: acked + 1] == list(range(acked + 1))  # every acknowledged reading
    assert values == list(range(len(values)))  # in order, none twice, no gaps
    assert rolled == len(values)
    assert writer.stop()  # both threads ended


def test_rows_that_can_never_be_stored_are_refused_one_by_one_and_the_rest_stored(tmp_path,
                                                                                  caplog):
    store = open_store(str(tmp_path / "ionlab.sqlite"))
    writer = Writer(store, Spool(tmp_path / "spool", 10**6), batch_s=0.05)
    writer.start()
    bad = [("k", "V", T0_US + 5_000_000, float("nan")), ("k", "V", 1.5, 1.0),
           ("k", "V", 2**64, 1.0), ("k", "V", T0_US + 6_000_000, 10**400), (None, "V", T0_US, 1.0),
           ("k", "V", T0_US), ("k", "V", True, 1.0)]

    class Value(float):  # as a driver's library may hand out (numpy.float64 is one)
        pass

    writer.add(rows(0, 10) + bad + [(s, u, t, Value(v)) for s, u, t, v in rows(10, 10)])
    assert writer.flush(30)
    assert writer.stop()
    assert writer.rejected == len(bad) and writer.errors == 0
    stored = store.series(make_query("k", from_us(T0_US), from_us(T0_US + 10**9)))
    assert [v for _, v in stored] == [float(i) for i in range(20)]
    assert "7 rows can never be stored (e.g. ('k', 'V', 1790000005000000, nan)" in caplog.text
    store.close()
