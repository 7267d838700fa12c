"""Run every benchmark in turn: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

NAMES = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> None:
    chosen = argv or NAMES
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {NAMES}")
    for name in chosen:
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
