"""When a rule's condition holds: plain objects fed values, no IO, no clock of their own.

`feed` answers True (holds), False (does not) or None (no verdict yet, e.g.
a rate before its window has filled). Times are seconds since the epoch.

>>> from services.alarms.rules import Rule
>>> t = Threshold(Rule("p", "threshold", ("chamber",), above=1e-9, clear_below=5e-10))
>>> [t.feed(0, v) for v in (8e-10, 2e-9, 8e-10, 4e-10)]   # hysteresis: 8e-10 stays active
[False, True, True, False]
"""

from __future__ import annotations

import math
from collections import deque

from .rules import LOCK_EVENTS, Rule

__all__ = ["Rate", "Stale", "Threshold", "condition_for", "event_verdict"]


class Threshold:
    """Above/below with their clear levels: once crossed, held until the clear level."""

    __slots__ = ("above", "below", "clear_below", "clear_above", "high", "low", "level")

    def __init__(self, rule: Rule):
        self.above, self.below = rule.above, rule.below
        self.clear_below = rule.clear_below if rule.clear_below is not None else rule.above
        self.clear_above = rule.clear_above if rule.clear_above is not None else rule.below
        self.high = self.low = False
        self.level: float | None = None  # the threshold last crossed

    def feed(self, t: float, value: float) -> bool:
        if self.above is not None:
            self.high = value >= self.clear_below if self.high else value > self.above
            if self.high:
                self.level = self.above
        if self.below is not None:
            self.low = value <= self.clear_above if self.low else value < self.below
            if self.low:
                self.level = self.below
        return self.high or self.low


class Rate:
    """Change per minute between the newest value and the oldest kept within `window_s`
    (of the logarithm on a log scale, so a factor per minute). One value per 1/32 of the
    window is kept and decided on (the others give no verdict); none until half the
    window is covered."""

    __slots__ = ("rise", "fall", "log", "window_s", "_step", "_kept", "rate")

    def __init__(self, rule: Rule):
        self.log = rule.log_scale
        self.rise = math.log(rule.rise_per_min) if self.log and rule.rise_per_min else \
            rule.rise_per_min
        self.fall = math.log(rule.fall_per_min) if self.log and rule.fall_per_min else \
            rule.fall_per_min
        self.window_s = rule.window_s
        self._step = rule.window_s / 32
        self._kept: deque[tuple[float, float]] = deque()
        self.rate: float | None = None  # per minute (a factor on a log scale)

    def feed(self, t: float, value: float) -> bool | None:
        kept = self._kept
        if kept and t - kept[-1][0] < self._step:
            return None  # decided once per step
        if self.log:
            if value <= 0:
                return None
            value = math.log(value)
        kept.append((t, value))
        while len(kept) > 1 and kept[1][0] <= t - self.window_s:
            kept.popleft()
        t0, v0 = kept[0]
        if t - t0 < self.window_s / 2:
            return None
        per_min = (value - v0) / (t - t0) * 60.0
        self.rate = math.exp(per_min) if self.log else per_min
        return ((self.rise is not None and per_min >= self.rise)
                or (self.fall is not None and -per_min >= self.fall))

    def due(self) -> float:
        """When `feed` decides next: one step after the newest value kept (-inf: at once)."""
        return self._kept[-1][0] + self._step if self._kept else -math.inf


class Stale:
    """No reading for `stale_s`: `feed` notes a reading, `check(now)` asks."""

    __slots__ = ("stale_s", "last_seen")

    def __init__(self, rule: Rule, since: float):
        self.stale_s = rule.stale_s
        self.last_seen = since

    def feed(self, t: float, value: float) -> bool:
        self.last_seen = max(self.last_seen, t)
        return False

    def check(self, now: float) -> bool:
        return now - self.last_seen >= self.stale_s


def condition_for(rule: Rule, now: float):
    """The condition object of a sensor rule (event rules have none: see event_verdict)."""
    if rule.kind == "threshold":
        return Threshold(rule)
    if rule.kind == "rate":
        return Rate(rule)
    if rule.kind == "stale":
        return Stale(rule, now)
    return None


_FAULT_REASONS = {"mode hop": "mode hop", "signal lost": "signal lost"}
_QUIET_REASONS = ("unlocked on request", "not locked yet")


def event_verdict(rule: Rule, data: dict) -> tuple[bool, str] | None:
    """Whether an event rule holds for a hub event's data, with the reason to show;
    None when the event does not concern the rule.

    >>> r = Rule("l", "event", ("1",), event="unlocked")
    >>> event_verdict(r, {"state": "unlocked", "reason": "mode hop"})
    (True, 'mode hop')
    >>> event_verdict(r, {"state": "unlocked", "reason": "unlocked on request"})
    (False, 'unlocked on request')
    """
    event = rule.event
    if event in LOCK_EVENTS:
        state, reason = data.get("state"), str(data.get("reason") or "")
        if event == "unlocked":
            return state == "unlocked" and reason not in _QUIET_REASONS, reason or state
        if event == "railed":
            railed = state == "railed" or (state == "unlocked" and reason == "railed too long")
            return railed, reason or state
        return state == "unlocked" and reason == _FAULT_REASONS[event], reason or state
    if event == "wavemeter missing":
        return data.get("state") == "missing", str(data.get("message") or data.get("state"))
    if event == "spooling":
        # every batch passes through the spool; it only grows while the database is away
        spooled, database = data.get("spooled_readings", 0), data.get("database")
        return (database == "unreachable",
                f"database {database}, {spooled} readings spooled")
    if event == "spool full":
        used, limit = data.get("spool_bytes", 0), data.get("spool_limit_bytes") or 0
        share = used / limit if limit else 0.0
        return (limit > 0 and share >= rule.spool_fraction,
                f"spool at {share:.0%} of its bound ({used} of {limit} bytes)")
    return None
