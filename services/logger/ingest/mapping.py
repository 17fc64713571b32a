"""From line protocol to ionlab sensors: names, units, tags, times and values.

The mapping is fixed, so the same point always lands on the same sensor:

- the sensor's name is the point's series key in canonical form (the
  measurement, then its tags sorted by key, escaped as line protocol
  escapes them), followed by a space and the field key unless the field is
  called ``value``::

      temperature,room=lab1 value=21.3            -> "temperature,room=lab1"
      temperature,room=lab1 humidity=40           -> "temperature,room=lab1 humidity"
      vacuum,gauge=ion\\ pump,unit=mbar value=2e-9  -> "vacuum,gauge=ion\\ pump" (unit mbar)

- a tag called ``unit`` is the sensor's unit and not part of its name; the
  other tags are kept as the sensor's metadata (``tags`` in /api/v1/sensors);
- floats are stored as they are, integers (``i``, ``u``) as the nearest
  double (exact up to 2**53), booleans as 1.0 and 0.0;
- string fields: with ``strings = "refuse"`` (the default) a line holding one
  is refused whole and reported; with ``strings = "skip"`` the string
  fields are left out, counted and logged once per sensor, and the line's
  numbers stored;
- a timestamp is converted from the request's precision to microseconds
  (rounded down); a line without one gets the time it was read, strictly
  increasing across the process, so two such lines never collide.

>>> m = Mapper()
>>> batch = Batch()
>>> m.convert([(1, "temperature,room=lab1,unit=K value=21.3,humidity=40i 1700000000")],
...           "s", batch)
>>> for row in batch.rows: print(row)
('temperature,room=lab1', 'K', 1700000000000000, 21.3)
('temperature,room=lab1 humidity', 'K', 1700000000000000, 40.0)
>>> batch.sensors["temperature,room=lab1"]
('K', {'room': 'lab1'})
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from array import array
from collections.abc import Iterable

from ..columns import Columns
from ..store import Row
from .lineprotocol import LineError, parse_fields, parse_key, split_line

try:
    from . import _simplelines
except ImportError:  # not built (no C compiler at install): runs are read by `_SIMPLE`
    _simplelines = None

__all__ = ["PRECISIONS", "RUN_READERS", "Batch", "Mapper", "arrival_us", "sensor_name"]

log = logging.getLogger(__name__)

#: precision name -> (multiplier, divisor) from its unit to microseconds
PRECISIONS = {
    "n": (1, 1000), "ns": (1, 1000), "u": (1, 1), "us": (1, 1), "ms": (1000, 1),
    "s": (10**6, 1), "m": (60 * 10**6, 1), "h": (3600 * 10**6, 1),
}
#: InfluxDB's time range (signed 64-bit nanoseconds), in microseconds
MAX_US = (2**63 - 2) // 1000
MAX_ERRORS = 20  # problems described in one answer (all are counted)
_MAX_SERIES = 100_000  # series names remembered between lines
#: the common line, nothing escaped or quoted, with its newline: "key field", float, timestamp
_SIMPLE = re.compile(r'^([^\s,="\\#][^\s"\\]* [^\s,="\\]+)='
                     r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?) (-?[0-9]+)\r?(?:\n|\Z)",
                     re.M)
_last_arrival = 0
_arrival_lock = threading.Lock()


def _columns(kind: str, raw: bytes) -> array:
    out = array(kind)
    out.frombytes(raw)
    return out


def run_by_expression(text: str, scale: int, divide: int) -> tuple | None:
    """(heads, index, times, values) of a run of simple lines, read with `_SIMPLE`: the
    distinct "key field" heads in order, and per line its head's index, its time in µs
    (timestamp * scale // divide) and its value; None when a line is not simple or a time
    or value is out of range."""
    parts = _SIMPLE.split(text)  # "", head, value, stamp, "", head, ... if all match
    if len(parts) // 4 != text.count("\n") + 1 or "".join(parts[0::4]):
        return None
    values = array("d", map(float, parts[2::4]))  # the pattern only lets floats through
    if not all(map(math.isfinite, values)):
        return None
    if scale == divide == 1:
        times = list(map(int, parts[3::4]))
    else:
        times = [int(stamp) * scale // divide for stamp in parts[3::4]]
    if not (-MAX_US <= min(times) and max(times) <= MAX_US):
        return None
    heads = parts[1::4]
    at = {head: k for k, head in enumerate(dict.fromkeys(heads))}
    return list(at), array("I", map(at.__getitem__, heads)), array("q", times), values


def run_compiled(text: str, scale: int, divide: int) -> tuple | None:
    """What `run_by_expression` gives, read by the compiled `_simplelines` in one pass."""
    run = _simplelines.simple(text, scale, divide, MAX_US)
    if run is None:
        return None
    heads, index, times, values = run
    return heads, _columns("I", index), _columns("q", times), _columns("d", values)


#: how Mapper reads a run of simple lines: compiled where the extension was built at install
RUN_READERS = {"expression": run_by_expression}
if _simplelines is not None:
    RUN_READERS["compiled"] = run_compiled
DEFAULT_RUNS = "compiled" if _simplelines is not None else "expression"


def arrival_us() -> int:
    """Now in µs since the epoch, strictly increasing across the process (thread-safe)."""
    global _last_arrival
    with _arrival_lock:
        now = time.time_ns() // 1000
        _last_arrival = now if now > _last_arrival else _last_arrival + 1
        return _last_arrival


def _escape(text: str, specials: str) -> str:
    for c in specials:
        if c in text:
            text = text.replace(c, "\\" + c)
    return text


def sensor_name(measurement: str, tags: dict[str, str], field: str = "value") -> str:
    """The sensor a point's field is stored as (see the module docstring).

    >>> sensor_name("temperature", {"room": "lab 1", "unit": "K"}, "humidity")
    'temperature,room=lab\\\\ 1 humidity'
    """
    key = _escape(measurement, ", ") + "".join(
        f",{_escape(k, ',= ')}={_escape(v, ',= ')}" for k, v in sorted(tags.items())
        if k != "unit")
    return key if field == "value" else f"{key} {_escape(field, ',= ')}"


class Batch:
    """What a run of lines became: rows, new sensors' metadata, and the problems."""

    def __init__(self):
        self.rows: list[Row] = []  # of lines read one at a time, since the last of `parts`
        self.parts: list[Columns | list[Row]] = []  # runs of simple lines, the rows before each
        self.sensors: dict[str, tuple[str, dict[str, str]]] = {}  # name -> (unit, tags)
        self.lines = 0  # lines that held a point
        self.stored_lines = 0
        self.dropped = 0  # lines refused
        self.strings_skipped = 0
        self.errors: list[tuple[int, str, str]] = []  # (line number, line, problem)
        self.counted = (0, 0)  # (stored_lines, dropped) already counted by the receiver

    def refuse(self, lineno: int, line: str | None, problem: str) -> None:
        self.dropped += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((lineno, (line or "").strip()[:200], problem))

    def take_rows(self) -> list[Columns | list[Row]]:
        """What was converted since the last call, in order: runs of simple lines as
        `Columns`, other lines as rows."""
        parts = self.parts
        if self.rows:
            parts.append(self.rows)
        self.rows, self.parts = [], []
        return parts

    def take_sensors(self) -> dict[str, tuple[str, dict[str, str]]]:
        sensors, self.sensors = self.sensors, {}
        return sensors

    def describe(self, limit: int = 3) -> str:
        """The problems as InfluxDB words them: "unable to parse '<line>': <problem>"."""
        parts = [f"unable to parse '{line}' (line {n}): {problem}"
                 for n, line, problem in self.errors[:limit]]
        if self.dropped > len(parts):
            parts.append(f"and {self.dropped - len(parts)} more")
        return "; ".join(parts)


class Mapper:
    """Turns lines into rows by the fixed mapping; remembers series it has seen.

    One Mapper is shared by every request (thread-safe: the memos are only
    added to, and cleared when large). A run of lines that all have the
    common form ``key field=<float> <timestamp>`` (nothing escaped, nothing
    quoted) is converted at once (`_simple`, by one of `RUN_READERS`), without
    a Python step per line; any other run is read line by line.
    """

    def __init__(self, strings: str = "refuse", runs: str = DEFAULT_RUNS):
        if strings not in ("refuse", "skip"):
            raise ValueError(f"strings: expected 'refuse' or 'skip', got {strings!r}")
        self.strings = strings
        self.read_run = RUN_READERS[runs]
        self.strings_skipped = 0
        self._series: dict[str, tuple[str, str, dict, dict]] = {}
        self._heads: dict[str, tuple[str, str]] = {}  # "key field" -> (sensor, unit)
        self._warned: set[str] = set()

    def __repr__(self):
        return f"<Mapper strings={self.strings} series={len(self._series)}>"

    def _new_series(self, key: str) -> tuple[str, str, dict, dict]:
        measurement, tags = parse_key(key)
        tag_dict = dict(tags)
        unit = tag_dict.pop("unit", "")
        if len(self._series) >= _MAX_SERIES:
            self._series.clear()
        series = (sensor_name(measurement, tag_dict), unit, tag_dict, {})
        self._series[key] = series
        return series

    def _sensor(self, series: tuple[str, str, dict, dict], field: str, batch: Batch) -> str:
        """The sensor of a series' field; a new one's unit and tags are noted in `batch`."""
        name, unit, tags, names = series
        sensor = names.get(field)
        if sensor is None:
            sensor = names[field] = name if field == "value" else \
                f"{name} {_escape(field, ',= ')}"
            batch.sensors[sensor] = (unit, tags)
        return sensor

    def convert(self, runs: Iterable[tuple[int, str | None]], precision: str, batch: Batch,
                ) -> None:
        """Add the rows of `runs` (first line number, lines joined by newlines; see
        LineReader) to `batch`; a bad line is refused and reported there."""
        for first, text in runs:
            if text is None:
                batch.refuse(first, None, "not UTF-8 text")
            elif not self._simple(text, precision, batch):
                self.convert_lines(enumerate(text.split("\n"), first), precision, batch)

    def _simple(self, text: str, precision: str, batch: Batch) -> bool:
        """Convert `text` at once if every line is simple and good; False (nothing added)
        otherwise."""
        run = self.read_run(text, *PRECISIONS[precision])
        if run is None:
            return False
        heads, index, times, values = run
        sensors = []  # of this run's heads (the memo may be cleared meanwhile)
        for head in heads:
            known = self._heads.get(head)
            if known is None:
                key, _, field = head.partition(" ")
                try:
                    series = self._series.get(key) or self._new_series(key)
                except LineError:
                    return False
                if len(self._heads) >= _MAX_SERIES:
                    self._heads.clear()
                known = self._heads[head] = (self._sensor(series, field, batch), series[1])
            sensors.append(known)
        if batch.rows:
            batch.parts.append(batch.rows)
            batch.rows = []
        batch.parts.append(Columns(sensors, index, times, values))
        batch.lines += len(times)
        batch.stored_lines += len(times)
        return True

    def convert_lines(self, lines: Iterable[tuple[int, str]], precision: str, batch: Batch,
                      ) -> None:
        """Add the rows of numbered lines to `batch`, one line at a time (what `convert`
        does with a run that is not all simple lines)."""
        scale, divide = PRECISIONS[precision]
        memo = self._series
        rows = batch.rows
        append = rows.append
        refuse = self.strings == "refuse"
        for lineno, line in lines:
            try:
                parts = split_line(line)
                if parts is None:
                    continue
                key, field_text, stamp = parts
                series = memo.get(key) or self._new_series(key)
                fields = parse_fields(field_text)
                if stamp:
                    if stamp[0] == " ":
                        stamp = stamp.strip(" ")
                    digits = stamp[1:] if stamp[0] == "-" else stamp
                    if not (digits.isdigit() and digits.isascii()):
                        raise LineError(f"invalid timestamp {stamp!r}: expected an integer")
                    t = int(stamp) * scale // divide
                    if not -MAX_US <= t <= MAX_US:
                        raise LineError(f"timestamp {stamp} is out of range")
                else:
                    t = arrival_us()
                if refuse and '"' in field_text:
                    for field, value in fields:
                        if value.__class__ is str:
                            raise LineError(f"field {field!r} is a string; ionlab stores "
                                            "numbers (strings = \"skip\" in [logger.ingest] "
                                            "stores the other fields)")
            except LineError as exc:
                batch.refuse(lineno, line, str(exc))
                continue
            name, unit, _, names = series
            batch.lines += 1
            start = len(rows)
            for field, value in fields:
                if value.__class__ is str:
                    self._skip_string(name, field, batch)
                    continue
                sensor = names.get(field) or self._sensor(series, field, batch)
                append((sensor, unit, t, float(value)))
            batch.stored_lines += len(rows) > start

    def _skip_string(self, name: str, field: str, batch: Batch) -> None:
        batch.strings_skipped += 1
        self.strings_skipped += 1
        where = f"{name} {field}"
        if where not in self._warned and len(self._warned) < _MAX_SERIES:
            self._warned.add(where)
            log.warning("line protocol: string field %r of %s not stored (strings = \"skip\"; "
                        "counted in /api/v1/logger/status, warned once per field)", field, name)
