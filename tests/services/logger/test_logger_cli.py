"""`ionlab db upgrade`, `ionlab query` and `ionlab logger` as the real console script."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.logger.postgres import VERSION
from services.logger.queries import make_query, to_us
from services.logger.store import open_store

T0 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_db_upgrade_started_twice_at_once(pg_database, run_cli):
    exe = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))
    procs = [subprocess.Popen([exe, "db", "upgrade", "--db", pg_database], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = {re.fullmatch(rf".*: schema version {VERSION}, store ([0-9a-f-]{{36}})", out.strip())[1]
           for out, _ in outs}
    assert len(ids) == 1  # one identity, made once
    again = run_cli("db", "upgrade", "--db", pg_database)
    assert again.returncode == 0 and again.stdout.strip().endswith(f"store {ids.pop()}")


@pytest.fixture
def filled(store_url):
    store = open_store(store_url)
    store.upgrade()
    store.write([("chamber", "mbar", to_us(T0 + timedelta(minutes=i)), 1e-9 * (1 + i % 7))
                 for i in range(600)])
    yield store_url, store
    store.close()


def test_query_prints_csv_and_json(filled, run_cli):
    url, store = filled
    args = ["query", "chamber", "--db", url, "--start", "2026-02-03T05:00:00+01:00",
            "--end", "2026-02-03T12:00:00Z", "--every", "90min", "--agg", "max"]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "time,value"
    want = store.series(make_query("chamber", "2026-02-03T04:00:00Z", "2026-02-03T12:00:00Z",
                                   "90min", "max"))
    assert lines[1:] == [f"{t.isoformat()},{v!r}" for t, v in want]
    assert lines[1].startswith("2026-02-03T03:00:00+00:00,")  # epoch-aligned 90-minute buckets
    body = json.loads(run_cli(*args, "--format", "json").stdout)
    assert body["unit"] == "mbar" and body["agg"] == "max" and body["every"] == 5400
    assert body["points"] == [[t.isoformat(), v] for t, v in want]


def test_query_refuses_naive_times_and_unknown_sensors(filled, run_cli):
    url, _ = filled
    naive = run_cli("query", "chamber", "--db", url, "--start", "2026-02-03T05:00:00",
                    "--end", "2026-02-03T12:00:00Z")
    assert naive.returncode == 2
    assert "start: time needs a UTC offset" in naive.stderr
    unknown = run_cli("query", "pump", "--db", url, "--start", "2026-02-03T05:00:00Z",
                      "--end", "2026-02-03T12:00:00Z")
    assert unknown.returncode == 1 and "no sensor named 'pump'" in unknown.stderr


def test_logger_command_serves_and_stops_on_sigterm(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text(f"""
[server]
port = 0

[devices.chamber]
kind = "tpg"
simulation = true
poll_s = 0.1
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}

[logger]
batch_s = 0.1
spool_dir = "{tmp_path / 'spool'}"
""")
    exe = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))
    db = tmp_path / "lab.sqlite"
    proc = subprocess.Popen([exe, "logger", "--config", str(config), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "IONLAB_TOKEN": ""})
    try:
        line = proc.stdout.readline()
        port = int(re.search(r":(\d+)/api/v1/series", line).group(1))
        assert f"storing to {db}" in line
        status = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/logger/status") as r:
                status = json.load(r)
            if status["written"] >= 3:
                break
            time.sleep(0.05)
        assert status["written"] >= 3 and status["devices"]["chamber"]["errors"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()
    store = open_store(str(db))
    assert [s["sensor"] for s in store.latest()] == ["chamber"]
    store.close()


def test_analysis_function_returns_a_frame_with_pandas_and_rows_without(filled, monkeypatch):
    import pandas

    from services.logger.analysis import series

    url, store = filled
    args = (url, "chamber", "2026-02-03T04:00:00Z", "2026-02-03T06:00:00Z")
    want = store.series(make_query("chamber", "2026-02-03T04:00:00Z", "2026-02-03T06:00:00Z",
                                   "30min", "count"))
    assert [v for _, v in want] == [25, 30, 30, 30]
    frame = series(*args, every="30min", agg="count")
    assert isinstance(frame, pandas.DataFrame) and list(frame.columns) == ["chamber"]
    assert list(frame.index) == [t for t, _ in want]
    assert isinstance(frame.index, pandas.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert list(frame["chamber"]) == [v for _, v in want]
    monkeypatch.setitem(sys.modules, "pandas", None)  # as on a machine without pandas
    assert series(*args, every="30min", agg="count") == want
