"""What the logger publishes on the hub once spooled: in order, in chunks, the newest
readings of each sensor per batch (every reading of a polled device)."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from services.config import parse
from services.logger import service as logger_service
from services.logger.queries import to_us
from services.logger.service import PUBLISH_CHUNK, PUBLISH_PER_SENSOR, LoggerService
from tests.waiting import wait_until

SENSORS = ("chamber", "loadlock", "table")


@pytest.fixture
def logger_server(tmp_path, server_thread):
    config = parse(f"""
[logger]
db = "{tmp_path / 'lab.sqlite'}"
spool_dir = "{tmp_path / 'spool'}"
batch_s = 2.0
devices = []
""", "lab.toml")
    return server_thread(lambda hub: [LoggerService(config, hub)])


def follow(srv):
    """A subscription to logger/* noting what each IO-loop iteration brought it."""
    bursts: list[list] = []

    def subscribe():
        sub = srv.hub.subscribe(["logger/*"])
        sub.on_ready(lambda: bursts.append(sub.drain()))
        return sub

    return srv.call(subscribe), bursts


def test_a_batch_of_5000_is_published_whole_in_order_a_chunk_per_iteration(logger_server):
    srv = logger_server
    service = srv.services[0]
    sub, bursts = follow(srv)
    start = datetime.now(UTC) - timedelta(seconds=10)
    many = 5000 // PUBLISH_PER_SENSOR  # sensors, PUBLISH_PER_SENSOR readings each: all published
    sensors = [f"s{k:04d}" for k in range(many)]
    sent = [(sensors[i % many], float(i), start + timedelta(milliseconds=i)) for i in range(5000)]
    service.writer.add([(sensor, "mbar", to_us(at), value) for sensor, value, at in sent])
    wait_until(lambda: service.writer.status()["written"] == 5000, what="one batch of 5000 stored")
    srv.wait_for(lambda: sum(map(len, bursts)) == 5000, what="5000 readings published")
    events = [e for burst in bursts for e in burst]
    assert [(e.data["sensor"], e.data["value"]) for e in events] == \
        [(sensor, value) for sensor, value, _ in sent]
    assert [datetime.fromisoformat(e.data["timestamp"]) for e in events] == \
        [at for _, _, at in sent]
    assert {e.channel for e in events} == {f"logger/{s}" for s in sensors}
    assert max(map(len, bursts)) <= PUBLISH_CHUNK  # the loop ran between the chunks
    assert len(bursts) >= 5000 // PUBLISH_CHUNK
    assert sub.coalesced == 0 and sub.dropped == 0 and service.unpublished == 0


def test_a_burst_of_one_sensor_publishes_its_newest_readings_of_the_batch(logger_server):
    srv = logger_server
    service = srv.services[0]
    sub, bursts = follow(srv)
    start = datetime.now(UTC) - timedelta(seconds=10)
    rows = [(SENSORS[i % 3], "mbar", to_us(start + timedelta(milliseconds=i)), float(i))
            for i in range(3000)]
    service.writer.add(rows)  # one batch: the writer spools what one add queued at once
    wait_until(lambda: service.writer.status()["written"] == 3000, what="the batch stored")
    srv.wait_for(lambda: sum(map(len, bursts)) == 3 * PUBLISH_PER_SENSOR,
                 what="the newest of each sensor published")
    events = [e for burst in bursts for e in burst]
    assert [e.data["value"] for e in events] == \
        [float(i) for i in range(3000 - 3 * PUBLISH_PER_SENSOR, 3000)]
    assert [e.channel for e in events] == [f"logger/{r[0]}" for r in rows[-len(events):]]
    assert service.unpublished == 0


def test_every_reading_of_a_device_polled_many_times_per_batch_is_published(tmp_path,
                                                                            server_thread):
    config = parse(f"""
[devices.gauge]
kind = "tpg"
simulation = true
poll_s = 0.05
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}
[logger]
db = "{tmp_path / 'lab.sqlite'}"
spool_dir = "{tmp_path / 'spool'}"
batch_s = 1.0
""", "lab.toml")
    srv = server_thread(lambda hub: [LoggerService(config, hub)])
    sub, bursts = follow(srv)
    srv.wait_for(lambda: sum(map(len, bursts)) >= 50, timeout=60, what="50 published readings")
    times = [to_us(datetime.fromisoformat(e.data["timestamp"])) for b in bursts for e in b]

    def stored():  # published once spooled: the newest may not be in the database yet
        with sqlite3.connect(tmp_path / "lab.sqlite") as db:
            return [t for (t,) in db.execute(
                "SELECT time FROM samples JOIN sensors ON sensors.id = sensor_id "
                "WHERE name = 'chamber' AND time BETWEEN ? AND ? ORDER BY time",
                (times[0], times[-1]))]

    wait_until(lambda: times[-1] in stored(), timeout=60, what="the published ones stored")
    assert stored() == times
    # a batch that came late (a slow disk, a busy machine) holds more polls: all published
    late = [("chamber", "mbar", times[0] - 1000 * (n + 1), float(n)) for n in range(100)]
    srv.services[0].writer.add(late)
    srv.wait_for(lambda: sum(e.data["unit"] == "mbar" and e.data["value"] in range(100) and
                             to_us(datetime.fromisoformat(e.data["timestamp"])) < times[0]
                             for b in bursts for e in b) == 100, what="all 100 published")


def test_a_backlog_past_its_bound_loses_the_oldest_from_the_hub_only(logger_server, monkeypatch,
                                                                     caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(logger_service, "PUBLISH_BACKLOG", 300)
    srv = logger_server
    service = srv.services[0]
    sub, bursts = follow(srv)
    start = datetime.now(UTC)
    rows = [("chamber", "mbar", to_us(start + timedelta(milliseconds=i)), float(i))
            for i in range(1000)]
    srv.call(lambda: (service._publish(rows[:500]), service._publish(rows[500:])))
    srv.wait_for(lambda: sum(map(len, bursts)) == 300, what="300 readings published")
    values = [e.data["value"] for burst in bursts for e in burst]
    assert values == [float(i) for i in range(700, 1000)]  # the newest, in order
    assert service.unpublished == 700
    assert caplog.text.count("the hub falls behind the stored readings") == 1
