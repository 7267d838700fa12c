"""Whole-tile inference on a 2448 x 2448 DeepGlobe tile, for DeepLabV3 ResNet-50 and MobileNetV3,
each in its own process (so that memory peaks do not mix):

- the baseline: one forward pass per 512 x 512 window over an area equal to the tile's, without
  overlap (seconds per window, in the memory format prediction uses, x tile area / window area);
- ``predict_tiled`` at the default overlap and at 0.25 (the former default): seconds, windows,
  the tiling overhead ratio against the baseline, peak resident memory while it runs;
- what chose the defaults: seconds per window contiguous vs channels-last, batch 1 vs 2;
- with ``--compile``: ``torch.compile`` with the weights frozen in (first tile with the
  compilation, then a second), which ``predict_tiled`` does not use by default.

``python -m benchmarks.bench_inference [--compile] [--out benchmarks/results/inference_cpu.json]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import machine, report
from lc_utils.datasets import read_pair
from lc_utils.devices import inference_memory_format
from lc_utils.inference import predict_tiled
from lc_utils.layouts import find_pairs
from lc_utils.models import build_deeplabv3
from lc_utils.settings import PROJECT_ROOT
from lc_utils.transforms import normalize_image
from lc_utils.windows import DEFAULT_OVERLAP, prediction_windows

REAL_FULL = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "full_2448"
TILE, FORMER_OVERLAP = 512, 0.25


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


def _seconds_per_window(model: torch.nn.Module, window: torch.Tensor, fmt: torch.memory_format,
                        batch: int = 1, repeat: int = 2) -> float:
    """Best of ``repeat`` forward passes (after one warm-up), per window."""
    model.to(memory_format=fmt)
    x = window.expand(batch, -1, -1, -1).contiguous(memory_format=fmt)
    times = []
    with torch.no_grad():
        for _ in range(repeat + 1):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    model.to(memory_format=torch.contiguous_format)
    return min(times[1:]) / batch


def _timed_tile(model: torch.nn.Module, image: np.ndarray, overlap: float, device: str) -> dict:
    sampler = _RssSampler()
    sampler.start()
    start = time.perf_counter()
    predict_tiled(model, image, tile_size=TILE, overlap=overlap, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tops, lefts = prediction_windows(*image.shape[:2], TILE, overlap)
    return {"overlap": overlap, "windows": len(tops) * len(lefts), "seconds": seconds,
            "peak_rss_mb": sampler.stop()}


def measure(backbone: str, device: str, compile_model: bool) -> dict:
    """In a fresh process: a tile and a model (random weights: the speed does not depend on them)."""
    if REAL_FULL.is_dir():
        image, _ = read_pair(*find_pairs(REAL_FULL)[0])
    else:
        image = np.random.default_rng(0).integers(0, 256, (2448, 2448, 3), dtype=np.uint8)
    torch.manual_seed(0)
    model = build_deeplabv3(backbone=backbone).to(device).eval()
    window = normalize_image(torch.from_numpy(image[:TILE, :TILE].copy()).permute(2, 0, 1))[None].to(device)
    per_window = {"contiguous_b1": _seconds_per_window(model, window, torch.contiguous_format),
                  "channels_last_b1": _seconds_per_window(model, window, torch.channels_last),
                  "contiguous_b2": _seconds_per_window(model, window, torch.contiguous_format, batch=2)}
    equal_area_windows = image.shape[0] * image.shape[1] / TILE**2
    used = "channels_last_b1" if inference_memory_format(torch.device(device)) == torch.channels_last \
        else "contiguous_b1"
    baseline = per_window[used] * equal_area_windows
    result = {"seconds_per_512_window": per_window, "equal_area_windows": equal_area_windows,
              "baseline_seconds": baseline, "rss_before_inference_mb": _current_mb(), "tiled": []}
    for overlap in (DEFAULT_OVERLAP, FORMER_OVERLAP):
        run = _timed_tile(model, image, overlap, device)
        run["overhead_ratio"] = run["seconds"] / baseline
        result["tiled"].append(run)
    if compile_model:
        compiled = torch.compile(model, options={"freezing": True})
        first = _timed_tile(compiled, image, DEFAULT_OVERLAP, device)
        second = _timed_tile(compiled, image, DEFAULT_OVERLAP, device)
        result["compiled"] = {"first_tile_seconds": first["seconds"], "next_tile_seconds": second["seconds"],
                              "next_tile_overhead_ratio": second["seconds"] / baseline,
                              "peak_rss_mb": max(first["peak_rss_mb"], second["peak_rss_mb"])}
    result["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _summary(backbone: str, device: str, result: dict) -> str:
    default, former = result["tiled"]
    w = result["seconds_per_512_window"]
    line = (f"{backbone} {device}: {default['seconds']:.1f} s at overlap {default['overlap']} "
            f"({default['windows']} windows, overhead {default['overhead_ratio']:.2f}x of "
            f"{result['baseline_seconds']:.1f} s for an equal area of plain windows, peak RSS "
            f"{default['peak_rss_mb']:.0f} MB); {former['seconds']:.1f} s at {former['overlap']} "
            f"({former['windows']} windows, {former['overhead_ratio']:.2f}x); per window "
            f"{w['contiguous_b1']:.2f} s contiguous, {w['channels_last_b1']:.2f} s channels-last, "
            f"{w['contiguous_b2']:.2f} s in batches of 2")
    if "compiled" in result:
        c = result["compiled"]
        line += (f"; compiled: first tile {c['first_tile_seconds']:.1f} s (with the compilation), "
                 f"next {c['next_tile_seconds']:.1f} s ({c['next_tile_overhead_ratio']:.2f}x)")
    return line


def main(argv: list[str] | None = None) -> None:
    argv = argv or []
    if argv[:1] == ["--one"]:
        print(json.dumps(measure(argv[1], argv[2], compile_model=argv[3:] == ["--compile"])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also time compile_for_inference")
    parser.add_argument("--out", type=Path, help="also write the record to this JSON file")
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    record: dict = {"image": "2448x2448", "tile": TILE, "default_overlap": DEFAULT_OVERLAP,
                    "real_tile": REAL_FULL.is_dir(), "command": "python -m benchmarks.bench_inference "
                    + " ".join(argv), "date": datetime.now(UTC).isoformat(timespec="seconds")}
    parts = []
    for device in devices:
        for backbone in ("resnet50", "mobilenet_v3_large"):
            command = [sys.executable, "-m", "benchmarks.bench_inference", "--one", backbone, device]
            out = subprocess.run(command + (["--compile"] if args.compile else []), capture_output=True,
                                 text=True, check=True, cwd=PROJECT_ROOT)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            record[f"{backbone}_{device}"] = result
            parts.append(_summary(backbone, device, result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine(), **record}, indent=2) + "\n")
    report("inference", record, "2448x2448 tile: " + " | ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1:])
