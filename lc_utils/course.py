"""Run the whole course: ``python -m lc_utils.course`` (what ``make course`` calls).

Generates the sample data, then executes every numbered notebook in order (04 trains the
checkpoint that 05 tests), writing executed copies and HTML pages to ``build/``. Without a GPU
it switches fast mode on by itself (unless ``LC_FAST`` is set either way) and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from .settings import PROJECT_ROOT, fast_mode, prepare_data


def run_notebook(path: Path, out_dir: Path, timeout: int = 1800) -> float:
    """Execute one notebook in its own folder; write the executed copy and HTML; return seconds.

    The kernel talks to this process over local sockets (IPC; TCP on Windows, which has none):
    nothing leaves the machine, and the kernel has no reason to warn that its traffic is
    unencrypted."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lc-kernel-") as sockets:
        transport = "tcp" if os.name == "nt" else "ipc"
        manager = KernelManager(kernel_name="python3", transport=transport,
                                **({"ip": str(Path(sockets) / "kernel")} if transport == "ipc" else {}))
        try:
            ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
                notebook, {"metadata": {"path": str(path.parent)}}, km=manager)
        finally:  # a kernel manager handed in is the caller's to shut down
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out_dir / path.name)
    html, _ = HTMLExporter().from_notebook_node(notebook)
    (out_dir / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
    return seconds


def pin_data_dir() -> None:
    """Make a relative ``$DATA_DIR`` absolute: it was given from where the command ran, and the
    notebooks run with ``notebooks/`` as their working directory."""
    if os.environ.get("DATA_DIR"):
        os.environ["DATA_DIR"] = str(Path(os.environ["DATA_DIR"]).expanduser().resolve())


def fast_mode_without_gpu() -> None:
    """Switch fast mode on (``LC_FAST=1``) where there is no GPU, unless ``LC_FAST`` is set either
    way, and say so: at full size notebook 04 would train for hours on a CPU."""
    if "LC_FAST" not in os.environ and not torch.cuda.is_available():
        os.environ["LC_FAST"] = "1"
        print("No GPU found: the notebooks run in fast mode (LC_FAST=1). "
              "Set LC_FAST=0 to run them at full size anyway.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all, in order)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build")
    args = parser.parse_args(argv)

    fast_mode_without_gpu()
    # Executed copies and HTML pages cannot run widgets: explorers show their static figures.
    os.environ.setdefault("LC_HEADLESS", "1")
    pin_data_dir()
    mode = "fast" if fast_mode() else "full"
    print(f"Data ({mode} mode): {prepare_data()}")

    notebooks = [Path(p) for p in args.notebooks] or sorted(
        (PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("No notebooks found in notebooks/: only the sample data was generated.")
        return 0
    total = 0.0
    for path in notebooks:
        print(f"Running {path.name} ...", flush=True)
        seconds = run_notebook(path, args.out)
        total += seconds
        print(f"  done in {seconds:.0f} s -> {args.out / path.with_suffix('.html').name}")
    print(f"Course finished in {total:.0f} s ({mode} mode); executed notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
