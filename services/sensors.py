"""Which device a sensor belongs to, the name the config gives it, and its precision.

Sensors are named by their drivers: after the device (``power397``), after the
device and a number (``wavemeter/3``, ``dac/1``), or by a table of the
device's options that maps numbers to names (``gauges = { 1 = "chamber" }``).
A sensor ``<device>/<n>`` whose device has such a table (``channels = { 3 =
"854 quench" }``) gets that name beside its id. The logger's sensor list, the
dashboard and ``ionlab devices`` all take names from here.

`PRECISION` says, per unit, how many digits the lab's instruments resolve:
the dashboard and the CLI show values with exactly these.

>>> from services.config import load
>>> demo = load(None)
>>> source(demo, "wavemeter/1"), source(demo, "chamber"), source(demo, "trap rf")
(('wavemeter', '397 cooling'), ('chamber', ''), ('temperatures', ''))
>>> source(demo, "oven")
(None, '')
>>> format_value(1.16243e-10, "mbar"), format_value(755.2227013, "THz"), format_value(294.3, "K")
('1.1624e-10', '755.222701', '294.300')
"""

from __future__ import annotations

import math

from .config import Config

__all__ = ["PRECISION", "format_value", "precision", "source"]

#: unit -> {"decimals": n} or {"significant": n}: what the instruments resolve
PRECISION: dict[str, dict[str, int]] = {
    "THz": {"decimals": 6},  # the wavemeter's absolute value, to 1 MHz (its accuracy)
    "nm": {"decimals": 6},
    "MHz": {"decimals": 1},  # offsets and lock errors: the wavemeter resolves 0.1 MHz
    "mbar": {"significant": 5},  # the gauge controller's mantissa x.xxxx
    "Torr": {"significant": 5},
    "Pa": {"significant": 5},
    "K": {"decimals": 3},  # the temperature monitor's mK
    "W": {"significant": 4},  # the power meter's display
    "V": {"decimals": 4},  # analog outputs, 0.1 mV
}
DEFAULT_PRECISION = {"significant": 6}


def precision(unit: str | None) -> dict[str, int]:
    return PRECISION.get(unit or "", DEFAULT_PRECISION)


def format_value(value: float, unit: str | None) -> str:
    """`value` with the digits its unit's instruments resolve (``-`` when not a number)."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    spec = precision(unit)
    if "decimals" in spec:
        return f"{value:.{spec['decimals']}f}"
    digits = spec["significant"]
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    if -3 <= magnitude < digits:
        return f"{value:.{max(digits - 1 - magnitude, 0)}f}"
    return f"{value:.{digits - 1}e}"


def source(config: Config, sensor: str) -> tuple[str | None, str]:
    """(device, configured name) of a sensor: (None, "") when no device claims it; the name
    is "" when the sensor's id is its name."""
    device, _, number = sensor.partition("/")
    spec = config.devices.get(device)
    if spec is not None:
        name = next((v for k, v in _tables(spec.options) if str(k) == number), "")
        return device, name if number else ""
    for spec in config.devices.values():
        if any(v == sensor for _, v in _tables(spec.options)):
            return spec.name, ""
    return None, ""


def _tables(options: dict):
    """(number, name) of every option table that maps numbers to names."""
    for table in options.values():
        if isinstance(table, dict):
            yield from ((k, v) for k, v in table.items()
                        if str(k).isdigit() and isinstance(v, str))
