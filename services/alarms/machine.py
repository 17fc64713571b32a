"""One alarm's states: ok -> pending -> firing -> resolved, with acknowledge and silence.

An `Alarm` is a plain object with no IO and no clock: it is told whether its
condition holds (`observe`) and that time passed (`check`), each with the
time, and answers with the `Change`s that happened: transitions (stored and
published) and notices (sent to the rule's channels). Pending sends nothing;
firing and resolving send one notice each, unless silenced; a firing alarm
that nobody acknowledged is recalled every `repeat_s`. The condition's
latest verdict stands until a new one comes, so a pending alarm fires
`for_s` after its condition began even if no reading arrives meanwhile.

>>> from services.alarms.rules import Rule
>>> a = Alarm(Rule("p", "threshold", ("chamber",), above=1.0, for_s=5), "chamber")
>>> [c.state for c in a.observe(100.0, True, 2.0)]
['pending']
>>> a.check(104.0), [(c.state, c.notice) for c in a.check(105.0)]
([], [('firing', 'firing')])
>>> [(c.state, c.notice) for c in a.observe(106.0, False, 0.5)]
[('resolved', 'resolved')]
"""

from __future__ import annotations

from dataclasses import dataclass

from .rules import Rule

__all__ = ["FIRING", "OK", "PENDING", "RESOLVED", "STATES", "Alarm", "Change"]

OK, PENDING, FIRING, RESOLVED = "ok", "pending", "firing", "resolved"
STATES = (OK, PENDING, FIRING, RESOLVED)
#: what is stored besides state changes
ACKNOWLEDGED, SILENCED, UNSILENCED = "acknowledged", "silenced", "unsilenced"
_NONE: list = []


@dataclass(frozen=True)
class Change:
    """What happened to an alarm: `state` is its new state, or acknowledged / silenced /
    unsilenced; `notice` is what to send (firing, resolved, reminder) or None; `value`
    the alarm's value then (a burst of readings may bring newer ones before it is told)."""

    alarm: Alarm
    time: float
    state: str
    previous: str
    notice: str | None = None
    stored: bool = True
    who: str | None = None
    why: str | None = None
    until: float | None = None
    value: float | None = None


class Alarm:
    """A rule applied to one subject (a sensor, a lock channel, or "" for the lab)."""

    def __init__(self, rule: Rule, subject: str):
        self.rule = rule
        self.subject = subject
        self.name = rule.alarm_name(subject)
        self.state = OK
        self.since: float | None = None  # when it entered its state
        self.active = False  # the condition's latest verdict
        self.active_since: float | None = None
        self.clear_since: float | None = None
        self.value: float | None = None
        self.unit = ""
        self.reason = ""
        self.acked: dict | None = None  # {"who", "why", "time"}
        self.silence: dict | None = None  # {"until", "who", "why", "time"}
        self.notified_at: float | None = None  # the last firing notice or reminder

    def __repr__(self):
        return f"<Alarm {self.name!r} {self.state} active={self.active} value={self.value!r}>"

    # -- what the service tells it ---------------------------------------------------

    def observe(self, now: float, active: bool | None, value: float | None = None,
                reason: str | None = None) -> list[Change]:
        """A new verdict of the condition (None: no verdict, only the value is noted)."""
        if value is not None:
            self.value = value
        if reason is not None:
            self.reason = reason
        if active is None or (active == self.active and self.state != PENDING
                              and (active or self.state != FIRING)):
            return _NONE  # the common case: nothing changes
        if active and not self.active:
            self.active, self.active_since, self.clear_since = True, now, None
        elif not active and self.active:
            self.active, self.clear_since = False, now
        return self._step(now)

    def check(self, now: float) -> list[Change]:
        """Time passed: for_s, clear_for_s, a silence's end, a reminder."""
        changes = self._step(now)
        silence = self.silence
        if silence is not None and now >= silence["until"]:
            self.silence = None
            changes = [*changes, Change(self, now, UNSILENCED, self.state)]
            if self.state == FIRING and self.acked is None:
                changes.append(self._notice(now, "reminder"))
        elif (self.state == FIRING and self.acked is None and silence is None
              and self.rule.repeat_s and self.notified_at is not None
              and now >= self.notified_at + self.rule.repeat_s):
            changes = [*changes, self._notice(now, "reminder")]
        return changes

    def deadline(self) -> float | None:
        """The next time `check` may change something (None: only a new verdict will)."""
        times = []
        if self.state == PENDING and self.active:
            times.append(self.active_since + self.rule.for_s)
        if self.state == FIRING:
            if not self.active:
                times.append(self.clear_since + self.rule.clear_for_s)
            elif self.acked is None and self.silence is None and self.rule.repeat_s \
                    and self.notified_at is not None:
                times.append(self.notified_at + self.rule.repeat_s)
        if self.silence is not None:
            times.append(self.silence["until"])
        return min(times) if times else None

    def acknowledge(self, now: float, who: str, why: str = "") -> Change:
        """Someone is on it: no more reminders until it resolves (only a firing alarm)."""
        if self.state != FIRING:
            raise ValueError(f"{self.name} is {self.state}; only a firing alarm can be "
                             "acknowledged")
        self.acked = {"who": who, "why": why, "time": now}
        return Change(self, now, ACKNOWLEDGED, self.state, who=who, why=why)

    def silence_for(self, now: float, seconds: float, who: str, why: str = "") -> Change:
        """No notices until now + seconds, whatever happens (the states still change)."""
        until = now + seconds
        self.silence = {"until": until, "who": who, "why": why, "time": now}
        return Change(self, now, SILENCED, self.state, who=who, why=why, until=until)

    def unsilence(self, now: float, who: str, why: str = "") -> Change:
        """End a silence early."""
        if self.silence is None:
            raise ValueError(f"{self.name} is not silenced")
        self.silence = None
        return Change(self, now, UNSILENCED, self.state, who=who, why=why)

    # -- the machine -------------------------------------------------------------------

    def _step(self, now: float) -> list[Change]:
        rule, state = self.rule, self.state
        if state in (OK, RESOLVED):
            if not self.active:
                return _NONE
            if rule.for_s and now < self.active_since + rule.for_s:
                return [self._enter(now, PENDING)]
            return [self._enter(now, FIRING)]
        if state == PENDING:
            if not self.active:
                return [self._enter(now, OK)]
            if now >= self.active_since + rule.for_s:
                return [self._enter(now, FIRING)]
            return _NONE
        if not self.active and now >= self.clear_since + rule.clear_for_s:
            return [self._enter(now, RESOLVED)]
        return _NONE

    def _enter(self, now: float, state: str) -> Change:
        previous, self.state, self.since = self.state, state, now
        notice = None
        if state == FIRING:
            self.notified_at = now
            notice = "firing"
        elif state == RESOLVED:
            self.acked = None
            notice = "resolved"
        if notice and self.silence is not None:
            notice = None
        return Change(self, now, state, previous, notice, value=self.value)

    def _notice(self, now: float, notice: str) -> Change:
        self.notified_at = now
        return Change(self, now, self.state, self.state, notice, stored=False, value=self.value)

    # -- persistence -------------------------------------------------------------------

    _SAVED = ("state", "since", "active", "active_since", "clear_since", "value", "unit",
              "reason", "acked", "silence", "notified_at")

    def snapshot(self) -> dict:
        """What a restart needs to carry on (JSON-ready)."""
        return {key: getattr(self, key) for key in self._SAVED}

    def restore(self, saved: dict) -> None:
        """Carry on from a snapshot (unknown or missing keys are ignored)."""
        for key in self._SAVED:
            if key in saved:
                setattr(self, key, saved[key])
        if self.state not in STATES:
            self.state = OK
