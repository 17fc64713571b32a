"""The alarm state machine and its conditions in simulated time."""

from __future__ import annotations

import doctest
import json
import math

import pytest

import services.alarms.channels
import services.alarms.conditions
import services.alarms.machine
import services.alarms.rules
from services.alarms.machine import Alarm

from .sim import SimAlarm

CHAMBER = """
[[alarms]]
name = "chamber pressure"
sensor = "chamber"
above = 1e-9
clear_below = 5e-10
for_s = 5
severity = "critical"
notify = ["oncall"]
repeat_s = 0
"""


@pytest.mark.parametrize("module", [services.alarms.machine, services.alarms.conditions,
                                    services.alarms.rules, services.alarms.channels])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_for_s_must_hold_before_firing_and_pending_sends_nothing():
    sim = SimAlarm(CHAMBER)
    sim.feed(0, 1e-10)
    sim.feed(10, 2e-9)          # crosses: pending
    sim.feed(12, 3e-9)
    sim.feed(14, 4e-10)         # back below the clear level before 5 s: ok, nothing sent
    sim.feed(20, 2e-9)          # crosses again
    sim.run_until(24.9)
    assert sim.states() == [(10, "pending"), (14, "ok"), (20, "pending")]
    sim.run_until(30)           # no reading needed: it fires when for_s has passed
    assert sim.states()[-1] == (25, "firing")
    assert sim.notices() == [(25, "firing")]
    assert sim.alarm.since == 25


def test_hysteresis_keeps_a_value_on_the_line_from_flapping():
    sim = SimAlarm(CHAMBER)
    sim.feed(0, 2e-9)
    sim.run_until(5)
    # Wandering between the clear level and the threshold changes nothing.
    for i, v in enumerate([9e-10, 1.1e-9, 6e-10, 1.2e-9, 5.5e-10, 9.9e-10] * 5):
        sim.feed(6 + i, v)
    assert sim.states() == [(0, "pending"), (5, "firing")]
    sim.feed(100, 4.9e-10)
    assert sim.states()[-1] == (100, "resolved")
    assert sim.notices() == [(5, "firing"), (100, "resolved")]


def test_flapping_input_gives_one_notice_per_real_change():
    sim = SimAlarm(CHAMBER.replace("for_s = 5", "for_s = 2"))
    t = 0.0
    # Fifty short spikes (1 s each, shorter than for_s): no notice at all.
    for _ in range(50):
        sim.feed(t, 3e-9)
        sim.feed(t + 1, 1e-10)
        t += 2
    assert sim.notices() == []
    # Three real episodes, each held longer than for_s: one firing and one resolved each,
    # whatever the input does meanwhile.
    for _ in range(3):
        for k in range(20):
            sim.feed(t + k * 0.5, 3e-9 if k % 2 else 2e-9)
        t += 10
        for k in range(20):
            sim.feed(t + k * 0.5, 1e-10 if k % 2 else 4e-10)
        t += 10
    assert [n for _, n in sim.notices()] == ["firing", "resolved"] * 3


def test_below_and_a_band():
    sim = SimAlarm("""
[[alarms]]
name = "water"
sensor = "water in"
below = 288
above = 298
clear_above = 289
clear_below = 297
""")
    for t, v in [(0, 293), (1, 287), (2, 288.5), (3, 289.5), (4, 299), (5, 297.5), (6, 296)]:
        sim.feed(t, v)
    assert sim.states() == [(1, "firing"), (3, "resolved"), (4, "firing"), (6, "resolved")]


def test_rate_of_change_on_a_log_scale():
    # The chamber doubles every 20 s: a factor 8 per minute; the rule fires at x5 per minute.
    sim = SimAlarm("""
[[alarms]]
name = "chamber rising"
sensor = "chamber"
rise_per_min = 5
window_s = 60
""")
    assert sim.rule.log_scale  # the default for a pressure gauge
    for i in range(60):  # steady, with 2 % noise-like wobble: no alarm
        sim.feed(i * 2.0, 1e-10 * (1.02 if i % 2 else 0.98))
    assert sim.states() == []
    for i in range(1, 40):
        sim.feed(120 + i * 2.0, 1e-10 * 2 ** (i * 2.0 / 20))
    (first,) = [t for t, s in sim.states() if s == "firing"]
    # Half a window of doubling is enough for the slope over the kept window to pass x5/min.
    assert 120 < first < 180
    assert sim.condition.rate == pytest.approx(8.0, rel=0.25)
    for i in range(1, 60):  # flat again: it resolves once the window forgets the rise
        sim.feed(200 + i * 2.0, 1e-10 * 2 ** 4)
    assert sim.states()[-1][1] == "resolved"


def test_rate_of_change_linear_needs_half_a_window_first():
    sim = SimAlarm("""
[[alarms]]
name = "water warming"
sensor = "water in"
rise_per_min = 0.5
window_s = 120
""")
    assert not sim.rule.log_scale
    sim.feed(0, 290.0)
    sim.feed(30, 292.0)   # 4 K/min, but only a quarter of the window: no verdict yet
    assert sim.states() == []
    sim.feed(60, 294.0)
    assert sim.states() == [(60, "firing")]


def test_stale_fires_when_a_sensor_stops_and_clears_when_it_is_back():
    sim = SimAlarm("""
[[alarms]]
name = "laser 1 silent"
sensor = "wavemeter/1"
stale_s = 10
for_s = 2
""")
    for t in range(0, 20):
        sim.feed(float(t), 755.2)
        sim.run_until(t + 0.5)
    assert sim.states() == []
    sim.run_until(29.0)  # last reading at 19 s: stale at 29 s
    assert sim.states() == [(29.0, "pending")]
    sim.run_until(40.0)
    assert sim.states()[-1] == (31.0, "firing")
    sim.feed(41.0, 755.2)
    assert sim.states()[-1] == (41.0, "resolved")


def test_acknowledge_stops_reminders_until_it_resolves():
    sim = SimAlarm(CHAMBER.replace("repeat_s = 0", "repeat_s = 60"))
    sim.feed(0, 2e-9)
    sim.run_until(200)
    assert sim.notices() == [(5, "firing"), (65, "reminder"), (125, "reminder"),
                             (185, "reminder")]
    with pytest.raises(ValueError, match="only a firing alarm"):
        SimAlarm(CHAMBER).alarm.acknowledge(0, "ana")
    sim.changes.append(sim.alarm.acknowledge(200, "ana", "venting the load lock"))
    sim.run_until(1000)
    assert sim.notices()[-1] == (185, "reminder")
    assert sim.states()[-1] == (200, "acknowledged")
    sim.feed(1001, 1e-10)
    sim.feed(1100, 2e-9)  # a new episode must be acknowledged again
    sim.run_until(1300)
    assert sim.alarm.acked is None
    assert [n for _, n in sim.notices()][-5:] == ["resolved", "firing", "reminder", "reminder",
                                                  "reminder"]


def test_silence_holds_every_notice_until_it_expires():
    sim = SimAlarm(CHAMBER.replace("repeat_s = 0", "repeat_s = 60"))
    change = sim.alarm.silence_for(0, 100, "ben", "pumping down")
    assert (change.state, change.until, change.who, change.why) == \
        ("silenced", 100, "ben", "pumping down")
    sim.feed(1, 2e-9)
    sim.run_until(50)
    sim.feed(60, 1e-10)   # fired and resolved while silenced: nothing sent
    sim.feed(70, 2e-9)
    sim.run_until(99)
    assert sim.notices() == []
    assert [s for _, s in sim.states()] == ["pending", "firing", "resolved", "pending",
                                            "firing"]
    sim.run_until(130)    # the silence ends while it fires: one reminder, then the usual pace
    assert sim.states()[-1] == (100, "unsilenced")
    assert sim.notices() == [(100, "reminder")]
    sim.run_until(161)
    assert sim.notices()[-1] == (160, "reminder")
    sim.changes.append(sim.alarm.silence_for(170, 1000, "ben"))
    sim.changes.append(sim.alarm.unsilence(171, "cleo", "done"))
    assert sim.states()[-2:] == [(170, "silenced"), (171, "unsilenced")]
    with pytest.raises(ValueError, match="not silenced"):
        sim.alarm.unsilence(172, "cleo")


@pytest.mark.parametrize("stop_at, expect", [(7.0, "pending"), (12.0, "firing")])
def test_a_restart_in_the_middle_carries_on(stop_at, expect):
    sim = SimAlarm(CHAMBER.replace("repeat_s = 0", "repeat_s = 30"))
    sim.feed(5, 2e-9)
    sim.run_until(stop_at)
    assert sim.alarm.state == expect
    saved = json.loads(json.dumps(sim.alarm.snapshot()))  # what the database keeps

    again = SimAlarm(CHAMBER.replace("repeat_s = 0", "repeat_s = 30"),
                     alarm=Alarm(sim.rule, "chamber"))
    again.alarm.restore(saved)
    again.run_until(stop_at + 0.5)
    # Pending goes on counting from when the condition began, firing is not announced again.
    again.run_until(41)
    assert again.states() == ([(10, "firing")] if expect == "pending" else [])
    assert again.notices() == ([(10, "firing"), (40, "reminder")] if expect == "pending"
                               else [(40, "reminder")])
    again.feed(42, 1e-10)
    assert again.states()[-1] == (42, "resolved")


def test_a_snapshot_with_an_unknown_state_starts_ok():
    sim = SimAlarm(CHAMBER)
    sim.alarm.restore({"state": "exploded", "value": 1.0, "future": 3})
    assert sim.alarm.state == "ok" and sim.alarm.value == 1.0


def test_clear_for_s_needs_the_clear_to_hold():
    sim = SimAlarm(CHAMBER.replace("for_s = 5", "for_s = 0\nclear_for_s = 10"))
    sim.feed(0, 2e-9)
    sim.feed(1, 1e-10)
    sim.feed(5, 2e-9)       # back before clear_for_s: still firing, nothing sent
    sim.feed(6, 1e-10)
    sim.run_until(15.9)
    assert sim.states() == [(0, "firing")]
    sim.run_until(20)
    assert sim.states()[-1] == (16, "resolved")
    assert math.isclose(sim.alarm.value, 1e-10)
