"""Open the course in JupyterLab: ``python -m lc_utils.lab`` (what ``make lab`` calls).

Like ``make course``, it chooses fast mode where there is no GPU (unless ``LC_FAST`` is set
either way) and says so; a relative ``DATA_DIR`` is made absolute first. Arguments after the
command go to JupyterLab (e.g. ``--port 8890``).
"""

from __future__ import annotations

import os
import sys

from .course import fast_mode_without_gpu, pin_data_dir
from .settings import PROJECT_ROOT


def lab_command(argv: list[str]) -> list[str]:
    """The JupyterLab command line for the course's notebooks folder."""
    return [sys.executable, "-m", "jupyterlab", str(PROJECT_ROOT / "notebooks"), *argv]


def main(argv: list[str] | None = None) -> None:
    fast_mode_without_gpu()
    pin_data_dir()
    command = lab_command(sys.argv[1:] if argv is None else argv)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
