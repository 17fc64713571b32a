"""What every ionlab driver shares: readings, statuses, errors and the device base.

A driver is blocking and thread-safe: one call into the instrument at a time,
guarded by the device's lock. It never imports tornado, a database or services/.

>>> r = Reading("chamber", 1.2e-9, "mbar", utcnow(), Status.OK)
>>> r.ok, r.status.value
(True, 'ok')

A value that is not finite is never a measurement (a gauge answering
``+1E+999`` parses as infinity), so such a reading carries the status "error":

>>> Reading("chamber", float("+1E+999"), "mbar", utcnow()).status.value
'error'
"""

from __future__ import annotations

import enum
import functools
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "Device",
    "DeviceError",
    "NotOpenError",
    "ProtocolError",
    "Reading",
    "Status",
    "TimeoutError",
    "excerpt",
    "locked",
    "utcnow",
]

#: how much of an instrument's answer an error message quotes
EXCERPT_CHARS = 80


def utcnow() -> datetime:
    """The present moment as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def excerpt(answer: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """An instrument's answer as quoted in an error: its repr, cut to about `limit` characters.

    >>> excerpt(b"0,+1.2E-09")
    "b'0,+1.2E-09'"
    >>> excerpt(b"x" * 5_000_000, limit=12)
    "b'xxxxxxxx'... (5000000 bytes)"
    """
    if len(answer) <= limit:
        return repr(answer)
    size = f"{len(answer)} {'bytes' if isinstance(answer, bytes) else 'characters'}"
    return f"{answer[:limit - 4]!r}... ({size})"


class Status(enum.Enum):
    """What a reading's value means; only OK values are measurements."""

    OK = "ok"
    NO_VALUE = "no value"
    NO_SIGNAL = "no signal"
    BAD_SIGNAL = "bad signal"
    UNDEREXPOSED = "underexposed"
    OVEREXPOSED = "overexposed"
    WAVEMETER_MISSING = "wavemeter missing"
    NOT_AVAILABLE = "not available"
    CHANNEL_NOT_AVAILABLE = "channel not available"
    NO_VALUE_YET = "no value yet"
    OUT_OF_RANGE = "out of range"
    UNDERRANGE = "underrange"
    OVERRANGE = "overrange"
    SENSOR_ERROR = "sensor error"
    SENSOR_OFF = "sensor off"
    NO_SENSOR = "no sensor"
    ERROR = "error"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one sensor, stamped in UTC when the device was read."""

    sensor: str
    value: float
    unit: str
    timestamp: datetime
    status: Status = Status.OK

    def __post_init__(self):
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError(f"reading of {self.sensor!r}: timestamp must be timezone-aware")
        if self.status is Status.OK and not math.isfinite(self.value):
            object.__setattr__(self, "status", Status.ERROR)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


class DeviceError(Exception):
    """A device failed; the message names the device and what went wrong."""

    def __init__(self, device: str, message: str):
        super().__init__(f"{device}: {message}")
        self.device = device


class NotOpenError(DeviceError):
    """A call was made on a device that is not open."""


class ProtocolError(DeviceError):
    """The instrument answered something the protocol does not allow."""


class TimeoutError(DeviceError):  # noqa: A001 - the device's own timeout, not the builtin
    """The instrument did not answer in time."""


def locked(method):
    """Run a device method holding the device's lock (one call into a device at a time)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class Device:
    """Base of every driver: open/close, a context manager and `read()`.

    Subclasses implement `_open`, `_close` and `_read`; the base takes the lock,
    tracks whether the device is open and refuses calls on a closed device.
    """

    kind = "device"

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.RLock()
        self._is_open = False

    def __repr__(self):
        state = "open" if self._is_open else "closed"
        return f"<{type(self).__name__} {self.name!r} {state}>"

    @property
    def is_open(self) -> bool:
        return self._is_open

    def sensor_names(self) -> list[str]:
        """The sensors `read()` reports, known before the device is opened."""
        return [self.name]

    @locked
    def open(self):
        if not self._is_open:
            self._open()
            self._is_open = True
        return self

    @locked
    def close(self):
        if self._is_open:
            self._is_open = False
            self._close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    @locked
    def read(self) -> list[Reading]:
        """Read every sensor of the device once."""
        self._require_open()
        return self._read()

    def _require_open(self):
        if not self._is_open:
            raise NotOpenError(self.name, "device is not open; call open() first")

    def _open(self):
        pass

    def _close(self):
        pass

    def _read(self) -> list[Reading]:
        raise NotImplementedError
