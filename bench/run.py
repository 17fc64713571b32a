"""`make bench`: run every benchmark under bench/ and print one table.

A benchmark is a module `bench/bench_*.py` with `run(quick: bool) -> list[Row]`.
Each row sets ionlab's figure beside a baseline measured in the same run.

    python -m bench.run [--quick] [NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row", "main"]


@dataclass
class Row:
    """One figure: ionlab's value against a baseline run side by side."""

    benchmark: str
    metric: str
    ionlab: float
    baseline: float | None = None
    baseline_name: str = ""
    unit: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """How many times better ionlab is than the baseline (>1 is better)."""
        if self.baseline is None or self.baseline == 0 or self.ionlab == 0:
            return None
        return self.ionlab / self.baseline if self.higher_is_better else self.baseline / self.ionlab


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def format_table(rows: list[Row]) -> str:
    header = ("benchmark", "metric", "unit", "ionlab", "baseline", "vs", "ionlab better by")
    lines = [header] + [
        (r.benchmark, r.metric, r.unit, _fmt(r.ionlab), _fmt(r.baseline), r.baseline_name or "-",
         f"{r.ratio:.2f}x" if r.ratio is not None else "-")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. bench_hub")
    args = parser.parse_args(argv)
    rows, failed = [], []
    for name in args.names or discover():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(importlib.import_module(f"bench.{name}").run(args.quick))
        except Exception:
            traceback.print_exc()
            failed.append(name)
    print(format_table(rows))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
