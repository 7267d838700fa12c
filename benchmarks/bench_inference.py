"""Sliding-window inference on a whole 2448x2448 DeepGlobe tile: seconds and peak memory for
DeepLabV3 ResNet-50 and MobileNetV3 (each in its own process, so peaks do not mix)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time

import numpy as np
import torch

from benchmarks._common import report
from lc_utils.datasets import find_pairs, read_pair
from lc_utils.inference import predict_tiled
from lc_utils.models import build_deeplabv3
from lc_utils.settings import PROJECT_ROOT

REAL_FULL = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "full_2448"
TILE, OVERLAP = 512, 0.25


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _RssSampler(threading.Thread):
    """Samples the resident memory every 10 ms: the peak while one call runs, not since start-up
    (the process peak is dominated by loading torch's libraries)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _current_mb()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.01):
            self.peak = max(self.peak, _current_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return max(self.peak, _current_mb())


def measure(backbone: str, device: str) -> dict:
    """Run in a fresh process: load a tile and a model, then time one tiled prediction."""
    if REAL_FULL.is_dir():
        image, _ = read_pair(*find_pairs(REAL_FULL)[0])
    else:
        image = np.random.default_rng(0).integers(0, 256, (2448, 2448, 3), dtype=np.uint8)
    model = build_deeplabv3(backbone=backbone).to(device).to(memory_format=torch.channels_last)
    before = _current_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sampler = _RssSampler()
    sampler.start()
    start = time.perf_counter()
    predict_tiled(model, image, tile_size=TILE, overlap=OVERLAP, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "rss_before_inference_mb": before,
              "peak_rss_during_inference_mb": sampler.stop(), "process_peak_rss_mb": _peak_mb()}
    if device == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    record: dict = {"image": "2448x2448", "tile": TILE, "overlap": OVERLAP, "real_tile": REAL_FULL.is_dir()}
    parts = []
    for device in devices:
        for backbone in ("resnet50", "mobilenet_v3_large"):
            command = [sys.executable, "-m", "benchmarks.bench_inference", "--one", backbone, device]
            out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            record[f"{backbone}_{device}"] = result
            extra = result["peak_rss_during_inference_mb"] - result["rss_before_inference_mb"]
            parts.append(f"{backbone} {device}: {result['seconds']:.1f} s, peak RSS "
                         f"{result['peak_rss_during_inference_mb']:.0f} MB (+{extra:.0f} MB over the loaded "
                         "model and image)")
    report("inference", record, "2448x2448 tile: " + "; ".join(parts))


if __name__ == "__main__":
    main()
