"""Which driver class serves which `kind` of device, real or simulated.

Classes are named as strings and imported only when a device of that kind is
opened, so a lab without pyvisa never imports it.

>>> sorted(KINDS)[:2]
['dac', 'highfinesse']
"""

from __future__ import annotations

import importlib
import inspect

from .base import Device

__all__ = ["KINDS", "OptionError", "create", "driver_class"]

#: kind -> (real driver, simulated twin), each as "module:Class"
KINDS: dict[str, tuple[str, str]] = {
    "highfinesse": (
        "drivers.highfinesse.wlm:Wavemeter",
        "drivers.highfinesse.simulated:SimWavemeter",
    ),
    "tpg": ("drivers.pfeiffer.tpg:TPG", "drivers.pfeiffer.tpg:SimTPG"),
    "pm100": ("drivers.thorlabs.pm100:PM100", "drivers.thorlabs.pm100:SimPM100"),
    "ls218": ("drivers.lakeshore.ls218:LS218", "drivers.lakeshore.ls218:SimLS218"),
    "dac": ("drivers.analog.dac:ScpiDAC", "drivers.analog.dac:SimDAC"),
}


class OptionError(ValueError):
    """A device option is unknown, missing or of the wrong kind."""

    def __init__(self, key: str, expected: str):
        super().__init__(f"{key}: {expected}")
        self.key = key
        self.expected = expected


def driver_class(kind: str, simulation: bool) -> type[Device]:
    """The class that drives `kind` (its simulated twin when `simulation`)."""
    try:
        target = KINDS[kind][1 if simulation else 0]
    except KeyError:
        raise OptionError("kind", f"one of {', '.join(sorted(KINDS))}, not {kind!r}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def create(kind: str, name: str, simulation: bool = False, options: dict | None = None) -> Device:
    """A closed device of `kind` named `name`, built from its options.

    Options are checked against the driver's constructor: an unknown or missing
    one raises OptionError naming it.
    """
    cls = driver_class(kind, simulation)
    options = dict(options or {})
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in accepted:
            known = ", ".join(accepted) or "none"
            raise OptionError(key, f"unknown option for {kind}; known: {known}")
    for key in accepted:
        if params[key].default is inspect.Parameter.empty and key not in options:
            raise OptionError(key, f"required by {kind}")
    return cls(name, **options)
