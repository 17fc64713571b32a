"""The real `ionlab logger`, `ionlab run` and `ionlab wavemeter` at start: databases that can
never be written (exit 2, the fix in one line), one that is only away (an outage), one writer
per store and spool, neighbours that share a folder or a database."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from services.logger.spool import Destination, Spool, encode
from services.logger.store import open_store
from tests.waiting import wait_until

from .test_logger_spool import rows, stored_values, undecodable
from .test_logger_writer import upgraded

EXE = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))
GAUGE = """
[devices.{name}]
kind = "tpg"
simulation = true
poll_s = 0.1
port = "/dev/ttyUSB0"
gauges = {{ 1 = "{sensor}" }}
"""
WAVEMETER = """
[devices.wavemeter]
kind = "highfinesse"
simulation = true
poll_s = 0.05
channels = { 1 = "397" }
"""


def lab(folder: Path, db: str | None = None, spool: str | None = None, name: str = "chamber",
        sensor: str = "chamber", extra: str = "") -> Path:
    """A lab config: one simulated gauge, a logger, the server on a free port."""
    config = folder / f"{name}.toml"
    logger = "".join(f'{k} = "{v}"\n' for k, v in (("db", db), ("spool_dir", spool)) if v)
    config.write_text(f"[server]\nport = 0\n{GAUGE.format(name=name, sensor=sensor)}\n"
                      f"[logger]\nbatch_s = 0.1\n{logger}{extra}", encoding="utf-8")
    return config


class Running:
    """A serving command in a subprocess: its port once it prints where it serves."""

    def __init__(self, *args, cwd: Path):
        self.log = cwd / f"run-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([EXE, *args], cwd=cwd, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env={**os.environ, "IONLAB_TOKEN": ""})
        self.port = None

        def serving():
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.text()}"
            found = re.search(r"http://[^:/\s]+:(\d+)", self.text())
            self.port = int(found[1]) if found else None
            return self.port

        wait_until(serving, 60, f"{args} to serve")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return json.load(r)

    def health(self):
        try:
            return self.get("/healthz")
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def running():
    started = []

    def start(*args, cwd):
        started.append(Running(*args, cwd=cwd))
        return started[-1]

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def refused(run_cli, *args, cwd=None, alone: bool = True) -> str:
    """The one line a refused start prints (exit 2; with `alone`, nothing else on stderr)."""
    done = run_cli(*args, cwd=cwd)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 or not alone, done.stderr
    return lines[-1]


def other_db(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


# -- databases that can never be written, and one that is away ------------------------


def test_a_database_that_does_not_exist_is_exit_2_with_createdb(pg_url, tmp_path, run_cli):
    url = other_db(pg_url, "/ionlab_no_such_database")
    line = refused(run_cli, "logger", "--config", str(lab(tmp_path)), "--db", url)
    host, port = urlsplit(pg_url).hostname, urlsplit(pg_url).port
    assert line == (f"ionlab: config error: --db: PostgreSQL has no database "
                    f"'ionlab_no_such_database' ({url}): create it with `createdb -h {host} -p "
                    f"{port} ionlab_no_such_database`, then `ionlab db upgrade --db {url}`")
    upgrade = run_cli("db", "upgrade", "--db", url)
    assert upgrade.returncode == 2 and "createdb" in upgrade.stderr


def test_a_refused_login_is_exit_2_naming_what_to_check(pg_url, tmp_path, run_cli):
    parts = urlsplit(pg_url)
    url = urlunsplit(parts._replace(netloc=f"nosuchrole:secret@{parts.hostname}:{parts.port}"))
    line = refused(run_cli, "logger", "--config", str(lab(tmp_path, db=url)))
    assert line.startswith(f"ionlab: config error: {tmp_path}/chamber.toml: logger.db: "
                           "PostgreSQL refused the login (postgresql://nosuchrole:***@")
    assert 'role "nosuchrole" does not exist; check the user and password' in line
    assert "secret" not in line


def test_a_database_without_the_schema_is_exit_2_with_db_upgrade(pg_database, tmp_path,
                                                                  run_cli):
    config = lab(tmp_path, db=pg_database)
    line = refused(run_cli, "logger", "--config", str(config))
    assert line == (f"ionlab: config error: {config}: logger.db: {pg_database} has no ionlab "
                    f"schema: create it with `ionlab db upgrade --db {pg_database}`")
    assert run_cli("db", "upgrade", "--db", pg_database).returncode == 0


@pytest.mark.parametrize("content, message", [
    (b"\x00not a database at all" * 100, "file is not a database"),
    (None, "holds tables but not an ionlab store"),
])
def test_an_sqlite_file_that_is_not_an_ionlab_store_is_exit_2(tmp_path, run_cli, content,
                                                              message):
    db = tmp_path / "notes.sqlite"
    if content is None:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE notes (text)")
    else:
        db.write_bytes(content)
    line = refused(run_cli, "logger", "--config", str(lab(tmp_path, db=str(db))))
    assert line.startswith(f"ionlab: config error: {tmp_path}/chamber.toml: logger.db: SQLite "
                           f"{db}") and message in line
    assert db.read_bytes() == content if content else True  # left as it was


def test_a_database_away_at_start_is_an_outage_the_readings_wait_in_the_spool(
        tmp_path, running):
    logger = running("logger", "--config", str(lab(tmp_path, spool=str(tmp_path / "spool"))),
                     "--db", "postgresql://127.0.0.1:1/lab", cwd=tmp_path)
    wait_until(lambda: logger.get("/api/v1/logger/status")["spooled_readings"] >= 5, 30,
             "readings to wait in the spool")
    status, health = logger.get("/api/v1/logger/status"), logger.health()
    assert status["database"] == "unreachable" and status["written"] == 0
    assert not health["ok"] and health["services"]["logger"]["problems"][0].startswith(
        "database unreachable: PostgreSQL unreachable: connection to server at")
    assert logger.stop() == 0
    assert Spool(tmp_path / "spool", 10**8).open(readonly=True).readings >= 5


# -- one writer per store and spool -------------------------------------------------------


def test_a_second_logger_or_lab_on_the_same_store_and_spool_is_refused_while_the_first_logs(
        tmp_path, running, run_cli):
    config = lab(tmp_path, db=str(tmp_path / "var/lab.sqlite"), spool=str(tmp_path / "var/spool"),
                 extra=WAVEMETER)
    first = running("logger", "--config", str(config), cwd=tmp_path)
    wait_until(lambda: first.get("/api/v1/logger/status")["written"] > 0, 30, "first writes")
    pid = first.proc.pid
    line = refused(run_cli, "logger", "--config", str(config))
    assert line.startswith(f"ionlab: config error: {config}: logger.spool_dir: {tmp_path}/var/"
                           f"spool/spool.lock is held by another running ionlab (PID {pid}, ")
    assert line.endswith("): stop that one first, or give this logger its own spool_dir")
    line = refused(run_cli, "run", "--config", str(config), "--port", "0")
    assert f"held by another running ionlab (PID {pid}, " in line
    own_spool = lab(tmp_path, db=str(tmp_path / "var/lab.sqlite"),
                    spool=str(tmp_path / "other-spool"), name="second", sensor="second")
    line = refused(run_cli, "logger", "--config", str(own_spool))
    assert line.startswith(f"ionlab: config error: {own_spool}: logger.db: {tmp_path}/var/"
                           f"lab.sqlite.lock is held by another running ionlab (PID {pid}, ")
    before = first.get("/api/v1/logger/status")["written"]
    wait_until(lambda: first.get("/api/v1/logger/status")["written"] > before, 30,
             "the first logger to go on writing")
    assert first.health()["ok"] and first.stop() == 0


def test_a_wavemeter_server_beside_a_logger_in_one_folder_both_run(tmp_path, running, run_cli):
    config = lab(tmp_path, name="lab", extra=WAVEMETER)  # var/ionlab.sqlite, spool, locks.json
    logger = running("logger", "--config", str(config), cwd=tmp_path)
    wavemeter = running("wavemeter", "--config", str(config), cwd=tmp_path)
    wait_until(lambda: logger.get("/api/v1/logger/status")["written"] > 0, 30, "the logger writes")
    wait_until(lambda: wavemeter.get("/api/v1/channels")[0]["status"] == "ok", 30, "a reading")
    assert logger.health()["ok"] and wavemeter.health()["ok"]
    line = refused(run_cli, "wavemeter", "--config", str(config), "--port", "0", cwd=tmp_path,
                   alone=False)  # the wavemeter service has started (and logged) by then
    assert line.startswith(f"ionlab: config error: {config}: locks.state_file: stop that one "
                           "first, or give this one its own state_file: var/locks.json.lock is "
                           f"held by another running ionlab (PID {wavemeter.proc.pid}, ")
    assert logger.stop() == 0 and wavemeter.stop() == 0


def test_many_loggers_share_one_postgresql_each_with_its_own_spool(pg_database, tmp_path,
                                                                    running):
    upgraded(pg_database)
    loggers = [running("logger", "--config",
                       str(lab(tmp_path, db=pg_database, spool=str(tmp_path / f"spool{k}"),
                               name=f"pc{k}", sensor=f"gauge{k}")), cwd=tmp_path)
               for k in range(3)]
    store = open_store(pg_database)
    wait_until(lambda: {"gauge0", "gauge1", "gauge2"} <= {s["sensor"] for s in store.latest()}, 30,
             "every logger's gauge stored")
    assert all(r.health()["ok"] for r in loggers)
    assert len({r.get("/api/v1/logger/status")["store_id"] for r in loggers}) == 1
    assert [r.stop() for r in loggers] == [0, 0, 0]
    store.close()


# -- a spool that holds damage does not keep the lab from starting ----------------------


def test_a_bad_record_is_set_aside_another_stores_kept_and_the_logger_runs(tmp_path, running):
    db = tmp_path / "lab.sqlite"
    store = open_store(str(db))
    mine = Destination(store.prepare(), store.address)
    folder = tmp_path / "spool"
    folder.mkdir()
    elsewhere = Destination("77aa", "postgresql://db.lab/other")
    (folder / "000000000001.spool").write_bytes(
        encode(rows(0, 5), mine) + undecodable(mine) + encode(rows(5, 5), mine))
    (folder / "000000000002.spool").write_bytes(encode(rows(100, 4, "theirs"), elsewhere))
    logger = running("logger", "--config", str(lab(tmp_path, db=str(db), spool=str(folder))),
                     cwd=tmp_path)
    wait_until(lambda: logger.get("/api/v1/logger/status")["spool_quarantined"] == 1, 30,
             "the bad record to be set aside")
    assert stored_values(store, "k") == list(range(10))
    assert [p.suffix for p in (folder / "quarantine").iterdir()] == [".undecodable"]
    assert "undecodable: sensor index 7 out of range" in logger.text()
    assert (f"spool {folder} holds 4 readings for another store, postgresql://db.lab/other "
            "(store 77aa): they are kept") in logger.text()
    assert logger.get("/api/v1/logger/status")["spool_foreign_readings"] == 4
    assert logger.stop() == 0
    assert sorted(p.name for p in folder.iterdir()) == ["000000000002.spool", "quarantine",
                                                        "spool.lock"]
    store.close()


def test_a_spool_an_older_ionlab_wrote_is_kept_until_an_operator_adopts_it(tmp_path, running,
                                                                           run_cli):
    from bench.bench_spool import OldSpool  # the format before, as the benchmark's baseline

    db, folder = tmp_path / "lab.sqlite", tmp_path / "spool"
    folder.mkdir()
    old = OldSpool(folder)
    for k in range(4):
        old.append(rows(k * 25, 25, "older"))
    config = lab(tmp_path, db=str(db), spool=str(folder))
    logger = running("logger", "--config", str(config), cwd=tmp_path)
    wait_until(lambda: logger.get("/api/v1/logger/status")["written"] > 0, 30, "the logger writes")
    assert logger.get("/api/v1/logger/status")["spool_foreign_readings"] == 100
    assert (f"spool {folder} holds 100 readings for another store, an older ionlab's spool, "
            f"which recorded no store: they are kept (store them with `ionlab spool replay "
            f"--spool-dir {folder} --adopt`)") in logger.text()
    assert logger.stop() == 0
    adopted = run_cli("spool", "replay", "--config", str(config), "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert "100 readings of 100 replayed" in adopted.stdout
    store = open_store(str(db))
    assert stored_values(store, "older") == list(range(100))
    assert not old.path.exists()
    store.close()
