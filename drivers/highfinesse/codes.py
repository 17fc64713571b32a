"""What the vendor's return codes mean.

Get functions return a value, or an error code <= 0 in its place; set functions
return 0 or an error code from a separate number space (-1 is "no signal" from
a getter but "wavemeter missing" from a setter).

>>> status(-3)
<Status.UNDEREXPOSED: 'underexposed'>
>>> str(WavemeterError("wavemeter", "SetExposureNum(channel 3)", -3, SET_ERRORS[-3]))
'wavemeter: SetExposureNum(channel 3): parameter out of range (vendor code -3)'
"""

from __future__ import annotations

from drivers.base import DeviceError, Status

__all__ = ["GET_ERRORS", "SET_ERRORS", "WavemeterError", "check_get", "check_set", "status"]

#: get-function code -> (status of a reading, the vendor's meaning)
GET_ERRORS: dict[int, tuple[Status, str]] = {
    0: (Status.NO_VALUE, "no value"),
    -1: (Status.NO_SIGNAL, "no signal"),
    -2: (Status.BAD_SIGNAL, "bad signal"),
    -3: (Status.UNDEREXPOSED, "signal too low (underexposed)"),
    -4: (Status.OVEREXPOSED, "signal too big (overexposed)"),
    -5: (Status.WAVEMETER_MISSING, "wavemeter missing (software not running)"),
    -6: (Status.NOT_AVAILABLE, "not available"),
    -7: (Status.STALE, "nothing changed"),
    -8: (Status.NO_SIGNAL, "no pulse"),
    -10: (Status.CHANNEL_NOT_AVAILABLE, "channel not available"),
    -13: (Status.ERROR, "division by zero"),
    -14: (Status.OUT_OF_RANGE, "out of range"),
    -15: (Status.NOT_AVAILABLE, "unit not available"),
    -16: (Status.ERROR, "without calculation"),
    -26: (Status.ERROR, "TCP error"),
    -28: (Status.ERROR, "parameter out of range"),
    -29: (Status.ERROR, "string too long"),
    -30: (Status.ERROR, "interrupted by user"),
    -31: (Status.STALE, "info already fetched"),
    -32: (Status.NO_VALUE_YET, "no value yet"),
    -33: (Status.STALE, "no new value yet"),
}

#: set-function code -> the vendor's meaning
SET_ERRORS: dict[int, str] = {
    -1: "wavemeter missing (software not running)",
    -2: "could not set",
    -3: "parameter out of range",
    -4: "out of resources",
    -5: "internal error",
    -6: "not available",
    -7: "busy",
    -8: "not in measurement mode",
    -9: "only in measurement mode",
    -10: "channel not available",
    -11: "channel temporarily not available",
    -15: "unit not available",
    -24: "not available in switch mode",
    -25: "only available in switch mode",
    -26: "TCP error",
    -29: "string too long",
    -30: "interrupted by user",
}


def status(code: int) -> Status:
    """The status of a reading whose get function returned `code` (<= 0)."""
    return GET_ERRORS.get(code, (Status.ERROR, ""))[0]


class WavemeterError(DeviceError):
    """A vendor call failed; `.code` is the vendor's code, the message its meaning."""

    def __init__(self, device: str, call: str, code: int, meaning: str, missing: bool = False):
        super().__init__(device, f"{call}: {meaning} (vendor code {code})")
        self.call = call
        self.code = code
        self.missing = missing  # the wavemeter software was not running


def check_set(device: str, call: str, code: int) -> None:
    """Raise WavemeterError unless a set function returned 0."""
    if code != 0:
        raise WavemeterError(device, call, code, SET_ERRORS.get(code, "unknown error"), code == -1)


def check_get(device: str, call: str, value: int) -> int:
    """`value` of an integer get function, or WavemeterError when it is an error code."""
    if value < 0:
        meaning = GET_ERRORS.get(value, (None, "unknown error"))[1]
        raise WavemeterError(device, call, value, meaning, value == -5)
    return value
