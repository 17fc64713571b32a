"""What a series query is: sensor, time range, bucket width, aggregate, time zone.

Checked once here for the HTTP API, the CLI and analysis scripts alike; every
problem is a QueryError naming the field. What one query may cost is bounded
(`QueryTooLarge`, a subclass): at most `MAX_BUCKETS` buckets, and a range of at
most `SCAN_LIMITS` for what it reads: raw samples over a month, the 1-minute
rollup over ten years, the hourly one over a century. Times are microseconds since the
Unix epoch (UTC) inside; buckets are aligned to the epoch in UTC, or to local
wall-clock time when a time zone is asked for (daily buckets start at local
midnight).

>>> parse_every("90s"), parse_every("5min"), parse_every("1d")
(90, 300, 86400)
>>> q = make_query("chamber", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00+00:00", "1h", "max")
>>> q.every, q.agg, q.rollup
(3600, 'max', 3600)
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ..web import times

__all__ = [
    "AGGREGATES",
    "MAX_BUCKETS",
    "MAX_POINTS",
    "ROLLUPS",
    "SCAN_LIMITS",
    "Query",
    "QueryError",
    "QueryTooLarge",
    "bucket_label",
    "from_us",
    "make_query",
    "offset_segments",
    "parse_duration",
    "parse_every",
    "parse_time",
    "rows_csv",
    "rows_json",
    "to_us",
]

AGGREGATES = ("avg", "min", "max", "count", "first", "last")
#: aggregates the rollup tables answer exactly
ROLLUP_AGGREGATES = ("avg", "min", "max", "count")
#: rollup widths in seconds, coarsest first
ROLLUPS = (3600, 60)
MAX_BUCKETS = 100_000
MAX_POINTS = 100_000
#: the longest range a query may read, by what answers it (rollup width in s, None: raw)
SCAN_LIMITS = {None: timedelta(days=31), 60: timedelta(days=3653), 3600: timedelta(days=36525)}
_SOURCES = {None: "raw samples", 60: "the 1-minute rollup", 3600: "the hourly rollup"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d{1,12})\s*([a-z]+)\s*$")


class QueryError(ValueError):
    """A query argument is wrong; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class QueryTooLarge(QueryError):
    """A query would cost more than one query may (too many buckets, too long a range)."""


def parse_duration(text: str, field: str = "every") -> int:
    """Whole seconds from '90s', '5min', '1h', '1d', '2w'."""
    match = _DURATION.match(text.lower()) if isinstance(text, str) else None
    if not match or match.group(2) not in _UNITS:
        raise QueryError(field, f"expected a duration like 90s, 5min, 1h, 1d or 2w, got {text!r}")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise QueryError(field, f"expected a duration > 0, got {text!r}")
    return seconds


def parse_every(text: str) -> int:
    """The bucket width of a query in seconds: a duration of at most what one query reads."""
    seconds = parse_duration(text, "every")
    if seconds > SCAN_LIMITS[3600].total_seconds():
        raise QueryError("every", f"expected a duration of at most {SCAN_LIMITS[3600].days} "
                         f"days, got {text!r}")
    return seconds


def parse_time(value: str | datetime, field: str, zone=None, now: datetime | None = None) -> datetime:
    """An aware datetime from what a person typed: ISO 8601 with an offset, ``-1h``, ``now``,
    ``today``, a date (see services.web.times); wall-clock input is read in `zone`."""
    try:
        return times.parse_time(value, field, now=now, zone=zone)
    except times.TimeError as exc:
        raise QueryError(field, exc.message) from None


def to_us(t: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, exactly."""
    return (t - EPOCH) // timedelta(microseconds=1)


def from_us(us: int, tz=UTC) -> datetime:
    when = EPOCH + timedelta(microseconds=us)  # EPOCH is in UTC
    return when if tz is UTC else when.astimezone(tz)


def bucket_label(local_us: int, tz) -> datetime:
    """The aware start of a bucket given as local wall-clock microseconds since 1970-01-01."""
    naive = datetime(1970, 1, 1) + timedelta(microseconds=local_us)
    return naive.replace(tzinfo=tz)


def offset_segments(tz, start_us: int, end_us: int) -> list[tuple[int | None, int]]:
    """The UTC offsets of `tz` over [start, end): [(until_us, offset_us), ...], last until None.

    Offsets are probed daily and each change is located exactly by bisection.
    """
    day = 86400 * 10**6

    def offset(us: int) -> int:
        return from_us(us, tz).utcoffset() // timedelta(microseconds=1)

    segments: list[tuple[int | None, int]] = []
    t, current = start_us, offset(start_us)
    while t < end_us:
        nxt = min(t + day, end_us)
        if offset(nxt) != current:
            lo, hi = t, nxt  # offset(lo) == current != offset(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == current:
                    lo = mid
                else:
                    hi = mid
            segments.append((hi, current))
            t, current = hi, offset(hi)
        else:
            t = nxt
    segments.append((None, current))
    return segments


@dataclass(frozen=True)
class Query:
    """A checked query: raw samples when `every` is None, else buckets of `every` seconds."""

    sensor: str
    start: datetime
    end: datetime
    every: int | None = None
    agg: str = "avg"
    tz: ZoneInfo | None = None

    @property
    def start_us(self) -> int:
        return to_us(self.start)

    @property
    def end_us(self) -> int:
        return to_us(self.end)

    @functools.cached_property
    def rollup(self) -> int | None:
        """The coarsest rollup width (s) that answers this query exactly, or None for raw data."""
        if self.every is None or self.agg not in ROLLUP_AGGREGATES:
            return None
        for width in ROLLUPS:
            if self.every % width:
                continue
            if self.tz is not None:
                offsets = {o for _, o in offset_segments(self.tz, self.start_us, self.end_us)}
                if any(o % (width * 10**6) for o in offsets):
                    continue
            return width
        return None

    def label(self, bucket: int | datetime) -> datetime:
        """A bucket start as an aware datetime in the query's zone (UTC by default)."""
        if isinstance(bucket, int):  # µs since 1970 in UTC, or on the wall clock of tz
            return from_us(bucket) if self.tz is None else bucket_label(bucket, self.tz)
        if bucket.tzinfo is None:
            return bucket.replace(tzinfo=self.tz or UTC)
        return bucket.astimezone(self.tz or UTC)


def make_query(sensor: str, start, end, every: str | int | None = None, agg: str | None = None,
               tz: str | None = None) -> Query:
    """A Query from user input, or QueryError naming the first wrong field."""
    if not sensor or not isinstance(sensor, str):
        raise QueryError("sensor", "a sensor name is required")
    try:
        zone = times.parse_zone(tz) if tz else None
    except times.TimeError as exc:
        raise QueryError("tz", exc.message) from None
    now = times.utcnow()  # one moment for both ends: "-1h" to "now" is exactly an hour
    start, end = parse_time(start, "start", zone, now), parse_time(end, "end", zone, now)
    if end <= start:
        raise QueryError("end", f"must be after start ({start.isoformat()})")
    if isinstance(every, str):
        every = parse_every(every) if every.strip() else None
    agg = agg or "avg"
    if agg not in AGGREGATES:
        raise QueryError("agg", f"expected one of {', '.join(AGGREGATES)}, got {agg!r}")
    span = end - start
    if span > SCAN_LIMITS[3600]:
        raise QueryTooLarge("end", f"a range of {span.days} days; at most "
                            f"{SCAN_LIMITS[3600].days} per query")
    if every is not None:
        buckets = span / timedelta(seconds=every)
        if buckets > MAX_BUCKETS:
            raise QueryTooLarge("every", f"{buckets:.0f} buckets; at most {MAX_BUCKETS} per "
                                "query: ask for wider buckets or a shorter range")
    query = Query(sensor, start, end, every, agg, zone)
    source = query.rollup
    if span > SCAN_LIMITS[source]:
        wider = "buckets of whole hours (every=1h, 1d, ...)" if source == 60 else \
            "buckets of whole minutes or hours (every=1min, 1h, ...; avg, min, max or count)"
        raise QueryTooLarge("end", f"a range of {span.days} days read from {_SOURCES[source]}; "
                            f"at most {SCAN_LIMITS[source].days} days: ask for {wider} or a "
                            "shorter range")
    return query


def rows_csv(rows: list[tuple[datetime, float]]) -> str:
    """A header line, then one `time,value` row per bucket (or sample)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("time", "value"))
    writer.writerows((t.isoformat(), repr(v) if isinstance(v, float) else v) for t, v in rows)
    return out.getvalue()


def rows_json(query: Query, rows: list[tuple[datetime, float]], unit: str | None) -> str:
    body = {
        "sensor": query.sensor,
        "unit": unit,
        "start": query.start.isoformat(),
        "end": query.end.isoformat(),
        "every": query.every,
        "agg": query.agg if query.every else None,
        "tz": str(query.tz) if query.tz else None,
        "points": [[t.isoformat(), v] for t, v in rows],
    }
    return json.dumps(body, allow_nan=False)
