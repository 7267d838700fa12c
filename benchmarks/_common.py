"""Timing and reporting helpers shared by the benchmarks."""

from __future__ import annotations

import datetime
import json
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision

from lc_utils.saved_files import write_text
from lc_utils.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def time_call(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Best and median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best_s": min(times), "median_s": statistics.median(times), "runs": repeat}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torchvision": torchvision.__version__, "cpu_threads": torch.get_num_threads(),
                            "processor": _cpu_model() or platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str | None:
    """The CPU's model name on Linux (``/proc/cpuinfo``), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def report(name: str, record: dict[str, Any], summary: str) -> None:
    """Print the JSON record (with the machine) and the one-line summary."""
    print(json.dumps({"benchmark": name, "machine": machine(), **record}, indent=2))
    print(f"[{name}] {summary}")


def table_markers(name: str) -> tuple[str, str]:
    """The README comments around the table of the record called ``name`` (its file stem)."""
    return f"<!-- {name}: start -->", f"<!-- {name}: end -->"


def write_readme_table(table: str, name: str, readme: Path = README) -> None:
    """Replace what lies between the README's markers for ``name`` with ``table``."""
    start, end = table_markers(name)
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: the markers {start} ... {end} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def redraw_from_record(out: Path, table: Callable[[dict[str, Any]], str],
                       figure: Callable[[dict[str, Any], Path], None]) -> None:
    """The README's table and the PNG beside a study record, made again from the record at ``out``."""
    record = json.loads(out.read_text())
    write_readme_table(table(record), out.stem, README)
    figure(record, out.with_suffix(".png"))


def open_record(out: Path, shared: dict[str, Any], rows: str,
                before: dict[str, Any] | None = None) -> dict[str, Any]:
    """A resumable study record: the one at ``out`` when it was made with the same ``shared``
    settings (refused otherwise), else a new one with an empty list ``rows``. ``before``: what a
    record from before a setting was kept was made with (the setting's value then), by key."""
    record = json.loads(out.read_text()) if out.is_file() else {rows: [], **shared}
    record = {**(before or {}), **record}
    if any(record.get(key) != value for key, value in shared.items()):
        raise SystemExit(f"{out}: made with other settings; choose another --out")
    return record


def save_record(out: Path, record: dict[str, Any], benchmark: str, argv: list[str] | None,
                started: float, **fields: Any) -> None:
    """Write a study record with what made it: the command, date, machine and minutes."""
    command = shlex.join(["python", "-m", f"benchmarks.{benchmark}", *(argv or sys.argv[1:])])
    record.update({"benchmark": benchmark, "date": datetime.date.today().isoformat(), "command": command,
                   "machine": machine(), "minutes_this_call": (time.perf_counter() - started) / 60, **fields})
    write_text(out, record_text(record))  # a stopped study keeps its record


NUMBER_LIST = re.compile(r"\[\n\s*([-+0-9.eE,\s]+?)\n\s*\]")
"""A list of plain numbers as ``json.dumps(indent=...)`` spreads it, one number a line (a newline
is never inside a JSON string, so no string matches)."""


def record_text(record: dict[str, Any]) -> str:
    """A study record as its file holds it: JSON, a key a line, but every list of plain numbers (a
    confusion matrix's row, a curve) on one line, so that per-tile matrices do not take a line per
    count. The same values as ``json.dumps``."""
    text = json.dumps(record, indent=1, default=float)
    def one_line(numbers: re.Match) -> str:
        return "[" + ", ".join(value.strip() for value in numbers.group(1).split(",")) + "]"

    return NUMBER_LIST.sub(one_line, text) + "\n"
