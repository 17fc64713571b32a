"""The logger service on a real server: polling, skipping, publishing, the HTTP API, the CLI."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from drivers import registry
from drivers.base import Device, Reading, Status, utcnow
from services.config import ConfigError, parse
from services.logger.service import LoggerService
from services.logger.settings import LoggerSettings
from services.logger.sqlite import SqliteStore
from services.logger.store import open_store
from tests.waiting import wait_until


class SlowDevice(Device):
    """Takes a second per read: it must delay nobody else."""

    def _read(self):
        time.sleep(1.0)
        return [Reading("slow", 1.0, "s", utcnow())]


class OddDevice(Device):
    """Reads NaN, inf (both status "error"), a not-ok status and one good value each time."""

    def _read(self):
        now = utcnow()
        return [Reading("odd nan", math.nan, "V", now), Reading("odd inf", math.inf, "V", now),
                Reading("odd off", 0.0, "V", now, Status.SENSOR_OFF),
                Reading("odd good", 2.5, "V", now)]


TEST_KINDS = {"test-slow": (f"{__name__}:SlowDevice",) * 2, "test-odd": (f"{__name__}:OddDevice",) * 2}


@pytest.fixture(autouse=True)
def test_kinds(monkeypatch):
    """The two test devices, as kinds a config can name."""
    monkeypatch.setattr(registry, "KINDS", {**registry.KINDS, **TEST_KINDS})


def lab_config(tmp_path, db: str) -> str:
    return f"""
[devices.chamber]
kind = "tpg"
simulation = true
poll_s = 0.05
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}

[devices.temperatures]
kind = "ls218"
simulation = true
poll_s = 0.05
port = "/dev/ttyUSB1"
sensors = {{ 1 = "table", 2 = "water in" }}

[devices.slow]
kind = "test-slow"
poll_s = 0.05

[devices.odd]
kind = "test-odd"
poll_s = 0.05

[logger]
db = "{db}"
batch_s = 0.05
spool_dir = "{tmp_path / 'spool'}"

[logger.sensors.chamber]
description = "main chamber gauge"
"""


def upgraded(url: str) -> str:
    store = open_store(url)
    store.upgrade()
    store.close()
    return url


@pytest.fixture
def logger_server(store_url, tmp_path, server_thread):  # the database outlives the server
    config = parse(lab_config(tmp_path, upgraded(store_url)), "lab.toml")
    return server_thread(lambda hub: [LoggerService(config, hub)])


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def test_logger_polls_stores_publishes_and_serves(logger_server, api, caplog):
    caplog.set_level(logging.WARNING)
    srv = logger_server
    sub = srv.call(srv.hub.subscribe, ["logger/*"])
    service = srv.services[0]
    srv.wait_for(lambda: service.status()["devices"]["slow"]["reads"] >= 2, what="two slow reads")
    srv.wait_for(lambda: service.writer.status()["pending"] == 0, what="flush")
    status = api.http("GET", srv.url + "/api/v1/logger/status")[1]
    assert status["devices"]["chamber"]["reads"] >= 10  # the slow device delayed only itself
    assert status["devices"]["chamber"]["state"] == "ok"
    assert status["skipped_status"] >= 6  # nan, inf and "sensor off", every read
    assert status["database"] == "ok" and status["errors"] == 0 and status["last_write"]
    assert status["spool_foreign_readings"] == 0 and status["spool_quarantined"] == 0
    assert "odd nan: not storing a reading with status error (value nan" in caplog.text
    assert caplog.text.count("odd inf: not storing") == 1  # warned once, counted always
    health = api.http("GET", srv.url + "/healthz")[1]
    assert health["ok"] and health["services"]["logger"]["problems"] == []

    sensors = {s["sensor"]: s for s in api.http("GET", srv.url + "/api/v1/sensors")[1]["sensors"]}
    assert set(sensors) == {"chamber", "table", "water in", "slow", "odd good"}
    assert sensors["chamber"]["unit"] == "mbar"
    assert sensors["chamber"]["description"] == "main chamber gauge"

    events = srv.call(sub.drain)
    assert service.writer.flush(30)  # an event leaves once spooled; the store has it after
    assert {e.channel for e in events} >= {"logger/chamber", "logger/table", "logger/odd good"}
    chamber = [e.data for e in events if e.channel == "logger/chamber"]
    assert set(chamber[0]) == {"sensor", "value", "unit", "timestamp", "status"}
    start, end = chamber[0]["timestamp"], chamber[-1]["timestamp"]
    code, ctype, body = get(f"{srv.url}/api/v1/series?" + urlencode(
        {"sensor": "chamber", "start": start, "end": end}))
    points = json.loads(body)["points"]
    assert code == 200 and ctype.startswith("application/json")
    assert points == [[d["timestamp"], d["value"]] for d in chamber[:-1]]  # end is exclusive

    latest = {r["sensor"]: r for r in api.http("GET", srv.url + "/api/v1/latest")[1]["latest"]}
    last = [e.data for e in events if e.channel == "logger/odd good"][-1]
    assert latest["odd good"]["value"] == 2.5 and latest["odd good"]["unit"] == "V"
    assert latest["odd good"]["time"] >= last["timestamp"]

    code, ctype, csv = get(f"{srv.url}/api/v1/series?" + urlencode(
        {"sensor": "odd good", "start": start, "end": end.replace("+00:00", "Z"), "every": "1h",
         "agg": "count", "format": "csv"}))
    assert ctype.startswith("text/csv")
    lines = csv.splitlines()
    assert lines[0] == "time,value"
    assert sum(int(line.split(",")[1]) for line in lines[1:]) >= 1


@pytest.mark.parametrize("query,status,field,message", [
    ("sensor=chamber&start=2026-01-01T00:00:00&end=2026-01-02T00:00:00Z", 400, "start",
     "time needs a UTC offset"),
    ("sensor=chamber&start=2026-01-01T00:00:00Z", 400, "end", "end: required"),
    ("sensor=chamber&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&agg=median&every=1h",
     400, "agg", "expected one of avg"),
    ("sensor=chamber&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&format=xml", 400,
     "format", "expected csv or json"),
    ("sensor=nothing&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z", 404, "sensor",
     "no sensor named 'nothing'"),
])
def test_series_errors_name_the_field(server_thread, tmp_path, api, query, status, field,
                                      message):
    config = parse(f'[logger]\ndb = "{tmp_path}/db.sqlite"\nspool_dir = "{tmp_path}/spool"')
    srv = server_thread(lambda hub: [LoggerService(config, hub)])
    code, body, _ = api.http("GET", f"{srv.url}/api/v1/series?{query}")
    assert code == status
    assert body["field"] == field and message in body["error"]


def test_logger_settings_errors_name_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"lab.toml: logger.retension: unknown key"):
        LoggerSettings.from_config(parse('[logger]\nretension = "1d"', "lab.toml"))
    with pytest.raises(ConfigError, match=r"lab.toml: logger.retention: expected a duration"):
        LoggerSettings.from_config(parse('[logger]\nretention = "forever"', "lab.toml"))
    with pytest.raises(ConfigError, match=r"logger.devices: no device named 'pump'"):
        LoggerSettings.from_config(parse('[logger]\ndevices = ["pump"]', "lab.toml"))
    with pytest.raises(ConfigError, match=r"logger.sensors.chamber.retention: expected a string"):
        LoggerSettings.from_config(parse("[logger.sensors.chamber]\nretention = 5", "lab.toml"))
    settings = LoggerSettings.from_config(parse("", "lab.toml"), "postgresql://x/y")
    assert settings.db == "postgresql://x/y" and settings.retention is None
    assert settings.timeout_s == 5.0 and settings.batch_s == 1.0


def test_ingest_is_safe_from_many_threads(tmp_path):
    config = parse(f'[logger]\ndb = "{tmp_path}/db.sqlite"\nspool_dir = "{tmp_path}/spool"')
    service = LoggerService(config, hub=None)
    base = utcnow()

    def feed(k):
        for i in range(500):
            service.ingest(Reading(f"s{k}", float(i), "V", base.replace(microsecond=i)))

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert service.writer.status()["pending"] == 2000
    service.writer.start()
    assert service.writer.flush()
    service.writer.stop()
    assert service.writer.written == 2000


class DyingDevice(Device):
    """A driver that dies (SystemExit) on every read while `dying` is set."""

    dying = False

    def _read(self):
        if DyingDevice.dying:
            raise SystemExit("the driver called exit")
        return [Reading("dying", 1.0, "V", utcnow())]


class DyingStore(SqliteStore):
    """A real SQLite store whose writes kill the writer's thread while `dying` is set."""

    dying = True

    def write(self, rows):
        if self.dying:
            raise SystemExit("simulated crash in a write")
        return super().write(rows)


def test_a_writer_thread_or_poller_that_dies_is_started_again_and_unhealthy_meanwhile(
        server_thread, api, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.KINDS, "test-dying", (f"{__name__}:DyingDevice",) * 2)
    config = parse(f"""
[devices.dying]
kind = "test-dying"
poll_s = 0.05
[logger]
db = "{tmp_path}/lab.sqlite"
spool_dir = "{tmp_path}/spool"
batch_s = 0.05
""")
    store = DyingStore(str(tmp_path / "lab.sqlite"))

    def services(hub):
        service = LoggerService(config, hub)
        service.store = service.writer.store = store
        return [service]

    srv = server_thread(services)
    service = srv.services[0]

    def health():
        code, body, _ = api.http("GET", srv.url + "/healthz")
        return code, body["services"]["logger"]

    srv.wait_for(lambda: service.writer.spooled >= 20 and service.writer.problems(),
                 what="the storer to die while readings are spooled")
    code, logger = health()
    assert code == 503 and not logger["ok"]
    assert "writer storer thread died (SystemExit: simulated crash in a write)" in logger["problems"]
    assert service.status()["faults"] == logger["problems"]
    store.dying = False  # the next storer, started within a second, gets through
    srv.wait_for(lambda: not service.writer.problems() and service.writer.flush(0.1), 30,
                 "the storer to run again and store the spool")
    spooled = service.writer.spooled
    code, logger = health()
    assert code == 200 and logger["problems"] == []
    with sqlite3.connect(tmp_path / "lab.sqlite") as db:  # every spooled reading got stored
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] >= spooled
    assert service.writer.dropped == 0

    DyingDevice.dying = True
    try:
        wait_until(lambda: health()[0] == 503, what="the poller to die")
        assert "poller of dying died (SystemExit: the driver called exit)" in health()[1]["problems"]
    finally:
        DyingDevice.dying = False
    wait_until(lambda: health()[0] == 200, what="the poller to run again")
    reads = service.status()["devices"]["dying"]["reads"]
    srv.wait_for(lambda: service.status()["devices"]["dying"]["reads"] > reads, what="reads")


@pytest.mark.slow
def test_a_network_gauge_that_drops_and_refuses_is_reported_and_polled_again(
        server_thread, api, tmp_path):
    from tests.drivers.fakes import FakeTPG, TcpPort

    with TcpPort(FakeTPG()) as port:
        config = parse(f"""
[devices.gauge]
kind = "tpg"
poll_s = 0.1
port = "{port.url}"
gauges = {{ 1 = "chamber" }}
[logger]
db = "{tmp_path}/lab.sqlite"
spool_dir = "{tmp_path}/spool"
batch_s = 0.1
""")
        srv = server_thread(lambda hub: [LoggerService(config, hub)])
        service = srv.services[0]

        def gauge():
            return api.http("GET", srv.url + "/api/v1/logger/status")[1]["devices"]["gauge"]

        srv.wait_for(lambda: service.status()["devices"]["gauge"]["reads"] >= 3, what="readings")
        refused_at = utcnow()
        port.refuse()  # the controller reboots: the connection closes, connecting is refused
        srv.wait_for(lambda: service.status()["devices"]["gauge"]["state"] == "error",
                     what="the error")
        state = gauge()
        assert state["state"] == "error" and state["error_since"] >= refused_at.isoformat()
        assert "gauge: cannot" in state["last_error"]
        code, health, _ = api.http("GET", srv.url + "/healthz")
        logger = health["services"]["logger"]
        assert code == 503 and logger["devices_in_error"]["gauge"]["since"] == state["error_since"]
        assert any(p.startswith(f"device gauge in error since {state['error_since']}: ")
                   for p in logger["problems"])
        time.sleep(max(0.0, 10 - (utcnow() - refused_at).total_seconds()))  # refused for 10 s
        assert gauge()["state"] == "error" and "reconnecting in" in gauge()["last_error"]
        port.listen()
        back_at = utcnow()
        srv.wait_for(lambda: service.status()["devices"]["gauge"]["state"] == "ok", 30,
                     "readings again")
        resumed_s = (utcnow() - back_at).total_seconds()
        print(f"\ngauge polled again {resumed_s:.2f} s after it answered again "
              f"(refused for 10 s; backoff 0.5 s doubling to 10 s)")
        assert resumed_s < 10 + 2  # within the backoff (at most 10 s), plus a poll
        assert api.http("GET", srv.url + "/healthz")[0] == 200
        srv.wait_for(lambda: service.writer.flush(0.1), what="the writes")
        latest = {r["sensor"]: r for r in api.http("GET", srv.url + "/api/v1/latest")[1]["latest"]}
        assert latest["chamber"]["time"] > back_at.isoformat()
        assert port.accepted >= 2
