"""The alarm service in a real server, fed through the real logger: API, RPC, token,
history in PostgreSQL and SQLite, states across restarts, failures that block nothing."""

from __future__ import annotations

import logging
import math
import socket
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from drivers.base import Reading
from services.alarms.history import AlarmHistory
from services.alarms.service import AlarmService, catalog_of
from services.config import parse
from services.logger.queries import to_us
from services.logger.service import LoggerService
from services.web.rpc import UNAUTHORIZED
from tests.waiting import wait_until

from .conftest import Mailbox

LAB = """
[logger]
db = "{db}"
spool_dir = "{tmp}/spool"
batch_s = {batch_s}
retry_s = 0.2
devices = []
[logger.sensors.chamber]
description = "main chamber gauge"
[logger.sensors.loadlock]
[notify.oncall]
email = "oncall@lab.example"
smtp = "smtp://127.0.0.1:{smtp_port}"
from = "ionlab@lab.example"
group_s = 0
retry_max_s = 0.2
timeout_s = {timeout_s}

[[alarms]]
name = "chamber pressure"
sensor = "chamber"
above = 1e-9
clear_below = 5e-10
for_s = {for_s}
severity = "critical"
notify = ["oncall"]
message = "chamber at {{value:.2e}} {{unit}}"

[[alarms]]
name = "gauges"
sensor = "*lock"
above = 1e-5

[[alarms]]
name = "database"
event = "spooling"
"""


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("pg_logger_db")
    return str(tmp_path / "lab.sqlite")


class Lab:
    """A logger and the alarms; with `from_hub` the alarms take readings from the hub's
    ``logger/*`` channels, as they do with no logger of their own."""

    def __init__(self, server_thread, api, config, from_hub=False):
        self.api, self.config, self.from_hub = api, config, from_hub
        self.srv = server_thread(self.services)

    def services(self, hub):
        self.logger = LoggerService(self.config, hub)
        if self.from_hub:
            self.alarms = AlarmService(self.config, hub, catalog=catalog_of(self.config, self.logger),
                                       history=AlarmHistory(self.logger.store), tick_s=0.05)
        else:
            self.alarms = AlarmService(self.config, hub, self.logger, tick_s=0.05)
        self.events = []
        return [self.logger, self.alarms]

    def read(self, sensor: str, value: float, at: datetime | None = None) -> None:
        self.logger.ingest(Reading(sensor, value, "mbar", at or datetime.now(UTC)))

    def alarm(self, name: str) -> dict:
        return {a["name"]: a for a in self.get("/api/v1/alarms")["alarms"]}[name]

    def get(self, path: str):
        status, body, _ = self.api.http("GET", self.srv.url + path)
        assert status == 200, body
        return body

    def post(self, path: str, body, token=True):
        status, answer, _ = self.api.http("POST", self.srv.url + path, body,
                                          token=self.api.token if token is True else token)
        return status, answer

    def wait_state(self, name: str, state: str):
        wait_until(lambda: self.alarm(name)["state"] == state,
                   what=lambda: f"{name} to be {state} (is {self.alarm(name)['state']})")


def lab_config(tmp_path, db, smtp_port=1, for_s=0.3, timeout_s=5.0, batch_s=0.05):
    return parse(LAB.format(db=db, tmp=tmp_path.as_posix(), smtp_port=smtp_port, for_s=for_s,
                            timeout_s=timeout_s, batch_s=batch_s), "lab.toml")


def test_fires_stores_and_comes_back_after_a_restart(db_url, mailbox, server_thread, api,
                                                     tmp_path):
    config = lab_config(tmp_path, db_url, mailbox.port)
    lab = Lab(server_thread, api, config)
    lab.srv.call(lambda: lab.srv.hub.subscribe(["alarm/*"]))  # published even to nobody
    seen = []
    sub = lab.srv.call(lambda: lab.srv.hub.subscribe(["alarm/chamber pressure"]))

    async def follow():
        async for event in sub:
            seen.append(event.data["state"])

    lab.srv.loop.call_soon_threadsafe(lambda: lab.srv.loop.create_task(follow()))
    started = datetime.now(UTC)
    lab.read("chamber", 1e-10)
    lab.read("chamber", 3e-9)
    lab.wait_state("chamber pressure", "firing")
    wait_until(lambda: mailbox.messages, what="the e-mail")
    firing = lab.alarm("chamber pressure")
    assert firing["message"] == "chamber at 3.00e-09 mbar"
    assert firing["value"] == 3e-9 and firing["severity"] == "critical"
    wait_until(lambda: seen[-2:] == ["pending", "firing"], what="the hub events")
    body = mailbox.bodies()[0]
    assert "chamber at 3.00e-09 mbar" in body and "3e-09 mbar" in body  # the recent values

    # acknowledge needs the token, a name, and a firing alarm
    assert lab.post("/api/v1/alarms/ack", {"alarm": "chamber pressure", "who": "ana"},
                    token=None)[0] == 401
    assert lab.post("/api/v1/alarms/ack", {"alarm": "chamber pressure"}) == \
        (400, {"error": "who: required", "field": "who"})
    status, answer = lab.post("/api/v1/alarms/ack", {"alarm": "chamber", "who": "ana"})
    assert status == 404 and "no alarm or rule named 'chamber'" in answer["error"]
    status, answer = lab.post("/api/v1/alarms/ack", {"alarm": "gauges/loadlock", "who": "ana"})
    assert status == 409  # known from the start: the logger declares its sensor
    status, answer = lab.post("/api/v1/alarms/ack", {"alarm": "database", "who": "ana"})
    assert (status, answer["error"]) == (409, "database is ok; only a firing alarm can be "
                                         "acknowledged")
    status, answer = lab.post("/api/v1/alarms/ack", {"alarm": "chamber pressure", "who": "ana",
                                                     "why": "on my way", "extra": 1})
    assert (status, answer["field"]) == (400, "extra")
    status, answer = lab.post("/api/v1/alarms/ack", {"alarm": "chamber pressure", "who": "ana",
                                                     "why": "on my way"})
    assert status == 200 and answer["alarms"][0]["acknowledged"]["who"] == "ana"
    status, answer = lab.post("/api/v1/alarms/silence", {"alarm": "chamber pressure",
                                                         "duration": "eventually", "who": "ana"})
    assert (status, answer["field"]) == (400, "duration")
    status, answer = lab.post("/api/v1/alarms/silence", {"alarm": "chamber pressure",
                                                         "duration": "2h", "who": "ben",
                                                         "why": "bake-out"})
    assert status == 200
    until = datetime.fromisoformat(answer["alarms"][0]["silenced"]["until"])
    assert timedelta(hours=1.99) < until - datetime.now(UTC) <= timedelta(hours=2)
    lab.alarms.history.flush()
    lab.srv.stop()

    # A restart: still firing, acknowledged and silenced; nothing announced again.
    again = Lab(server_thread, api, config)
    alarm = again.alarm("chamber pressure")
    assert (alarm["state"], alarm["acknowledged"]["who"], alarm["silenced"]["who"]) == \
        ("firing", "ana", "ben")
    again.read("chamber", 4e-10)
    again.wait_state("chamber pressure", "resolved")
    again.alarms.history.flush()
    assert len(mailbox.messages) == 1  # the resolution was silenced

    query = urllib.parse.urlencode({"start": started.isoformat(), "alarm": "chamber pressure"})
    events = again.get(f"/api/v1/alarms/history?{query}")["events"]
    assert [(e["previous"], e["state"], e["who"]) for e in events] == [
        ("ok", "pending", None), ("pending", "firing", None), ("firing", "acknowledged", "ana"),
        ("firing", "silenced", "ben"), ("firing", "resolved", None)]
    assert events[1]["value"] == 3e-9 and events[1]["severity"] == "critical"
    assert events[2]["why"] == "on my way"
    assert datetime.fromisoformat(events[3]["until"]) == until
    assert all(datetime.fromisoformat(e["time"]).tzinfo is not None for e in events)
    # a range that ends before the alarm, and bad ranges
    before = urllib.parse.urlencode({"start": (started - timedelta(hours=1)).isoformat(),
                                     "end": started.isoformat()})
    assert again.get(f"/api/v1/alarms/history?{before}")["events"] == []
    status, answer, _ = api.http("GET", again.srv.url + "/api/v1/alarms/history?start=12/01/2026")
    assert (status, answer["field"]) == (400, "start")
    status, answer, _ = api.http("GET", again.srv.url + "/api/v1/alarms/history?start="
                                 "2026-01-01T00:00:00")
    assert status == 400 and "needs a UTC offset" in answer["error"]
    status, answer, _ = api.http("GET", again.srv.url + "/api/v1/alarms/history?limit=-3")
    assert (status, answer["field"]) == (400, "limit")


def test_rpc_lists_acknowledges_and_silences(server_thread, api, tmp_path):
    lab = Lab(server_thread, api, lab_config(tmp_path, str(tmp_path / "lab.sqlite"), for_s=0))
    lab.read("loadlock", 3e-5)
    lab.wait_state("gauges/loadlock", "firing")
    url = lab.srv.url
    answer = api.rpc(url, "ack_alarm", {"alarm": "gauges", "who": "ana"})
    assert answer["error"]["code"] == UNAUTHORIZED
    answer = api.rpc(url, "ack_alarm", {"alarm": "gauges", "who": "ana"}, token=api.token)
    assert [a["name"] for a in answer["result"]] == ["gauges/loadlock"]
    answer = api.rpc(url, "silence_alarm", {"alarm": "gauges/loadlock", "duration": "0s",
                                            "who": "ana"}, token=api.token)
    assert "expected a duration > 0" in answer["error"]["message"]
    answer = api.rpc(url, "unsilence_alarm", {"alarm": "gauges", "who": "ana"}, token=api.token)
    assert answer["error"]["message"] == "gauges is not silenced"
    overview = api.rpc(url, "alarms")["result"]
    assert overview["firing"] == 1 and overview["alarms"][0]["name"] == "gauges/loadlock"
    lab.alarms.history.flush()
    history = api.rpc(url, "alarm_history", {"alarm": "gauges"})["result"]
    assert [e["state"] for e in history] == ["firing", "acknowledged"]


def test_smtp_that_hangs_delays_no_reading_and_the_failure_shows(server_thread, api, tmp_path):
    # A mail server that accepts connections and never says a word.
    hang = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(hang.accept()), daemon=True).start()
    config = lab_config(tmp_path, str(tmp_path / "lab.sqlite"), hang.getsockname()[1],
                        for_s=0, timeout_s=30.0)
    lab = Lab(server_thread, api, config)
    try:
        lab.read("chamber", 3e-9)
        lab.wait_state("chamber pressure", "firing")
        wait_until(lambda: accepted, what="the mail server to be connected to")
        # The worker is stuck in the SMTP greeting for 30 s; readings and states go on.
        for i in range(20):
            lab.read("chamber", 3e-9 + i * 1e-11)
        lab.read("chamber", 1e-10)
        lab.wait_state("chamber pressure", "resolved")
        # Stored by the writer's own thread, not held up by the hung worker.
        wait_until(lambda: lab.logger.writer.status()["written"] == 22, what="22 rows stored")
        channel = lab.get("/api/v1/alarms")["notify"][0]
        assert (channel["channel"], channel["pending"], channel["sent"]) == ("oncall", 2, 0)
    finally:
        hang.close()
        for conn, _ in accepted:
            conn.close()  # the server hangs up: the attempt fails, retries are refused
    wait_until(lambda: lab.get("/api/v1/alarms")["notify"][0]["state"] == "failing",
               what="the failure to show")


def test_the_logger_spooling_raises_its_alarm(server_thread, api, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens there
    lab = Lab(server_thread, api, lab_config(tmp_path, f"postgresql://127.0.0.1:{dead}/x"))
    lab.read("chamber", 1e-10)
    lab.wait_state("database", "firing")
    assert lab.alarm("database")["message"].startswith("database unreachable, ")
    assert lab.alarm("chamber pressure")["state"] == "ok"  # spooled readings still count


def test_a_spike_inside_a_big_written_batch_fires_and_resolves(mailbox, server_thread, api,
                                                              tmp_path):
    # 5,000 readings of one gauge stored in one batch, one of them above the threshold:
    # the alarm sees every reading of the batch, not only the latest of the sensor.
    config = lab_config(tmp_path, str(tmp_path / "lab.sqlite"), mailbox.port, for_s=0,
                        batch_s=2.0)
    lab = Lab(server_thread, api, config)
    start = datetime.now(UTC) - timedelta(seconds=10)
    for i in range(5000):
        lab.read("chamber", 3e-9 if i == 2500 else 1e-10, start + timedelta(milliseconds=i))
    wait_until(lambda: lab.logger.writer.status()["written"] == 5000, what="5000 rows stored")
    lab.wait_state("chamber pressure", "resolved")
    wait_until(lambda: mailbox.messages, what="the e-mail")
    lab.alarms.history.flush()
    query = urllib.parse.urlencode({"start": (start - timedelta(hours=1)).isoformat(),
                                    "alarm": "chamber pressure"})
    events = lab.get(f"/api/v1/alarms/history?{query}")["events"]
    assert [(e["previous"], e["state"]) for e in events] == [("ok", "firing"),
                                                             ("firing", "resolved")]
    assert events[0]["value"] == 3e-9 and events[1]["value"] == 1e-10
    assert events[0]["message"] == "chamber at 3.00e-09 mbar"  # the spike, not a newer value
    spike = (start + timedelta(milliseconds=2500)).timestamp()  # the readings' own times
    assert datetime.fromisoformat(events[0]["time"]).timestamp() == pytest.approx(spike)
    assert datetime.fromisoformat(events[1]["time"]).timestamp() == pytest.approx(spike + 1e-3)
    body = "".join(mailbox.bodies())  # fired and resolved within one burst: one message
    assert "FIRING  chamber pressure" in body and "RESOLVED  chamber pressure" in body
    assert "chamber at 3.00e-09 mbar" in body and "chamber at 1.00e-10 mbar" in body


def test_thresholds_rates_and_staleness_on_one_sensor_each_decide_on_its_readings(
        server_thread, api, tmp_path):
    # A threshold, two rates of different windows and a stale rule on one gauge: readings
    # reach each only when it has something to decide (the rates once per step of their
    # window, staleness on the tick), and each fires and resolves as its condition says.
    folder = tmp_path.as_posix()
    config = parse(f"""
[logger]
db = "{folder}/lab.sqlite"
spool_dir = "{folder}/spool"
batch_s = 0.05
devices = []
[logger.sensors.chamber]
[[alarms]]
name = "high"
sensor = "chamber"
above = 1e-6
[[alarms]]
name = "rising"
sensor = "chamber"
rise_per_min = 10
scale = "log"
window_s = 64
[[alarms]]
name = "rising fast"
sensor = "chamber"
rise_per_min = 10
scale = "log"
window_s = 8
[[alarms]]
name = "silent"
sensor = "chamber"
stale_s = 1
""", "lab.toml")
    lab = Lab(server_thread, api, config)
    start = datetime.now(UTC) - timedelta(seconds=121)
    # a reading every 10 ms: a spike (never a rate's sample), a factor 100 in the first
    # minute, then flat for a minute
    for i in range(12000):
        value = 2e-6 if i == 1 else 1e-10 * 100 ** (min(i, 6000) / 6000)
        lab.read("chamber", value, start + timedelta(milliseconds=10 * i))
    wait_until(lambda: lab.logger.writer.status()["written"] == 12000, what="12000 rows stored")
    lab.wait_state("rising", "resolved")
    lab.wait_state("rising fast", "resolved")
    lab.wait_state("silent", "firing")  # no reading for a second
    lab.read("chamber", 1e-8)
    lab.wait_state("silent", "resolved")  # at the reading, not at the next tick
    lab.alarms.history.flush()

    def history(name):
        query = urllib.parse.urlencode({"start": (start - timedelta(hours=1)).isoformat(),
                                        "alarm": name})
        return [(e["state"], e["time"], e["value"])
                for e in lab.get(f"/api/v1/alarms/history?{query}")["events"]]

    at = [(start + timedelta(milliseconds=10 * i)).timestamp() for i in range(12000)]
    (fired, high, value), (resolved, low, _) = history("high")
    assert (fired, value, resolved) == ("firing", 2e-6, "resolved")
    assert datetime.fromisoformat(high).timestamp() == pytest.approx(at[1])
    assert datetime.fromisoformat(low).timestamp() == pytest.approx(at[2])
    for name, half_window in (("rising", 32), ("rising fast", 4)):
        (fired, began, _), (resolved, ended, _) = history(name)
        assert (fired, resolved) == ("firing", "resolved"), name
        # fired once half its window was covered, resolved within its window of the top
        began, ended = (datetime.fromisoformat(t).timestamp() - at[0] for t in (began, ended))
        assert half_window <= began < half_window + 1, name
        assert 60 < ended <= 60 + 2 * half_window, name


def test_a_reading_fires_its_alarm_before_the_logger_has_spooled_or_stored_it(
        server_thread, api, tmp_path):
    # A batch interval of an hour: the reading waits in the writer's buffer all that time.
    lab = Lab(server_thread, api, lab_config(tmp_path, str(tmp_path / "lab.sqlite"), for_s=0,
                                             batch_s=3600))
    lab.read("chamber", 3e-9)
    lab.wait_state("chamber pressure", "firing")
    assert lab.alarm("chamber pressure")["value"] == 3e-9
    status = lab.logger.writer.status()
    assert (status["spooled"], status["written"]) == (0, 0)
    assert lab.srv.call(lambda: lab.srv.hub.latest("logger/chamber")) is None  # not yet


def test_a_reading_the_logger_refuses_is_not_shown_to_the_alarms(server_thread, api, tmp_path):
    """NaN and infinity are never stored: a firing alarm must not resolve on one."""
    lab = Lab(server_thread, api, lab_config(tmp_path, str(tmp_path / "lab.sqlite"), for_s=0))
    lab.read("chamber", 3e-9)
    lab.wait_state("chamber pressure", "firing")
    transitions = lab.srv.call(lambda: lab.alarms.transitions)
    now = to_us(datetime.now(UTC))  # as an agent's rows reach the writer, unchecked
    lab.logger.writer.add([("chamber", "mbar", now, math.nan), ("chamber", "mbar", now + 1, -math.inf)])
    wait_until(lambda: lab.logger.writer.status()["rejected"] == 2, what="both refused")
    lab.read("chamber", 4e-9)  # handed over after the two, in order
    wait_until(lambda: lab.logger.writer.status()["written"] == 2, what="the good ones stored")
    lab.srv.call(lambda: None)  # the loop has run the hand-overs queued before
    assert lab.alarm("chamber pressure")["state"] == "firing"
    assert lab.srv.call(lambda: lab.alarms.transitions) == transitions


def test_readings_the_hub_coalesced_are_counted_and_the_latest_is_seen(server_thread, api,
                                                                       tmp_path, caplog):
    # Alarms without a logger of their own read the hub. More readings in one IO-loop
    # callback than their hub buffer holds (the logger never publishes so: it publishes in
    # chunks): the alarms see the latest of each sensor.
    caplog.set_level(logging.WARNING, logger="services.alarms")
    lab = Lab(server_thread, api, lab_config(tmp_path, str(tmp_path / "lab.sqlite"), for_s=0),
              from_hub=True)
    start = datetime.now(UTC)

    def burst(values):
        for i, value in enumerate(values):
            lab.srv.hub.publish("logger/chamber", {
                "sensor": "chamber", "value": value, "unit": "mbar", "status": "ok",
                "timestamp": (start + timedelta(milliseconds=i)).isoformat()})

    lab.srv.call(burst, [3e-9 if i == 10 else 1e-10 for i in range(999)] + [2e-9])
    lab.wait_state("chamber pressure", "firing")
    readings = lab.get("/api/v1/alarms")["readings"]
    assert readings["coalesced"] > 0 and readings["dropped"] == 0
    lab.alarms.history.flush()
    query = urllib.parse.urlencode({"start": (start - timedelta(hours=1)).isoformat(),
                                    "end": (start + timedelta(hours=1)).isoformat(),
                                    "alarm": "chamber pressure"})
    events = lab.get(f"/api/v1/alarms/history?{query}")["events"]
    assert [(e["state"], e["value"]) for e in events] == [("firing", 2e-9)]  # not the spike
    lab.srv.call(burst, [1e-10] * 1000)
    lab.wait_state("chamber pressure", "resolved")
    assert lab.get("/api/v1/alarms")["readings"]["coalesced"] > readings["coalesced"]
    assert caplog.text.count("the hub coalesced readings before the alarms saw them") == 1


def test_a_spool_near_its_bound_raises_spool_full_with_its_share(server_thread, api, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens there: every batch stays in the spool
    config = parse(f"""
[logger]
db = "postgresql://127.0.0.1:{dead}/x"
spool_dir = "{tmp_path.as_posix()}/spool"
spool_max_mb = 1
batch_s = 0.05
retry_s = 0.2
devices = []
[logger.sensors.chamber]

[[alarms]]
name = "spool"
event = "spool full"
spool_fraction = 0.5
severity = "critical"
""", "lab.toml")
    lab = Lab(server_thread, api, config)
    start = datetime.now(UTC) - timedelta(hours=1)
    step = 0
    while lab.logger.status()["spool_bytes"] < 0.5 * 2**20:
        for _ in range(2000):
            lab.read("chamber", 1e-10, start + timedelta(milliseconds=step))
            step += 1
        assert lab.alarm("spool")["state"] == "ok" or lab.logger.status()["spool_bytes"] \
            >= 0.5 * 2**20  # not before the spool is half full
        wait_until(lambda s=step: lab.logger.writer.status()["spooled"] >= s,
                   what="the readings to be spooled")
    lab.wait_state("spool", "firing")
    message = lab.alarm("spool")["message"]
    assert message.startswith("spool at ") and "of its bound (" in message
    assert message.endswith(" of 1048576 bytes)")


def test_a_wrong_smtp_password_shows_in_the_api_health_and_cli_without_the_password(
        server_thread, api, tmp_path, run_cli):
    server = Mailbox(login=("ionlab", "right horse")).start()
    try:
        text = LAB.format(db=tmp_path / "lab.sqlite", tmp=tmp_path.as_posix(),
                          smtp_port=server.port, for_s=0, timeout_s=5.0, batch_s=0.05)
        config = parse(text.replace("smtp://127.0.0.1:", "smtp://ionlab:wrong%20staple@"
                                    "127.0.0.1:"), "lab.toml")
        lab = Lab(server_thread, api, config)
        lab.read("chamber", 3e-9)
        wait_until(lambda: lab.get("/api/v1/alarms")["notify"][0]["refused"],
                   what="the login to be refused")
        lab.read("chamber", 1e-10)  # the resolution is dropped, not queued
        lab.wait_state("chamber pressure", "resolved")
        wait_until(lambda: lab.get("/api/v1/alarms")["notify"][0]["dropped"] == 2,
                   what="both notices dropped")
        channel = lab.get("/api/v1/alarms")["notify"][0]
        health = api.http("GET", lab.srv.url + "/healthz")[1]["services"]["alarms"]
        listed = run_cli("alarms", "--url", lab.srv.url, "list", "--all")
    finally:
        server.stop()
    assert server.attempts == 1 and server.messages == []
    assert (channel["state"], channel["pending"], channel["failures"]) == ("failing", 0, 1)
    assert channel["last_error"].endswith("login as ionlab refused (535 5.7.8 Authentication "
                                          "credentials invalid): check the channel's user and "
                                          "password, then restart")
    assert health["failing_channels"] == ["oncall (email)"]
    assert listed.returncode == 0, listed.stderr
    assert f"notify oncall (email) FAILING: SMTP 127.0.0.1:{server.port}: login as ionlab " \
           f"refused" in listed.stdout
    assert listed.stdout.rstrip().endswith("(2 dropped, not retried)")
    assert "staple" not in str(channel) + listed.stdout + listed.stderr


@pytest.mark.parametrize("from_hub", [False, True], ids=["from the logger", "from the hub"])
def test_an_agent_naming_ever_new_sensors_grows_no_memo_without_bound(
        server_thread, api, tmp_path, monkeypatch, from_hub):
    """What the alarms remember per sensor and per hub channel is bounded (MAX_MEMO);
    past the bound it is found again, and alarms still fire."""
    monkeypatch.setattr("services.alarms.service.MAX_MEMO", 5)
    lab = Lab(server_thread, api, lab_config(tmp_path, str(tmp_path / "lab.sqlite"), for_s=0),
              from_hub=from_hub)
    for n in range(40):
        lab.read(f"agent sensor {n}", 1.0)
    wait_until(lambda: lab.logger.writer.status()["written"] == 40, what="40 readings stored")
    lab.read("loadlock", 3e-5)  # a glob's sensor, first seen past the bound
    lab.wait_state("gauges/loadlock", "firing")
    lab.read("chamber", 3e-9)
    lab.wait_state("chamber pressure", "firing")
    assert lab.srv.call(lambda: len(lab.alarms._watch_of)) <= 5
    assert lab.srv.call(lambda: len(lab.alarms._targets)) <= 5
