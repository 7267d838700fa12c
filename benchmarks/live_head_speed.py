"""How fast the annotator's live mode answers a click, on the CPU
(``python -m benchmarks.live_head_speed [--sizes 512 2448] [--clicks 10]``).

For a real 512 x 512 tile and a 2448 x 2448 original (random pixels where the shared DeepGlobe
sample is absent), with DeepLabV3-MobileNetV3 (fast mode's model) and DeepLabV3-ResNet-50, random
weights (the speed does not depend on them):

- the one-off features (:meth:`lc_utils.live_head.LiveHead.features`: the network once, window by
  window);
- each click's update, from the click to the new overlay: the last layer refitted on the clicks
  so far (:meth:`LiveHead.learn`), the whole image predicted from the cached features
  (:meth:`LiveHead.predict`) and the annotator's overlay drawn (``PointAnnotator.show_model``);
- the same for the baseline a person would reach for otherwise, ilastik's recipe
  (:class:`lc_utils.filter_forest.FilterForest`: multiscale filters once, then a random forest
  refitted and predicting the image at every click), on the same clicks.

The clicks are drawn from the image's mask (uniform, seeded), one at a time. Torch and the forest
run on ``--threads`` cores (2 by default). The record (``benchmarks/results/live_head_speed.json``)
keeps every click's seconds, their median, the machine and the load average when it started.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lc_utils.annotate import PointAnnotator
from lc_utils.classes import DEEPGLOBE
from lc_utils.datasets import read_pair
from lc_utils.filter_forest import FilterForest
from lc_utils.layouts import find_pairs
from lc_utils.live_head import LiveHead
from lc_utils.models import build_deeplabv3
from lc_utils.point_editor import PointEditor
from lc_utils.settings import PROJECT_ROOT
from lc_utils.sparse import PointAnnotation, annotatable, sample_points

from ._common import save_record

SHARED = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample"
FOLDERS = {512: SHARED / "tiles_512", 2448: SHARED / "full_2448"}
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "live_head_speed.json"
BACKBONES = ("mobilenet_v3_large", "resnet50")
TARGET_S = 1.0
"""The update a 512² tile should take at most, click to overlay."""


def _image(size: int) -> tuple[str, np.ndarray, np.ndarray, bool]:
    """(image id, image, class map, whether it is real) of the first image of ``size``."""
    folder = FOLDERS[size]
    if folder.is_dir():
        image_path, mask_path = find_pairs(folder)[0]
        image, truth = read_pair(image_path, mask_path, DEEPGLOBE)
        return Path(image_path).stem, image, truth, True
    rng = np.random.default_rng(size)
    image = rng.integers(0, 256, (size, size, 3), np.uint8)
    return f"random_{size}", image, rng.integers(0, 6, (size, size), np.uint8), False


def _clicks(truth: np.ndarray, count: int) -> PointAnnotation:
    return sample_points(annotatable(truth, DEEPGLOBE), n_points=count, seed=0)


def _updates(learner: LiveHead | FilterForest, image_id: str, widget: PointAnnotator,
             clicks: PointAnnotation) -> dict[str, Any]:
    """Every click's seconds: learn on the clicks so far, predict the image, draw the overlay."""
    parts: dict[str, list[float]] = {"learn_s": [], "predict_s": [], "overlay_s": [], "update_s": []}
    for n in range(1, len(clicks) + 1):
        points = {image_id: PointAnnotation(clicks.rows[:n], clicks.cols[:n], clicks.labels[:n])}
        started = time.perf_counter()
        learner.learn(points)
        learned = time.perf_counter()
        prediction = learner.predict(image_id)
        predicted = time.perf_counter()
        widget.show_model(predictions={image_id: prediction})
        drawn = time.perf_counter()
        for name, seconds in zip(parts, (learned - started, predicted - learned, drawn - predicted,
                                         drawn - started)):
            parts[name].append(seconds)
    return {**parts, **{f"median_{name}": statistics.median(values) for name, values in parts.items()}}


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = make()
    return value, time.perf_counter() - started


def measure(size: int, clicks: int, threads: int, work: Path) -> dict[str, Any]:
    """One image size: the live head of each backbone and the filter forest, on the same clicks."""
    image_id, image, truth, real = _image(size)
    points = _clicks(truth, clicks)
    editor = PointEditor(work / f"clicks_{size}.csv", {image_id: image.shape[:2]})
    widget = PointAnnotator(editor, {image_id: image}, overlay="prediction")
    result: dict[str, Any] = {"image": image_id, "size": size, "real_image": real, "clicks": clicks}
    for backbone in BACKBONES:
        torch.manual_seed(0)
        head = LiveHead(build_deeplabv3(7, backbone, None).eval(), {image_id: image})
        features, seconds = _timed(lambda head=head: head.features(image_id))
        result[backbone] = {"features_s": seconds, "features_mb": features.megabytes,
                            "feature_map": list(features.windows.shape),
                            **_updates(head, image_id, widget, points)}
        print(f"  {size}² {backbone}: features {seconds:.1f} s, update "
              f"{result[backbone]['median_update_s']:.3f} s", flush=True)
        del head, features
    forest = FilterForest({image_id: image}, n_jobs=threads)
    features, seconds = _timed(lambda: forest.features(image_id))
    result["filter_forest"] = {"features_s": seconds, "features_mb": features.nbytes / 2**20,
                               "features_per_pixel": features.shape[-1],
                               **_updates(forest, image_id, widget, points)}
    print(f"  {size}² filter forest: features {seconds:.1f} s, update "
          f"{result['filter_forest']['median_update_s']:.3f} s", flush=True)
    for backbone in BACKBONES:
        result[f"forest_over_{backbone}"] = (result["filter_forest"]["median_update_s"]
                                             / result[backbone]["median_update_s"])
    return result


def summary(result: dict[str, Any]) -> str:
    """One line per image size: each learner's median update and its one-off features."""
    size, forest = result["size"], result["filter_forest"]["median_update_s"]
    parts = [f"{backbone} {result[backbone]['median_update_s']:.3f} s per update (features "
             f"{result[backbone]['features_s']:.1f} s once; the forest "
             f"{result[f'forest_over_{backbone}']:.0f}x slower)" for backbone in BACKBONES]
    return (f"{size}²: " + "; ".join(parts) + f"; filter forest {forest:.2f} s per update "
            f"(features {result['filter_forest']['features_s']:.1f} s once)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", choices=sorted(FOLDERS), default=sorted(FOLDERS))
    parser.add_argument("--clicks", type=int, default=10, help="clicks per image, learned one at a time")
    parser.add_argument("--threads", type=int, default=2, help="CPU cores for torch and the forest")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"threads": args.threads, "load_average_at_start": list(os.getloadavg()),
                              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "target_s": TARGET_S,
                              "results": []}
    with tempfile.TemporaryDirectory() as work:
        for size in args.sizes:
            result = measure(size, args.clicks, args.threads, Path(work))
            record["results"].append(result)
            print(summary(result), flush=True)
    tile = next((r for r in record["results"] if r["size"] == 512), None)
    if tile is not None:
        record["meets_target_on_512"] = all(tile[b]["median_update_s"] <= TARGET_S for b in BACKBONES)
    save_record(args.out, record, "live_head_speed", argv, started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
