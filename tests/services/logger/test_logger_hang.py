"""A database that accepts connections but never answers (a hung server, a dead NAT path):
detected within the timeout, and kill -9 in the middle of the hang loses one batch interval;
the watchdog's probe, and a slow statement on a live server left alone."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from services.logger.spool import Spool
from services.logger.store import StoreUnavailable, open_store
from services.logger.writer import Writer
from tests.waiting import wait_until

from .test_logger_writer import upgraded

ROOT = Path(__file__).resolve().parents[3]
BATCH_S = 1.0
TIMEOUT_S = 2.0
HANG_S = 20.0
SLACK_S = 1.0  # an fsync and the scheduling of a busy machine


def lines_of(proc) -> queue.Queue:
    """(monotonic time, line) of each line the process prints, as it prints them."""
    out: queue.Queue = queue.Queue()

    def read():
        for line in iter(proc.stdout.readline, ""):
            out.put((time.monotonic(), line.strip()))

    threading.Thread(target=read, daemon=True).start()
    return out


def wait_line(lines: queue.Queue, text: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        at, line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if line == text:
            return at


@pytest.mark.slow
def test_a_hung_database_is_detected_and_kill_9_in_the_hang_loses_one_interval(pg_proxy,
                                                                                tmp_path):
    url, proxy, direct = pg_proxy
    upgraded(direct)
    spool_dir = tmp_path / "spool"
    feeder = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("feeder.py")), url, str(spool_dir),
         "--live", "--batch-s", str(BATCH_S), "--timeout-s", str(TIMEOUT_S)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    try:
        lines = lines_of(feeder)
        wait_line(lines, "database True")
        hung_at = time.monotonic()
        proxy.hang()
        detected_at = wait_line(lines, "database False", HANG_S)
        time.sleep(max(0.0, hung_at + HANG_S / 2 - time.monotonic()))
        killed = datetime.now(UTC)
        feeder.send_signal(signal.SIGKILL)
        feeder.wait()
    finally:
        if feeder.poll() is None:
            feeder.kill()
            feeder.wait()
    time.sleep(max(0.0, hung_at + HANG_S - time.monotonic()))
    proxy.resume()
    writer = Writer(open_store(url), Spool(spool_dir, 50 * 2**20), batch_s=0.05)
    writer.start()
    wait_until(lambda: writer.spool.readings == 0 and writer.database_ok, 60, "the replay")
    assert writer.stop()
    with psycopg2.connect(direct) as conn, conn.cursor() as cur:
        cur.execute("SELECT time, value FROM readings WHERE sensor = 'k' ORDER BY time")
        stored = cur.fetchall()
    conn.close()
    values = [int(v) for _, v in stored]
    assert values == list(range(len(values)))  # no gap, none twice, in order
    acked = max(int(line.split()[1]) for _, line in list(lines.queue) if line.startswith("stored"))
    assert values[-1] >= acked  # everything made durable before the kill is there
    lost_s = (killed - stored[-1][0]).total_seconds()
    detect_s = detected_at - hung_at
    print(f"\nhang detected after {detect_s:.2f} s (timeout {TIMEOUT_S} s, batch {BATCH_S} s); "
          f"kill -9 after {HANG_S / 2:.0f} s of hang lost {lost_s:.2f} s of readings")
    assert detect_s <= BATCH_S + TIMEOUT_S + SLACK_S
    assert 0 <= lost_s <= BATCH_S + SLACK_S


def test_the_probe_tells_a_live_server_from_a_silent_or_refusing_one(pg_url):
    import socket
    from urllib.parse import urlsplit

    from services.logger.watchdog import probe

    parts = urlsplit(pg_url)
    assert probe(parts.hostname, parts.port, 2.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        began = time.monotonic()
        assert not probe("127.0.0.1", silent.getsockname()[1], 0.5)
        assert time.monotonic() - began < 5  # gave up after its timeout, not at TCP's
    assert not probe("127.0.0.1", 1, 0.5)  # refused


def test_a_slow_statement_on_a_live_server_is_not_cut(pg_database):
    """Half the timeout without an answer, but the server answers the probe: busy, not hung."""
    store = open_store(upgraded(pg_database), timeout_s=1.0)
    conn = store._conn()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_sleep(2.5), 42")
        assert cur.fetchone()[1] == 42
    conn.commit()
    assert store.watchdog.cuts == 0
    store.close()


def test_a_statement_the_server_never_answers_is_cut_within_the_timeout(pg_proxy):
    url, proxy, direct = pg_proxy
    upgraded(direct)
    store = open_store(url, timeout_s=1.0)
    store.prepare()
    proxy.hang()
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="did not answer within 1 s"):
        store.prepare()  # a reconnect would wait for libpq's connect_timeout, not this
    took = time.monotonic() - began
    proxy.resume()
    assert store.watchdog.cuts == 1 and took < 1.0 + SLACK_S, took
    store.close()
