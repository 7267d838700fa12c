"""Where the notebooks' test run spends its time: nbval runs every cell as a test; this sums the
cells' durations per notebook and prints them at the end (`make test-notebooks`, `make test-smoke`),
so that a notebook that grows slower is seen in every CI log."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

_seconds: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _seconds[Path(report.nodeid.split("::")[0]).name] += report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _seconds:
        return
    terminalreporter.section("seconds per notebook")
    for name, seconds in sorted(_seconds.items()):
        terminalreporter.write_line(f"{seconds:7.1f}  {name}")
    total = sum(_seconds.values())
    terminalreporter.write_line(f"{total:7.1f}  all ({total / 60:.1f} minutes)")
