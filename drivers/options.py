"""Checks for driver constructor options, raising OptionError that names the option.

Config values arrive from TOML, so numbered tables have string keys::

    >>> numbered_names("gauges", {"1": "chamber"}, range(1, 7))
    {1: 'chamber'}
    >>> numbered_names("gauges", {"9": "chamber"}, range(1, 7))
    Traceback (most recent call last):
    ...
    drivers.registry.OptionError: gauges: keys are numbers 1-6, not '9'
"""

from __future__ import annotations

import math

from .registry import OptionError

__all__ = ["integer", "number", "numbered_names", "seconds", "text"]

#: the range of every timeout an instrument may be given (s)
TIMEOUT_S = (0.001, 600.0)


def text(key: str, value) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise OptionError(key, f"expected a non-empty string, got {value!r}")
    return value


def integer(key: str, value) -> int:
    """An integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(key, f"expected an integer, got {value!r}")
    return value


def number(key: str, value, *, positive: bool = False) -> float:
    """A finite number (int accepted), > 0 when `positive`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OptionError(key, f"expected a number, got {value!r}")
    if positive and value <= 0:
        raise OptionError(key, f"expected a number > 0, got {value!r}")
    return float(value)


def seconds(key: str, value, span: tuple[float, float] = TIMEOUT_S) -> float:
    """A time in seconds within `span` (a timeout of 1e308 s is a typo, not a wish).

    >>> seconds("timeout_s", 1e308)
    Traceback (most recent call last):
    ...
    drivers.registry.OptionError: timeout_s: expected 0.001 to 600 seconds, got 1e+308
    """
    low, high = span
    value = number(key, value)
    if not low <= value <= high:
        raise OptionError(key, f"expected {low:g} to {high:g} seconds, got {value!r}")
    return value


def numbered_names(key: str, value, numbers: range) -> dict[int, str]:
    """A table {"1": "name", ...} of distinct names for numbered inputs, in input order."""
    if not isinstance(value, dict) or not value:
        raise OptionError(key, f"expected a table like {{ 1 = \"name\" }}, got {value!r}")
    span = f"{numbers.start}-{numbers.stop - 1}"
    names: dict[int, str] = {}
    for k, name in value.items():
        n = int(k) if isinstance(k, int) or (isinstance(k, str) and k.isdigit()) else None
        if n not in numbers:
            raise OptionError(key, f"keys are numbers {span}, not {k!r}")
        text(f"{key}.{k}", name)
        if name in names.values():
            raise OptionError(f"{key}.{k}", f"name {name!r} is used twice")
        names[n] = name
    return dict(sorted(names.items()))
