"""The times people type: ISO 8601, times relative to now, ``today``, dates.

One parser for every boundary that takes a time from a person (``ionlab query``,
``/api/v1/series``, the dashboard's range picker), so each accepts the same
forms and refuses the rest with the same example:

- ISO 8601 with an offset: ``2026-12-01T14:30:00+01:00``, ``2026-12-01T13:30Z``,
  and a date with an offset, ``2026-12-01Z`` (midnight UTC);
- relative to now: ``now``, ``-15min``, ``-1h``, ``now-2d``, ``+30s``
  (units s, min (or m), h, d, w);
- ``today`` and ``yesterday``: midnight in the given zone (UTC without one);
- a date or a time without an offset, ``2026-12-01`` or ``2026-12-01T08:00``:
  wall-clock time in the given zone; without a zone it is refused, not guessed.

>>> from datetime import UTC, datetime
>>> from zoneinfo import ZoneInfo
>>> now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
>>> parse_time("-15min", "start", now=now).isoformat()
'2026-03-01T12:15:00+00:00'
>>> parse_time("today", "start", now=now).isoformat()
'2026-03-01T00:00:00+00:00'
>>> parse_time("today", "start", now=now, zone=ZoneInfo("Pacific/Auckland")).isoformat()
'2026-03-02T00:00:00+13:00'
>>> parse_time("2026-12-01Z", "end", now=now).isoformat()
'2026-12-01T00:00:00+00:00'
>>> try:
...     parse_time("2026-12-01", "end", now=now)
... except TimeError as exc:
...     print(exc)
end: time needs a UTC offset or a time zone: write 2026-12-01Z \
for UTC, 2026-12-01T00:00+01:00, or give a time zone (tz, e.g. Europe/Berlin)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["EXAMPLES", "TimeError", "parse_time", "parse_zone", "utcnow"]

#: what the error messages offer as examples
EXAMPLES = "2026-12-01T14:30:00+01:00, 2026-12-01Z, -15min, -1h, -2d, now, today"
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?)\s*([a-z]+)$")
_DATE_WITH_OFFSET = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*(Z|[+-]\d{2}(?::?\d{2})?)$")
_DAYS = {"today": 0, "yesterday": -1}


class TimeError(ValueError):
    """A time a person typed cannot be read; `field` names where it was typed."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def utcnow() -> datetime:
    """The present moment, aware, in UTC: the clock relative times count from."""
    return datetime.now(UTC)


def parse_zone(name: str, field: str = "tz") -> ZoneInfo:
    """The time zone of an IANA name ("Europe/Berlin", "UTC")."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError(field, f"unknown time zone {name!r} (use an IANA name like "
                        "'Europe/Berlin')") from None


def parse_time(value: str | datetime, field: str, *, now: datetime | None = None,
               zone: tzinfo | None = None) -> datetime:
    """An aware datetime from what a person typed (see the module docstring).

    `now` is the moment relative times count from (default: the clock now);
    `zone` is where wall-clock input (``today``, dates, times without an offset)
    is read. An aware datetime passes through; a naive one is refused.
    """
    try:
        if isinstance(value, datetime):
            parsed = _aware(value, field, zone=None, text=value.isoformat())
        elif isinstance(value, str):
            parsed = _parse(value, field, now, zone)
        else:
            raise TimeError(field, f"expected a time ({EXAMPLES}), got {value!r}")
        parsed.astimezone(UTC)  # an OverflowError beyond the years 1..9999 in UTC
    except OverflowError:
        raise TimeError(field, f"{str(value).strip()!r} is outside the years 1..9999 in "
                        "UTC") from None
    return parsed


def _parse(value: str, field: str, now: datetime | None, zone: tzinfo | None) -> datetime:
    text = value.strip()
    lowered = text.lower()
    if lowered == "now":
        return now or utcnow()
    if lowered in _DAYS:
        here = (now or utcnow()).astimezone(zone or UTC)
        day = here.date() + timedelta(days=_DAYS[lowered])
        return _midnight(day, zone or UTC)
    relative = _RELATIVE.match(lowered)
    if relative:
        return (now or utcnow()) + _offset(relative, text, field)
    dated = _DATE_WITH_OFFSET.match(text)
    if dated:
        text = f"{dated[1]}T00:00{'+00:00' if dated[2] == 'Z' else dated[2]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeError(field, f"cannot read {value.strip()!r} as a time; write ISO 8601 with "
                        f"an offset or a time relative to now, e.g. {EXAMPLES}") from None
    return _aware(parsed, field, zone, value.strip())


def _offset(match: re.Match, text: str, field: str) -> timedelta:
    sign, amount, unit = match.groups()
    if unit not in _UNITS:
        raise TimeError(field, f"unknown unit {unit!r} in {text!r}; use s, min, h, d or w "
                        "(e.g. -15min, -1h, -2d)")
    seconds = float(amount) * _UNITS[unit]
    return timedelta(seconds=seconds if sign == "+" else -seconds)


def _midnight(day, zone: tzinfo) -> datetime:
    """The first moment of `day` in `zone` (local midnight, folded to the earlier time)."""
    return datetime.combine(day, time(0), tzinfo=zone)


def _aware(value: datetime, field: str, zone: tzinfo | None, text: str) -> datetime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    if zone is not None:
        return value.replace(tzinfo=zone)
    dated = len(text) == 10
    utc, offset = (f"{text}Z", f"{text}T00:00+01:00") if dated else (f"{text}Z", f"{text}+01:00")
    raise TimeError(field, f"time needs a UTC offset or a time zone: write {utc} for UTC, "
                    f"{offset}, or give a time zone (tz, e.g. Europe/Berlin)")
