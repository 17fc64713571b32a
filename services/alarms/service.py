"""The alarm service: reads the hub like any subscriber, keeps every alarm's state.

It takes every reading the logger accepts as it is accepted (`LoggerService.listen`,
before the spool and the database; without a logger, ``logger/<sensor>`` from the
hub), follows ``lock/<n>`` and ``wavemeter/status`` from the hub, in bursts (one
wake-up per IO-loop iteration however many events came), and asks the logger's status every
`tick_s` for the spool events. Each alarm's changes are published as
``alarm/<name>``, stored through `AlarmHistory` (its own thread) and, when
they notify, handed to the outboxes of the rule's channels (each its own
thread): nothing here waits for a database, a mail server or a webhook, and a
reading is never held back. A pending alarm's ``for_s`` runs on its own
timer, so it fires on time whether or not readings arrive.

`Catalog` (what the rules may name) comes from whoever builds the service
(services/run.py knows the wavemeter and the locks).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from datetime import UTC, datetime

from drivers.registry import OptionError, create

from ..config import Config
from ..logger.queries import QueryError, parse_duration
from ..logger.store import Row
from ..web.http import ApiError
from ..web.hub import Hub
from ..web.rpc import Method, Param
from .channels import parse_channels
from .conditions import Rate, Stale, Threshold, condition_for, event_verdict
from .history import AlarmHistory
from .machine import FIRING, PENDING, Alarm, Change
from .outbox import Outbox
from .rules import LOCK_EVENTS, Catalog, Rule, parse_rules

__all__ = ["AlarmService", "catalog_of"]

log = logging.getLogger(__name__)

RECENT = 10  # values per sensor carried by a notification
MAX_SILENCE_S = 30 * 86400
MAX_WHO = 100
MAX_MEMO = 100_000  # sensors and hub channels whose alarms are remembered (then found again)
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_STATE_RANK = {"firing": 0, "pending": 1, "resolved": 2, "ok": 3}


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t is not None else None


def catalog_of(config: Config, logger, locks: dict[int, str] | None = None,
               wavemeter: bool = True) -> Catalog:
    """What rules may name: the sensors the logger polls and declares, the wavemeter's
    channels as ``wavemeter/<n>`` (when `wavemeter`), and the lock channels `locks`."""
    sensors: dict[str, str] = {}
    if logger is not None:
        for spec in logger.devices.values():
            try:
                device = create(spec.kind, spec.name, spec.simulation, spec.options)
            except OptionError as exc:
                raise spec.section.error(exc.key, exc.expected) from None
            sensors.update(dict.fromkeys(device.sensor_names(), spec.kind))
        for name in logger.settings.sensors:
            sensors.setdefault(name, "")
    if wavemeter:
        for n in locks or {}:
            sensors.setdefault(f"wavemeter/{n}", "highfinesse")
    return Catalog(sensors, dict(locks or {}), wavemeter=wavemeter, logger=logger is not None)


class _Watch:
    """One sensor's alarms, arranged so that a reading costs the same whatever the number
    of rules on the sensor, unless one of them has something to decide.

    `recent` keeps the newest readings as the logger's rows (sensor, unit, µs, value).
    While no threshold alarm of the sensor is engaged (latched, pending or firing), a
    value inside the band no threshold can trip (`low`..`high`) skips them all; the rates
    are fed only from `rate_due_us`, the next step of their windows; staleness is checked
    by the service's tick from the newest reading, and a reading only visits the stale
    alarms while one of them is active.
    """

    __slots__ = ("recent", "low", "high", "engaged", "rate_due_us", "stale_active",
                 "thresholds", "rates", "stales")

    def __init__(self):
        self.recent: collections.deque[Row] = collections.deque(maxlen=RECENT)
        self.low, self.high = -math.inf, math.inf
        self.engaged = False
        self.rate_due_us = math.inf  # no rates
        self.stale_active = False
        self.thresholds: list[tuple[Alarm, Threshold]] = []
        self.rates: list[tuple[Alarm, Rate]] = []
        self.stales: list[tuple[Alarm, Stale]] = []

    def add(self, alarm: Alarm, condition) -> None:
        rule = alarm.rule
        if rule.kind == "threshold":
            self.thresholds.append((alarm, condition))
            if rule.above is not None:
                self.high = min(self.high, rule.above)
            if rule.below is not None:
                self.low = max(self.low, rule.below)
            self.engaged = True  # until a reading shows where it stands
        elif rule.kind == "rate":
            self.rates.append((alarm, condition))
            self.rate_due_us = -math.inf
        else:
            self.stales.append((alarm, condition))
            self.stale_active = self.stale_active or alarm.active

    def feed(self, row: Row, changes: list[Change]) -> None:
        self.recent.append(row)
        t_us, value = row[2], row[3]
        if self.stale_active:
            for alarm, _ in self.stales:
                if alarm.active:
                    changes += alarm.observe(t_us / 1e6, False, value)
            self.stale_active = False
        if self.engaged or not self.low <= value <= self.high:
            t, engaged = t_us / 1e6, False
            for alarm, condition in self.thresholds:
                found = alarm.observe(t, condition.feed(t, value), value)
                if found:
                    changes += found
                if alarm.active or alarm.state == PENDING or alarm.state == FIRING:
                    engaged = True
            self.engaged = engaged
        if t_us >= self.rate_due_us:
            t = t_us / 1e6
            for alarm, condition in self.rates:
                active = condition.feed(t, value)
                if active is not None:
                    changes += alarm.observe(t, active, value)
            # a microsecond early: the rates decide in seconds, from the same float
            self.rate_due_us = min(c.due() for _, c in self.rates) * 1e6 - 1

    def check_stale(self, now: float, changes: list[Change]) -> None:
        """Whether the sensor went stale by `now` (the service's tick)."""
        active = False
        for alarm, condition in self.stales:
            if self.recent:
                condition.feed(self.recent[-1][2] / 1e6, self.recent[-1][3])
            stale = condition.check(now)
            if stale != alarm.active:
                changes += alarm.observe(now, stale)
            active = active or alarm.active
        self.stale_active = active


class _Fields(dict):
    """Template fields; a missing number formats as nan, not as an error."""

    def __missing__(self, key):
        return math.nan


class AlarmService:
    """See the module docstring; `history` None keeps no history (and no state over restarts)."""

    name = "alarms"

    def __init__(self, config: Config, hub: Hub, logger=None, *, catalog: Catalog | None = None,
                 history: AlarmHistory | None = None, tick_s: float = 0.5):
        self.config = config
        self.hub = hub
        self.logger = logger
        self.tick_s = tick_s
        channels = parse_channels(config)
        self.catalog = catalog or catalog_of(config, logger)
        self.rules: list[Rule] = parse_rules(config, self.catalog, set(channels))
        self.outboxes: dict[str, list[Outbox]] = {
            name: [Outbox(name, t, settings) for t in transports]
            for name, (settings, transports) in channels.items()}
        if history is None and logger is not None:
            history = AlarmHistory(logger.store)
        self.history = history
        self.alarms: dict[str, Alarm] = {}
        self.transitions = 0
        self._conditions: dict[str, object] = {}
        self._watches: dict[str, _Watch] = {}  # sensor -> its alarms
        self._listening = False  # to the logger's accepted readings (listen)
        # sensor seen -> its alarms, if any; hub channel -> a _Watch or [alarms] (MAX_MEMO each)
        self._watch_of: dict[str, _Watch | None] = {}
        self._targets: dict[str, object] = {}
        self._stale: list[_Watch] = []  # the watches with stale rules
        self._by_sensor: dict[str, list[Rule]] = {}  # rules naming a sensor literally
        self._globs = [r for r in self.rules if r.sensor is not None and r.per_subject]
        for rule in self.rules:
            if rule.sensor is not None and not rule.per_subject:
                self._by_sensor.setdefault(rule.sensor, []).append(rule)
        self._status_alarms: list[Alarm] = []  # fed by the logger's status, every tick
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._subscription = None
        self._missed = 0  # readings the hub coalesced or dropped before we drained them
        self._ticker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False

    def __repr__(self):
        firing = sorted(a.name for a in self.alarms.values() if a.state == FIRING)
        return f"<AlarmService rules={len(self.rules)} alarms={len(self.alarms)} firing={firing}>"

    # -- service shape (services.web.app) ----------------------------------------------

    async def start(self) -> None:
        """Reload saved states, create the alarms, follow the hub, start the workers."""
        self._loop = asyncio.get_running_loop()
        saved = {}
        if self.history is not None:
            try:
                saved = await self._loop.run_in_executor(None, self.history.load_states)
            except Exception as exc:  # noqa: BLE001 - alarms run without their history
                log.error("alarm states not reloaded (alarms start fresh): %s", exc)
            self.history.start()
        now = time.time()
        for rule in self.rules:
            for subject in rule.subjects:
                self._add(rule, subject, now, saved.get(rule.alarm_name(subject)))
        for outboxes in self.outboxes.values():
            for outbox in outboxes:
                outbox.start()
        patterns = []
        if any(r.sensor for r in self.rules):
            if self.logger is not None:  # at once, not after the spool and the database
                self.logger.listen(self._on_rows)
                self._listening = True
            else:
                patterns.append("logger/*")
        if any(r.event in LOCK_EVENTS for r in self.rules):
            patterns.append("lock/*")
        if any(r.event == "wavemeter missing" for r in self.rules):
            patterns.append("wavemeter/status")
        if patterns:
            self._subscription = self.hub.subscribe(patterns)
            self._subscription.on_ready(self._on_ready)
        for alarm in self.alarms.values():
            self.hub.publish(f"alarm/{alarm.name}", self.alarm_json(alarm))
            self._schedule(alarm)
        self._ticker = asyncio.create_task(self._tick_forever())
        self._ready = True
        log.info("%d alarm rules, %d alarms, %d notification channels", len(self.rules),
                 len(self.alarms), len(self.outboxes))

    async def stop(self) -> None:
        """Stop following, hand over what is pending to the workers, end them."""
        if self._listening:
            self.logger.unlisten(self._on_rows)
            self._listening = False
        if self._subscription is not None:
            self._subscription.close()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        loop = asyncio.get_running_loop()
        stopping = [loop.run_in_executor(None, o.stop, 1.0)
                    for outboxes in self.outboxes.values() for o in outboxes]
        if self.history is not None:
            stopping.append(loop.run_in_executor(None, self.history.stop, 2.0))
        await asyncio.gather(*stopping)

    def routes(self) -> list:
        from .api import routes

        return routes(self)

    def rpc_methods(self) -> dict[str, Method]:
        alarm, who, why = Param("alarm", str), Param("who", str), Param("why", str, "")
        return {
            "alarms": Method(self.overview, False, (), "Every alarm's state, and the "
                             "notification channels' deliveries."),
            "alarm_history": Method(self.history_rpc, False, (
                Param("start", str, None), Param("end", str, None), Param("alarm", str, None),
                Param("limit", int, 1000)), "Stored alarm transitions in [start, end)."),
            "ack_alarm": Method(self.acknowledge, True, (alarm, who, why),
                                "Acknowledge a firing alarm (or every firing alarm of a rule)."),
            "silence_alarm": Method(self.silence, True, (
                alarm, Param("duration", str), who, why),
                "Silence an alarm's notifications for a duration (e.g. 2h)."),
            "unsilence_alarm": Method(self.unsilence, True, (alarm, who, why),
                                      "End an alarm's silence."),
        }

    def health(self) -> dict:
        firing = [a.name for a in self.alarms.values()
                  if a.state == FIRING and a.rule.severity == "critical"]
        failing = [f"{o.channel} ({o.transport.kind})" for outboxes in self.outboxes.values()
                   for o in outboxes if o.status()["state"] == "failing"]
        return {"ok": self._ready, "rules": len(self.rules), "critical_firing": firing,
                "failing_channels": failing}

    # -- alarms, conditions, routes ------------------------------------------------------

    def _add(self, rule: Rule, subject: str, now: float, saved: dict | None = None) -> Alarm:
        alarm = Alarm(rule, subject)
        if saved:
            alarm.restore(saved)
        condition = condition_for(rule, now)
        if isinstance(condition, Threshold) and alarm.active:  # the latch, as it was
            condition.high = rule.above is not None and (
                rule.below is None or alarm.value is None or alarm.value > rule.below)
            condition.low = not condition.high
        self.alarms[alarm.name] = alarm
        self._conditions[alarm.name] = condition
        if rule.event in ("spooling", "spool full"):
            self._status_alarms.append(alarm)
        if rule.sensor is not None:
            watch = self._watches.setdefault(subject, _Watch())
            watch.add(alarm, condition)
            if isinstance(condition, Stale) and watch not in self._stale:
                self._stale.append(watch)
        return alarm

    def _route(self, channel: str):
        """What a hub channel feeds (found once per channel, then looked up): a sensor's
        `_Watch`, a list of event alarms, or None."""
        kind, _, rest = channel.partition("/")
        targets = None
        if kind == "logger":
            targets = self._watch_of[rest] if rest in self._watch_of else self._sensor(rest)
        elif kind == "lock":
            targets = [a for a in self.alarms.values()
                       if a.rule.event in LOCK_EVENTS and a.subject == rest] or None
        elif channel == "wavemeter/status":
            targets = [a for a in self.alarms.values()
                       if a.rule.event == "wavemeter missing"] or None
        if len(self._targets) >= MAX_MEMO:
            self._targets.clear()
        self._targets[channel] = targets
        return targets

    def _sensor(self, sensor: str) -> _Watch | None:
        """A sensor's alarms (found once per sensor, then looked up): the rules naming it
        and the globs taking it, or None."""
        now = time.time()
        for rule in self._by_sensor.get(sensor, []) + [r for r in self._globs if r.takes(sensor)]:
            if rule.alarm_name(sensor) not in self.alarms:
                self._add(rule, sensor, now)
        if len(self._watch_of) >= MAX_MEMO:  # an agent naming ever new sensors
            self._watch_of.clear()
        watch = self._watch_of[sensor] = self._watches.get(sensor)
        return watch

    def _on_rows(self, rows: list[Row]) -> None:
        """Readings the logger has just taken (sensor, unit, µs, value): feed them all, then
        act on what changed. A reading of a sensor no rule names costs a lookup."""
        changes: list[Change] = []
        watch_of, find = self._watch_of, self._sensor
        for row in rows:
            sensor = row[0]
            watch = watch_of[sensor] if sensor in watch_of else find(sensor)
            if watch is not None:
                watch.feed(row, changes)
        if changes:
            self._apply(changes)

    def _on_ready(self) -> None:
        """A burst of hub events: feed them all, then act on what changed."""
        changes: list[Change] = []
        targets_of, route, parse = self._targets, self._route, datetime.fromisoformat
        for event in self._subscription.drain():
            channel = event.channel
            targets = targets_of[channel] if channel in targets_of else route(channel)
            if targets is None:
                continue
            data = event.data
            try:
                if isinstance(targets, _Watch):
                    t_us = round(parse(data["timestamp"]).timestamp() * 1e6)
                    row = (channel.removeprefix("logger/"), data["unit"], t_us,
                           float(data["value"]))
                    targets.feed(row, changes)
                else:
                    now = time.time()
                    for alarm in targets:
                        active, reason = event_verdict(alarm.rule, data)
                        changes += alarm.observe(now, active, None, reason)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("alarms: cannot use event %s %r: %s", channel, data, exc)
        if changes:
            self._apply(changes)
        sub = self._subscription
        if sub.coalesced + sub.dropped != self._missed:
            if not self._missed:
                log.warning("alarms: the hub coalesced readings before the alarms saw them "
                            "(they saw the latest of each sensor); counted under readings in "
                            "/api/v1/alarms, warned once")
            self._missed = sub.coalesced + sub.dropped

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - one bad tick must not end the ticker
                log.exception("alarms: tick failed")

    def _tick(self) -> None:
        """Staleness and the logger's spool, checked every `tick_s`."""
        now = time.time()
        changes: list[Change] = []
        for watch in self._stale:
            watch.check_stale(now, changes)
        if self._status_alarms and self.logger is not None:
            status = self.logger.status()
            for alarm in self._status_alarms:
                active, reason = event_verdict(alarm.rule, status)
                changes += alarm.observe(now, active, None, reason)
        if changes:
            self._apply(changes)

    def _due(self, alarm: Alarm) -> None:
        self._timers.pop(alarm.name, None)
        changes = alarm.check(time.time())
        if changes:
            self._apply(changes)
        self._schedule(alarm)

    def _schedule(self, alarm: Alarm) -> None:
        """A timer for the alarm's next deadline (for_s, reminders, a silence's end)."""
        deadline = alarm.deadline()
        timer = self._timers.get(alarm.name)
        when = None if deadline is None else self._loop.time() + max(0.0, deadline - time.time())
        if timer is not None:
            if deadline is not None and abs(timer.when() - when) < 1e-3:
                return
            timer.cancel()
            del self._timers[alarm.name]
        if when is not None:
            self._timers[alarm.name] = self._loop.call_at(when, self._due, alarm)

    # -- acting on changes ---------------------------------------------------------------

    def _apply(self, changes: list[Change]) -> None:
        """Publish, store and notify what changed: one hand-over per channel for the batch."""
        changed: dict[str, Alarm] = {}
        events, notices = [], collections.defaultdict(list)
        for change in changes:
            alarm = change.alarm
            changed[alarm.name] = alarm
            value = change.value if change.value is not None else alarm.value
            message = self.message(alarm, change.value)
            if change.stored:
                self.transitions += 1
                level = logging.WARNING if change.state == FIRING else logging.INFO
                log.log(level, "alarm %s: %s -> %s: %s", alarm.name, change.previous,
                        change.state, message)
                events.append({"time": change.time, "alarm": alarm.name, "state": change.state,
                               "previous": change.previous, "severity": alarm.rule.severity,
                               "value": value, "message": message, "who": change.who,
                               "why": change.why, "until": change.until})
            if change.notice:
                notice = self._notice(alarm, change, message)
                for channel in alarm.rule.notify:
                    notices[channel].append(notice)
        for name, alarm in changed.items():
            self.hub.publish(f"alarm/{name}", self.alarm_json(alarm))
            self._schedule(alarm)
        if self.history is not None:
            self.history.record(events, {n: a.snapshot() for n, a in changed.items()})
        for channel, batch in notices.items():
            for outbox in self.outboxes[channel]:
                outbox.put(batch)

    def _latest(self, alarm: Alarm) -> tuple[float | None, str]:
        """The alarm's value and unit: its sensor's newest reading, else what it last saw."""
        watch = self._watches.get(alarm.subject) if alarm.rule.sensor else None
        if watch is not None and watch.recent:
            _, unit, _, value = watch.recent[-1]
            return value, unit
        return alarm.value, alarm.unit

    def fields(self, alarm: Alarm, value: float | None = None) -> dict:
        """The template's fields; `value` (if given) instead of the sensor's newest."""
        rule, condition = alarm.rule, self._conditions.get(alarm.name)
        latest, unit = self._latest(alarm)
        value = latest if value is None else value
        threshold = getattr(condition, "level", None)
        if threshold is None:
            threshold = rule.above if rule.above is not None else rule.below
        return _Fields(
            name=alarm.name, rule=rule.name, sensor=alarm.subject, lock=alarm.subject,
            value=value if value is not None else math.nan, unit=unit,
            threshold=threshold if threshold is not None else math.nan,
            rate=getattr(condition, "rate", None) or math.nan,
            stale_s=rule.stale_s or math.nan, reason=alarm.reason, severity=rule.severity,
            state=alarm.state)

    def message(self, alarm: Alarm, value: float | None = None) -> str:
        """The rule's message template filled in for the alarm (at `value`, if given)."""
        try:
            return alarm.rule.message.format_map(self.fields(alarm, value))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return f"{alarm.name}: {alarm.state} ({alarm.rule.describe()}; message: {exc})"

    def _notice(self, alarm: Alarm, change: Change, message: str) -> dict:
        watch = self._watches.get(alarm.subject) if alarm.rule.sensor else None
        recent = watch.recent if watch is not None else None
        value, unit = self._latest(alarm)
        if change.value is not None:  # the value that made the change, not a newer one
            value = change.value
        return {"alarm": alarm.name, "rule": alarm.rule.name, "subject": alarm.subject,
                "notice": change.notice, "state": alarm.state, "severity": alarm.rule.severity,
                "message": message, "condition": alarm.rule.describe(),
                "time": _iso(change.time), "since": _iso(alarm.since), "value": value,
                "unit": unit,
                "recent": [[_iso(t_us / 1e6), v] for _, _, t_us, v in recent] if recent else []}

    # -- what the API shows ----------------------------------------------------------------

    def alarm_json(self, alarm: Alarm) -> dict:
        rule = alarm.rule
        acked = alarm.acked and {**alarm.acked, "time": _iso(alarm.acked["time"])}
        silence = alarm.silence and {**alarm.silence, "until": _iso(alarm.silence["until"]),
                                     "time": _iso(alarm.silence["time"])}
        value, unit = self._latest(alarm)
        return {"name": alarm.name, "rule": rule.name, "subject": alarm.subject,
                "state": alarm.state, "since": _iso(alarm.since), "severity": rule.severity,
                "message": self.message(alarm), "condition": rule.describe(),
                "value": value, "unit": unit, "acknowledged": acked,
                "silenced": silence, "notify": rule.notify}

    def overview(self) -> dict:
        """Every alarm (firing first, then by severity and name) and every channel's state."""
        alarms = sorted(self.alarms.values(), key=lambda a: (
            _STATE_RANK[a.state], _SEVERITY_RANK[a.rule.severity], a.name))
        return {"alarms": [self.alarm_json(a) for a in alarms],
                "firing": sum(a.state == FIRING for a in alarms),
                "notify": [o.status() for outboxes in self.outboxes.values() for o in outboxes],
                "history": self.history.status() if self.history is not None else None,
                "readings": self.readings()}

    def readings(self) -> dict:
        """Readings the alarms never saw: `unheard` by the logger (its backlog to the alarms
        was full); without a logger, what they missed on the hub: `coalesced` (a newer one
        of the sensor came before the alarms drained the hub) and `dropped`."""
        sub = self._subscription
        return {"coalesced": sub.coalesced if sub is not None else 0,
                "dropped": sub.dropped if sub is not None else 0,
                "unheard": getattr(self.logger, "unheard", 0)}

    # -- operations (HTTP and RPC) ------------------------------------------------------

    def _select(self, name: str) -> list[Alarm]:
        """The alarm called `name`, or every alarm of the rule called `name`."""
        if name in self.alarms:
            return [self.alarms[name]]
        found = [a for a in self.alarms.values() if a.rule.name == name]
        if not found:
            known = ", ".join(sorted(self.alarms)[:20]) or "none"
            raise ApiError(404, f"no alarm or rule named {name!r}; alarms: {known}", "alarm")
        return found

    def _act(self, alarms: list[Alarm], act) -> list[dict]:
        changes = [act(a) for a in alarms]
        self._apply(changes)
        return [self.alarm_json(a) for a in alarms]

    def acknowledge(self, alarm: str, who: str, why: str = "") -> list[dict]:
        """Acknowledge a firing alarm: no reminders until it resolves."""
        who, why = _person(who), _note(why)
        selected = self._select(alarm)
        firing = [a for a in selected if a.state == FIRING]
        if not firing:
            states = ", ".join(sorted({a.state for a in selected}))
            raise ApiError(409, f"{alarm} is {states}; only a firing alarm can be acknowledged",
                           "alarm")
        now = time.time()
        return self._act(firing, lambda a: a.acknowledge(now, who, why))

    def silence(self, alarm: str, duration: str | float, who: str, why: str = "") -> list[dict]:
        """No notifications from the alarm (or the rule's alarms) for `duration`."""
        who, why = _person(who), _note(why)
        seconds = _duration(duration)
        now = time.time()
        return self._act(self._select(alarm), lambda a: a.silence_for(now, seconds, who, why))

    def unsilence(self, alarm: str, who: str, why: str = "") -> list[dict]:
        """End the silence of the alarm (or of the rule's alarms)."""
        who, why = _person(who), _note(why)
        silenced = [a for a in self._select(alarm) if a.silence is not None]
        if not silenced:
            raise ApiError(409, f"{alarm} is not silenced", "alarm")
        now = time.time()
        return self._act(silenced, lambda a: a.unsilence(now, who, why))

    async def events(self, start: datetime, end: datetime, alarm: str | None = None,
                     limit: int = 1000) -> list[dict]:
        """Stored transitions in [start, end), read on an executor."""
        if self.history is None:
            raise ApiError(503, "this lab keeps no alarm history (no logger database)")
        if not 1 <= limit <= 100_000:
            raise ApiError(400, f"limit: expected 1..100000, got {limit}", "limit")
        if end <= start:
            raise ApiError(400, "end: expected a time after start", "end")
        from ..logger.store import StoreError

        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, self.history.events, start, end, alarm, limit)
        except StoreError as exc:
            raise ApiError(503, f"alarm history unavailable: {exc}") from None

    async def history_rpc(self, start: str | None = None, end: str | None = None,
                          alarm: str | None = None, limit: int = 1000) -> list[dict]:
        """RPC form of `events`: ISO 8601 times (default: the last 24 h)."""
        from .api import time_range

        begin, finish = time_range(start, end)
        return await self.events(begin, finish, alarm, limit)


def _person(who) -> str:
    if not isinstance(who, str) or not who.strip() or len(who) > MAX_WHO \
            or not who.isprintable():
        raise ApiError(400, f"who: expected your name (1..{MAX_WHO} printable characters), "
                       f"got {who!r}", "who")
    return who.strip()


def _note(why) -> str:
    if not isinstance(why, str) or len(why) > 1000 or not why.replace("\n", " ").isprintable():
        raise ApiError(400, "why: expected a note of at most 1000 printable characters", "why")
    return why.strip()


def _duration(value) -> float:
    """Seconds from a number or a duration text (90s, 30min, 2h, 1d)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value, "duration")
        except QueryError as exc:
            raise ApiError(400, str(exc), "duration") from None
    if not (0 < seconds <= MAX_SILENCE_S and math.isfinite(seconds)):  # bound first: huge ints
        raise ApiError(400, f"duration: expected more than 0 and at most 30 days, got "
                       f"{value!r}", "duration")
    return seconds

