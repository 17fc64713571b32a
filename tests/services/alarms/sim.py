"""Alarms in simulated time: a rule from TOML text, its alarm and condition, a clock that
runs the alarm's deadlines in order (what the service's timers do)."""

from __future__ import annotations

from services.alarms.conditions import Stale, condition_for
from services.alarms.machine import Alarm
from services.alarms.rules import Catalog, parse_rules
from services.config import parse

CATALOG = Catalog({"chamber": "tpg", "loadlock": "tpg", "water in": "ls218",
                   "wavemeter/1": "highfinesse", "wavemeter/2": "highfinesse"},
                  {1: "397 cooling", 2: "866 repump"})
NOTIFY = """
[notify.oncall]
email = ["oncall@lab.example"]
smtp = "smtp://127.0.0.1:2525"
from = "ionlab@lab.example"
"""


def rules_of(text: str, catalog: Catalog = CATALOG):
    config = parse(NOTIFY + text, "lab.toml")
    return parse_rules(config, catalog, {"oncall"})


class SimAlarm:
    """One alarm fed values at simulated times; `changes` is everything it said."""

    def __init__(self, text: str, subject: str | None = None, alarm: Alarm | None = None):
        (self.rule,) = rules_of(text)
        subject = subject if subject is not None else self.rule.subjects[0]
        self.alarm = alarm or Alarm(self.rule, subject)
        self.condition = condition_for(self.rule, 0.0)
        self.now = 0.0
        self.changes = []

    def run_until(self, t: float) -> None:
        """Let time pass to `t`, running each deadline when it comes."""
        while (d := self.alarm.deadline()) is not None and d <= t:
            self.now = max(self.now, d)
            self.changes += self.alarm.check(self.now)
        if isinstance(self.condition, Stale):
            stale = self.condition.check(t)
            if stale != self.alarm.active:
                self.changes += self.alarm.observe(t, stale)
        self.now = t

    def feed(self, t: float, value: float) -> None:
        self.run_until(t)
        self.changes += self.alarm.observe(t, self.condition.feed(t, value), value)

    def states(self) -> list[tuple[float, str]]:
        return [(c.time, c.state) for c in self.changes if c.stored]

    def notices(self) -> list[tuple[float, str]]:
        return [(c.time, c.notice) for c in self.changes if c.notice]
