"""The `ionlab` command: one subcommand per service, each in its own module.

A module listed in COMMANDS provides `register(subparsers)`, which adds its
parser(s) with `set_defaults(func=...)`; `func(args)` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .config import ConfigError
from .web.app import ListenError

__all__ = ["main"]

COMMANDS = [
    "services.devices",
    "services.wavemeter.command",
    "services.logger.command",
    "services.alarms.command",
    "services.simulation",
    "services.artiq.command",
    "services.run",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ionlab",
        description="Run and inspect the ion-trap lab: devices, wavemeter, locks, logger.",
        epilog="Without --config every command uses the built-in demo lab (simulated devices).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"ionlab: config error: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"ionlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
