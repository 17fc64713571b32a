"""Readings as columns: what a batch of thousands is on its way to the spool and the store.

A `Columns` holds n readings as four columns: the (sensor, unit) pairs it
names once each, and per reading an index into them (u32), the time (i64
µs) and the value (f64), in C arrays. Parsing line protocol, the spool's
records and binary COPY all work on whole columns, so no Python object is
made per reading on the way. It is also a sequence of rows (sensor, unit,
time, value), for whatever reads readings one at a time.

>>> c = Columns.from_rows([("a", "K", 1, 2.0), ("b", "", 2, 3.5), ("a", "K", 3, 4.0)])
>>> c.sensors, list(c.index), len(c), c[1], list(c[1:])
([('a', 'K'), ('b', '')], [0, 1, 0], 3, ('b', '', 2, 3.5), [('b', '', 2, 3.5), ('a', 'K', 3, 4.0)])
>>> Columns.from_rows([("a", "", 1.5, 2.0)])
Traceback (most recent call last):
...
TypeError: a time is not an integer
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence

from .store import Row

__all__ = ["Columns"]

_INT64 = 1 << 63


class Columns(Sequence):
    """n readings as columns (see the module docstring)."""

    __slots__ = ("sensors", "index", "times", "values")

    def __init__(self, sensors: list[tuple[str, str]], index: array, times: array,
                 values: array):
        self.sensors = sensors  # (name, unit) of each index
        self.index = index  # array("I")
        self.times = times  # array("q"), µs since the epoch
        self.values = values  # array("d"), finite

    def __repr__(self):
        return f"<Columns {len(self.times)} readings of {len(self.sensors)} sensors>"

    @classmethod
    def from_rows(cls, rows: Iterable[Row]) -> Columns:
        """The rows as columns; TypeError or ValueError (naming the problem) if a row is not
        (str, str, integer µs in 64 bits, finite number)."""
        if isinstance(rows, Columns):
            return rows
        rows = list(rows)
        pairs = [(s, u) for s, u, _, _ in rows]
        at = {pair: k for k, pair in enumerate(dict.fromkeys(pairs))}
        if not all(isinstance(s, str) and isinstance(u, str) for s, u in at):
            raise TypeError("a sensor name or unit is not a string")
        times = [r[2] for r in rows]
        if not set(map(type, times)) <= {int} and not all(
                isinstance(t, int) and not isinstance(t, bool) for t in times):
            raise TypeError("a time is not an integer")
        if times and not (-_INT64 <= min(times) and max(times) < _INT64):
            raise OverflowError("a time is out of range (64-bit µs)")
        values = [r[3] for r in rows]
        if not set(map(type, values)) <= {float, int} and not all(
                isinstance(v, int | float) for v in values):
            raise TypeError("a value is not a number")
        columns = cls(list(at), array("I", map(at.__getitem__, pairs)), array("q", times),
                      array("d", values))
        if not all(map(math.isfinite, columns.values)):
            raise ValueError("a value is not finite")
        return columns

    @classmethod
    def join(cls, parts: list[Columns]) -> Columns:
        """The readings of `parts`, in order, as one."""
        if len(parts) == 1:
            return parts[0]
        at: dict[tuple[str, str], int] = {}
        index, times, values = array("I"), array("q"), array("d")
        for part in parts:
            remap = [at.setdefault(pair, len(at)) for pair in part.sensors]
            if remap == list(range(len(remap))):
                index.extend(part.index)
            else:
                index.extend(map(remap.__getitem__, part.index))
            times.extend(part.times)
            values.extend(part.values)
        return cls(list(at), index, times, values)

    def __len__(self) -> int:
        return len(self.times)

    def __iter__(self) -> Iterator[Row]:
        names = [s for s, _ in self.sensors]
        units = [u for _, u in self.sensors]
        return zip(map(names.__getitem__, self.index), map(units.__getitem__, self.index),
                   self.times, self.values, strict=True)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return Columns(self.sensors, self.index[k], self.times[k], self.values[k])
        sensor, unit = self.sensors[self.index[k]]
        return sensor, unit, self.times[k], self.values[k]
