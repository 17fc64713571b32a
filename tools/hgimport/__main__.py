"""`ionlab-import MANIFEST`: build or extend a monorepo from a manifest.

    python -m tools.hgimport lab.toml [--dry-run | --verify]
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import manifest
from .errors import ImportAbort
from .ui import Console

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ionlab-import",
        description="Import or sync every child repository listed in a TOML manifest into "
                    "its subdirectory of the monorepo (see docs/hg-import.md).")
    parser.add_argument("manifest", help="the manifest (TOML)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("-n", "--dry-run", action="store_true",
                      help="print each child's plan and change nothing")
    what.add_argument("--verify", action="store_true",
                      help="only check the imports against their children")
    parser.add_argument("--hg", metavar="PATH", help="the hg executable (default: the one "
                        "beside this Python, else hg on PATH)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return manifest.consolidate(manifest.load(args.manifest), Console(), hg_exe=args.hg,
                                    dry_run=args.dry_run, verify=args.verify)
    except ImportAbort as exc:
        print(f"abort: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"({exc.hint})", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing half-imported was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
