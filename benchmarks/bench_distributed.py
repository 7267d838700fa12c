"""Training throughput of ``python -m lc_utils.cli`` in 1 and in 2 processes under ``torchrun``
(gloo on CPUs, NCCL on GPUs): images per second of the last epoch, same global batch.

On a 2-core CPU one process already uses both cores (2 threads); two processes get one thread
each, so the ratio measures DistributedDataParallel's overhead there, not a speed-up. On a machine
with several GPUs, the processes are one per GPU (up to 2 here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from benchmarks._common import report
from lc_utils.settings import PROJECT_ROOT
from lc_utils.synthetic import make_sample_dataset

SETTINGS = ["--backbone", "mobilenet_v3_large", "--weights", "none", "--crop", "128", "--batch-size", "8",
            "--epochs", "3", "--samples-per-epoch", "64", "--val-windows", "2"]


def _images_per_s(processes: int, data: Path, runs: Path) -> float:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    threads = max(1, (os.cpu_count() or 1) // processes)
    command = [torchrun, "--standalone", f"--nproc_per_node={processes}", "-m", "lc_utils.cli",
               "--data", str(data), "--runs-dir", str(runs), "--run-name", f"p{processes}", *SETTINGS]
    subprocess.run(command, check=True, capture_output=True, cwd=PROJECT_ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return float(pd.read_csv(runs / f"p{processes}" / "history.csv")["images_per_s"].iloc[-1])


def main() -> None:
    counts = [1, 2] if not torch.cuda.is_available() else [1, min(2, torch.cuda.device_count())]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_sample_dataset(Path(tmp) / "data", n_images=24, size=256, seed=0)
        rates = {n: _images_per_s(n, data, Path(tmp) / "runs") for n in counts}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    record = {"settings": SETTINGS, "images_per_s": rates, "device": device}
    report("distributed", record, ", ".join(f"{n} process{'es' if n > 1 else ''}: {r:.1f} images/s"
                                            for n, r in rates.items())
           + f" ({rates[counts[-1]] / rates[1]:.2f}x with {counts[-1]})")


if __name__ == "__main__":
    main()
