"""The ``[[alarms]]`` rules of the lab config, checked against what the lab has.

Each rule has one condition, on the subjects it names::

    [[alarms]]
    name = "chamber pressure"
    sensor = "chamber"          # a logged sensor; globs ("wavemeter/*") allowed
    above = 1e-9                # or below = ..., or both (a band)
    clear_below = 5e-10         # hysteresis: the level that clears it (default: above)
    for_s = 5                   # the condition must hold this long first
    severity = "critical"       # info, warning (default) or critical
    notify = ["oncall", "chat"] # [notify.NAME] channels (default: none, the page only)

Other conditions: ``rise_per_min`` / ``fall_per_min`` (rate over ``window_s``,
a factor per minute on a log scale, the default for pressure gauges),
``stale_s`` (no reading for that long) and ``event`` (``unlocked``,
``railed``, ``mode hop``, ``signal lost`` on the locks chosen by ``lock``;
``wavemeter missing``; ``spooling`` and ``spool full`` of the logger). Every
rule also takes ``clear_for_s``, ``repeat_s`` (remind while firing and not
acknowledged; 0 never) and ``message``, a template such as
``"{sensor} at {value:.2e} {unit}"``.

A rule on a glob or on several locks is one alarm per subject, named
``<rule>/<subject>``; otherwise the alarm has the rule's name. Every mistake
is a ConfigError naming the rule and the key:

>>> from services.config import parse
>>> catalog = Catalog({"chamber": "tpg"}, {1: "397 cooling"})
>>> parse_rules(parse('[[alarms]]\\nname = "p"\\nsensor = "chamber"\\nabove = 1e-9\\n'
...                   'clear_below = 2e-9'), catalog, set())
Traceback (most recent call last):
...
services.config.ConfigError: <config>: alarms."p".clear_below: expected at most above (1e-09), got 2e-09
"""

from __future__ import annotations

import fnmatch
import string
from dataclasses import dataclass, field

from ..config import Config, ConfigError, Section

__all__ = ["EVENTS", "FIELDS", "LOCK_EVENTS", "SEVERITIES", "Catalog", "Rule", "parse_rules"]

SEVERITIES = ("info", "warning", "critical")
LOCK_EVENTS = ("unlocked", "railed", "mode hop", "signal lost")
EVENTS = (*LOCK_EVENTS, "wavemeter missing", "spooling", "spool full")
#: what a message template may name
FIELDS = ("name", "rule", "sensor", "lock", "value", "unit", "threshold", "rate", "stale_s",
          "reason", "severity", "state")
PRESSURE_KINDS = ("tpg",)
MAX_NAME = 100

_KEYS = {"name", "sensor", "lock", "above", "below", "clear_below", "clear_above", "for_s",
         "clear_for_s", "rise_per_min", "fall_per_min", "scale", "window_s", "stale_s", "event",
         "spool_fraction", "severity", "message", "notify", "repeat_s"}
_CONDITIONS = {"threshold": ("above", "below"), "rate": ("rise_per_min", "fall_per_min"),
               "stale": ("stale_s",), "event": ("event",)}
_DEFAULT_MESSAGES = {
    "above": "{sensor} above {threshold:g} {unit}: {value:.3g} {unit}",
    "below": "{sensor} below {threshold:g} {unit}: {value:.3g} {unit}",
    "rate": "{sensor} changing by {rate:.3g} per minute: {value:.3g} {unit}",
    "stale": "{sensor}: no reading for {stale_s:g} s",
    "lock": "lock {lock}: {reason}",
    "event": "{reason}",
}
_SAMPLE = {"name": "n", "rule": "r", "sensor": "s", "lock": "1", "value": 1.0, "unit": "u",
           "threshold": 1.0, "rate": 1.0, "stale_s": 1.0, "reason": "x", "severity": "warning",
           "state": "firing"}


@dataclass(frozen=True)
class Catalog:
    """What rules may name: sensors (sensor -> device kind, "" if unknown) and lock
    channels (number -> name); `wavemeter` and `logger` say whether those services run."""

    sensors: dict[str, str]
    locks: dict[int, str] = field(default_factory=dict)
    wavemeter: bool = True
    logger: bool = True


@dataclass(frozen=True)
class Rule:
    """One checked ``[[alarms]]`` entry; `subjects` are the sensors or lock channels it
    watches from the start (a glob also takes sensors that appear later)."""

    name: str
    kind: str  # threshold, rate, stale, event
    subjects: tuple[str, ...]
    sensor: str | None = None
    event: str | None = None
    above: float | None = None
    below: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    rise_per_min: float | None = None
    fall_per_min: float | None = None
    log_scale: bool = False
    window_s: float = 60.0
    stale_s: float | None = None
    spool_fraction: float = 0.8
    for_s: float = 0.0
    clear_for_s: float = 0.0
    repeat_s: float = 3600.0
    severity: str = "warning"
    message: str = ""
    notify: tuple[str, ...] = ()
    per_subject: bool = False  # one alarm per subject, named <rule>/<subject>

    def alarm_name(self, subject: str) -> str:
        return f"{self.name}/{subject}" if self.per_subject else self.name

    def takes(self, sensor: str) -> bool:
        """Whether a sensor seen at run time belongs to this rule."""
        return self.sensor is not None and fnmatch.fnmatchcase(sensor, self.sensor)

    def describe(self) -> str:
        """The condition in words, for the page and the notifications."""
        if self.kind == "threshold":
            parts = []
            if self.above is not None:
                parts.append(f"above {self.above:g}")
            if self.below is not None:
                parts.append(f"below {self.below:g}")
            text = " or ".join(parts)
        elif self.kind == "rate":
            unit = "x" if self.log_scale else ""
            parts = [f"rising {unit}{self.rise_per_min:g}/min" if self.rise_per_min else "",
                     f"falling {unit}{self.fall_per_min:g}/min" if self.fall_per_min else ""]
            text = " or ".join(p for p in parts if p)
        elif self.kind == "stale":
            text = f"no reading for {self.stale_s:g} s"
        else:
            text = self.event
        return f"{text} for {self.for_s:g} s" if self.for_s else text


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def parse_rules(config: Config, catalog: Catalog, channels: set[str]) -> list[Rule]:
    """Every ``[[alarms]]`` rule, checked; `channels` are the ``[notify.*]`` names."""
    entries = config.data.get("alarms", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(config.file, "alarms", "expected [[alarms]] tables (an array of "
                          "tables), one per rule")
    rules, names = [], set()
    for i, data in enumerate(entries, 1):
        rule = _parse_rule(Section(config.file, f"alarms[{i}]", data), data, catalog, channels)
        if rule.name in names:
            raise ConfigError(config.file, f'alarms."{rule.name}".name',
                              "this name is used by an earlier rule; names must be unique")
        names.add(rule.name)
        rules.append(rule)
    return rules


def _parse_rule(anonymous: Section, data: dict, catalog: Catalog, channels: set[str]) -> Rule:
    name = anonymous.get("name", str).strip()
    if not name or len(name) > MAX_NAME or not name.isprintable() or "/" in name:
        raise anonymous.error("name", f"expected 1..{MAX_NAME} printable characters without "
                              f"'/', got {data['name']!r}")
    sec = Section(anonymous.file, f'alarms."{name}"', data)
    sec.check_keys(_KEYS)
    given = [kind for kind, keys in _CONDITIONS.items() if any(k in data for k in keys)]
    if len(given) != 1:
        keys = [k for kind in given for k in _CONDITIONS[kind] if k in data]
        what = f"{' and '.join(keys)} in one rule; split it into one [[alarms]] per condition" \
            if given else "missing; give above/below, rise_per_min/fall_per_min, stale_s or event"
        raise sec.error("condition" if not given else keys[1], what)
    kind = given[0]
    fields: dict = {"name": name, "kind": kind}
    if kind == "event":
        fields.update(_event(sec, data, catalog))
    else:
        if "lock" in data:
            raise sec.error("lock", "only for lock events (event = \"unlocked\", ...); "
                            "sensor rules name a sensor")
        fields.update(_sensors(sec, catalog))
        fields.update({"threshold": _threshold, "rate": _rate, "stale": _stale}[kind](
            sec, data, catalog, fields["subjects"]))
    for key in ("clear_below", "clear_above"):
        if key in data and kind != "threshold":
            raise sec.error(key, "only for above/below rules")
    for key in ("scale", "window_s"):
        if key in data and kind != "rate":
            raise sec.error(key, "only for rise_per_min/fall_per_min rules")
    if "spool_fraction" in data and fields.get("event") != "spool full":
        raise sec.error("spool_fraction", "only for event = \"spool full\"")
    fields["for_s"] = _seconds(sec, "for_s", 0.0)
    fields["clear_for_s"] = _seconds(sec, "clear_for_s", 0.0)
    fields["repeat_s"] = _seconds(sec, "repeat_s", Rule.repeat_s)
    severity = sec.get("severity", str, Rule.severity)
    if severity not in SEVERITIES:
        raise sec.error("severity", f"expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    fields["severity"] = severity
    fields["notify"] = _notify(sec, data, channels)
    fields["message"] = _message(sec, data, fields)
    return Rule(**fields)


def _seconds(sec: Section, key: str, default: float) -> float:
    value = sec.get(key, float, default)
    if value < 0:
        raise sec.error(key, f"expected seconds >= 0, got {value!r}")
    return value


def _sensors(sec: Section, catalog: Catalog) -> dict:
    pattern = sec.get("sensor", str)
    known = sorted(catalog.sensors)
    hint = (f"known: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''}; a sensor "
            "that only arrives pushed is declared under [logger.sensors]")
    if _is_glob(pattern):
        matched = tuple(s for s in known if fnmatch.fnmatchcase(s, pattern))
        if not matched:
            raise sec.error("sensor", f"the pattern {pattern!r} matches no sensor; {hint}")
        return {"sensor": pattern, "subjects": matched, "per_subject": True}
    if pattern not in catalog.sensors:
        raise sec.error("sensor", f"no sensor named {pattern!r}; {hint}")
    return {"sensor": pattern, "subjects": (pattern,)}


def _threshold(sec: Section, data: dict, catalog: Catalog, subjects) -> dict:
    above, below = sec.get("above", float, None), sec.get("below", float, None)
    clear_below = sec.get("clear_below", float, None)
    clear_above = sec.get("clear_above", float, None)
    if above is not None and below is not None and not below < above:
        raise sec.error("below", f"expected less than above ({above:g}), got {below:g}")
    if clear_below is not None:
        if above is None:
            raise sec.error("clear_below", "clears an `above` threshold; this rule has none")
        if clear_below > above:
            raise sec.error("clear_below", f"expected at most above ({above:g}), got "
                            f"{clear_below:g}")
    if clear_above is not None:
        if below is None:
            raise sec.error("clear_above", "clears a `below` threshold; this rule has none")
        if clear_above < below:
            raise sec.error("clear_above", f"expected at least below ({below:g}), got "
                            f"{clear_above:g}")
    if clear_above is not None and clear_below is not None and clear_above > clear_below:
        raise sec.error("clear_above", f"expected at most clear_below ({clear_below:g}): no "
                        f"value could clear both, got {clear_above:g}")
    return {"above": above, "below": below, "clear_below": clear_below,
            "clear_above": clear_above}


def _rate(sec: Section, data: dict, catalog: Catalog, subjects) -> dict:
    pressures = all(catalog.sensors.get(s) in PRESSURE_KINDS for s in subjects)
    scale = sec.get("scale", str, "log" if pressures else "linear")
    if scale not in ("log", "linear"):
        raise sec.error("scale", f"expected log or linear, got {scale!r}")
    out = {"log_scale": scale == "log", "window_s": sec.positive("window_s", Rule.window_s)}
    for key in ("rise_per_min", "fall_per_min"):
        value = sec.get(key, float, None)
        if value is None:
            continue
        if scale == "log" and value <= 1:
            raise sec.error(key, f"on a log scale this is a factor per minute, expected > 1 "
                            f"(e.g. 2: doubling), got {value:g}")
        if value <= 0:
            raise sec.error(key, f"expected units per minute > 0, got {value:g}")
        out[key] = value
    return out


def _stale(sec: Section, data: dict, catalog: Catalog, subjects) -> dict:
    return {"stale_s": sec.positive("stale_s")}


def _event(sec: Section, data: dict, catalog: Catalog) -> dict:
    event = sec.get("event", str)
    if event not in EVENTS:
        raise sec.error("event", f"expected one of {', '.join(EVENTS)}, got {event!r}")
    if "sensor" in data:
        raise sec.error("sensor", "not used by event rules (lock events choose with `lock`)")
    out: dict = {"event": event}
    if event in LOCK_EVENTS:
        if not catalog.locks:
            raise sec.error("event", f"{event!r} is a lock event, and this lab has no locks")
        locks = _locks(sec, data, catalog)
        out["subjects"] = tuple(str(n) for n in locks)
        out["per_subject"] = len(locks) > 1 or data.get("lock", "*") == "*"
    else:
        if "lock" in data:
            raise sec.error("lock", f"only for lock events, not {event!r}")
        if event == "wavemeter missing" and not catalog.wavemeter:
            raise sec.error("event", "this lab runs no wavemeter service")
        if event in ("spooling", "spool full") and not catalog.logger:
            raise sec.error("event", "this lab runs no logger")
        out["subjects"] = ("",)
        if event == "spool full":
            fraction = sec.positive("spool_fraction", Rule.spool_fraction)
            if fraction > 1:
                raise sec.error("spool_fraction", f"expected a fraction of the spool's bound "
                                f"in (0, 1], got {fraction:g}")
            out["spool_fraction"] = fraction
    return out


def _locks(sec: Section, data: dict, catalog: Catalog) -> list[int]:
    value = data.get("lock", "*")
    if value == "*":
        return sorted(catalog.locks)
    by_name = {name: n for n, name in catalog.locks.items()}
    out = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, int) and not isinstance(item, bool) and item in catalog.locks:
            out.append(item)
        elif isinstance(item, str) and item in by_name:
            out.append(by_name[item])
        else:
            known = ", ".join(f"{n} ({name})" for n, name in sorted(catalog.locks.items()))
            raise sec.error("lock", f"no lock {item!r}; expected \"*\", a channel number or "
                            f"name, or an array of them; locks: {known}")
    return sorted(set(out))


def _notify(sec: Section, data: dict, channels: set[str]) -> tuple[str, ...]:
    value = data.get("notify", [])
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise sec.error("notify", f"expected an array of [notify.NAME] names, got {value!r}")
    for n in names:
        if n not in channels:
            known = ", ".join(sorted(channels)) or "none configured"
            raise sec.error("notify", f"no [notify.{n}] channel; channels: {known}")
    return tuple(dict.fromkeys(names))


def _message(sec: Section, data: dict, fields: dict) -> str:
    template = sec.get("message", str, None)
    if template is None:
        kind = fields["kind"]
        if kind == "threshold":
            return _DEFAULT_MESSAGES["above" if fields["above"] is not None else "below"]
        if kind == "event":
            return _DEFAULT_MESSAGES["lock" if fields["event"] in LOCK_EVENTS else "event"]
        return _DEFAULT_MESSAGES[kind]
    try:
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None and name.split(".")[0].split("[")[0] not in FIELDS:
                raise sec.error("message", f"unknown field {{{name}}}; fields: "
                                f"{', '.join(FIELDS)}")
        template.format_map(_SAMPLE)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise sec.error("message", f"not a valid template ({exc}); e.g. "
                        "\"{sensor} at {value:.2e} {unit}\"") from None
    return template
