"""Event rules on what the real publishers say: a lock controller's status in each fault,
and the wavemeter service's status while the vendor software is gone (compiled twin)."""

from __future__ import annotations

import pytest

from services.alarms.conditions import event_verdict
from services.alarms.machine import Alarm
from services.alarms.rules import Rule
from services.alarms.service import AlarmService, catalog_of
from services.config import parse
from services.wavemeter.locks import Controller, LockSettings
from services.wavemeter.service import WavemeterService
from tests.waiting import wait_until

from ..wavemeter.test_locks_controller import SP, T0, at
from ..wavemeter.test_locks_controller import thz as mhz


def controller(**settings) -> Controller:
    c = Controller(LockSettings(channel=3, port=3, setpoint_thz=SP, **{"i": 0.01, **settings}))
    c.engage(0.0, T0)
    c.update(at(0), mhz(0.0))
    return c


def railed(c):
    for k in range(1, 4):
        c.update(at(k), mhz(-10.0))


def railed_too_long(c):
    for k in range(1, 8):
        c.update(at(k), mhz(-10.0))


def signal_lost(c):
    for t in (1.0, 2.1):
        c.update(at(t), None, "no signal")


def mode_hop(c):
    for t in (0.2, 0.4, 0.6):  # three readings beyond capture, well within the signal timeout
        c.update(at(t), mhz(500.0))


def unlocked_on_request(c):
    c.disengage()


FAULTS = {"railed": railed, "railed too long": railed_too_long, "signal lost": signal_lost,
          "mode hop": mode_hop, "unlocked on request": unlocked_on_request}
SETTINGS = {"i": 1.0, "max_v": 0.3, "max_step_v": 10.0, "rail_timeout_s": 5.0,
            "signal_timeout_s": 2.0, "capture_mhz": 100.0, "capture_readings": 3}


@pytest.mark.parametrize("fault, fires, reason", [
    ("railed", {"railed"}, "output at a limit"),
    ("railed too long", {"railed", "unlocked"}, "railed too long"),
    ("signal lost", {"signal lost", "unlocked"}, "signal lost"),
    ("mode hop", {"mode hop", "unlocked"}, "mode hop"),
    ("unlocked on request", set(), "unlocked on request"),
])
def test_each_lock_fault_fires_the_rules_it_concerns_with_the_locks_reason(fault, fires, reason):
    c = controller(**SETTINGS)
    alarms = {event: Alarm(Rule(event, "event", ("3",), event=event), "3")
              for event in ("unlocked", "railed", "mode hop", "signal lost")}
    for alarm in alarms.values():  # locked: nothing holds
        active, why = event_verdict(alarm.rule, c.status())
        assert alarm.observe(0.0, active, None, why) == []
    FAULTS[fault](c)
    status = c.status()
    for event, alarm in alarms.items():
        active, why = event_verdict(alarm.rule, status)
        changes = alarm.observe(10.0, active, None, why)
        assert bool(changes) == (event in fires), (event, status["state"], status["reason"])
        if changes:
            assert [ch.notice for ch in changes] == ["firing"]
            assert alarm.reason.startswith(reason)


CONFIG = """
[devices.wm]
kind = "highfinesse"
library = "{library}"
poll_s = 0.01
channels = {{ 1 = "397 cooling" }}

[wavemeter]
retry_min_s = 0.01
retry_max_s = 0.05

[[alarms]]
name = "wavemeter software"
event = "wavemeter missing"
severity = "critical"
"""


def test_the_wavemeter_software_gone_fires_its_alarm_and_back_resolves_it(
        server_thread, api, wlm_sim, wlm_library):
    config = parse(CONFIG.format(library=wlm_library), "lab.toml")
    srv = server_thread(lambda hub: [WavemeterService(config, hub), AlarmService(
        config, hub, catalog=catalog_of(config, None))])

    def alarm():
        status, body, _ = api.http("GET", srv.url + "/api/v1/alarms")
        assert status == 200, body
        return body["alarms"][0]

    wlm_sim.advance(1.0)
    wait_until(lambda: srv.call(lambda: srv.hub.latest("wavemeter/status")) is not None,
               what="the wavemeter's first status")
    assert alarm()["state"] == "ok"
    wlm_sim.set_server_running(False)
    wait_until(lambda: alarm()["state"] == "firing", what="the alarm to fire")
    firing = alarm()
    assert firing["name"] == "wavemeter software" and firing["severity"] == "critical"
    assert "not running" in firing["message"]
    wlm_sim.set_server_running(True)
    wait_until(lambda: alarm()["state"] == "resolved", what="the alarm to resolve")
