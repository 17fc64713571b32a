"""`ionlab devices` (read every device once) and `ionlab watch` (a live table).

The lab's smoke test: open every configured device, read it, print a table of
device, kind, sensor and its configured name, reading, unit and status. A
device that cannot be opened or read is a row of its own with the error; the
others are read all the same, and the exit status is 1 when any failed.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack

from drivers.base import DeviceError, Reading

from .config import Config, ConfigError, load
from .sensors import format_value, source

__all__ = ["format_table", "read_all", "register"]


def read_all(config: Config, devices: dict) -> list[tuple[str, str, Reading | str]]:
    """One row per sensor: (device, kind, reading) or (device, kind, error text).

    `devices` maps each configured name to its open device, or to the error text
    of why it could not be opened.
    """
    rows = []
    for name, device in devices.items():
        kind = config.devices[name].kind
        if isinstance(device, str):
            rows.append((name, kind, device))
            continue
        try:
            rows.extend((name, kind, r) for r in device.read())
        except Exception as exc:  # noqa: BLE001 - one failing device must not hide the others
            rows.append((name, kind, _failure(name, exc)))
    return rows


def _failure(name: str, exc: Exception) -> str:
    """The error text of a device's row (a DeviceError names the device already)."""
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, DeviceError) else f"{name}: {text}"


def format_table(rows, config: Config) -> str:
    """The table: each sensor with its configured name, its value with the digits its
    instrument resolves (as on the dashboard), its status and read time."""
    header = ("DEVICE", "KIND", "SENSOR", "NAME", "READING", "UNIT", "STATUS", "READ AT (UTC)")
    lines = [header]
    for device, kind, r in rows:
        if isinstance(r, Reading):
            lines.append((device, kind, r.sensor, source(config, r.sensor)[1] or "-",
                          format_value(r.value, r.unit), r.unit, r.status.value,
                          r.timestamp.strftime("%H:%M:%S.%f")[:-3]))
        else:
            lines.append((device, kind, "-", "-", "-", "-", "error", r))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [str(c).ljust(w) for c, w in zip(line, widths, strict=False)]
        out.append("  ".join(cells + [str(line[-1])]).rstrip())
    return "\n".join(out)


def _open_all(config: Config, stack: ExitStack) -> dict:
    """Each device opened (and closed by `stack`), or the error text of why it was not.

    A config error in one device's options is still a config error (exit 2).
    """
    devices = {}
    for name, spec in config.devices.items():
        try:
            devices[name] = stack.enter_context(spec.open())
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing device must not hide the others
            devices[name] = f"cannot open: {_failure(name, exc)}"
    return devices


def devices_command(args) -> int:
    config = load(args.config)
    with ExitStack() as stack:
        rows = read_all(config, _open_all(config, stack))
    print(format_table(rows, config))
    failed = sorted({device for device, _, r in rows if not isinstance(r, Reading)})
    if failed:
        print(f"ionlab devices: {len(failed)} of {len(config.devices)} devices failed: "
              f"{', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def watch_command(args) -> int:
    config = load(args.config)
    with ExitStack() as stack:
        devices = _open_all(config, stack)
        try:
            while True:
                table = format_table(read_all(config, devices), config)
                sys.stdout.write("\x1b[H\x1b[2J" + table + "\n\nCtrl-C stops.\n")
                sys.stdout.flush()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            print("stopped.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("devices", help="open every configured device, read it once, print a table",
                       description="Open every configured device, read it once and print a "
                       "table: the lab's smoke test. Exit 1 if any device fails.")
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    p.set_defaults(func=devices_command)
    p = sub.add_parser("watch", help="show every device reading live in the terminal",
                       description="Read every configured device once a second and show a live "
                       "table in the terminal. Ctrl-C stops.")
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between refreshes (default 1)")
    p.set_defaults(func=watch_command)
