"""What the overlap of ``predict_tiled`` buys: mIoU, pixel accuracy, agreement with overlap 0.25
and seconds, for a trained checkpoint over the whole images of a folder (DeepGlobe's 2448 x 2448
originals by default). Chose ``inference.DEFAULT_OVERLAP``.

``python -m benchmarks.tiling_overlap --checkpoint runs/sparse_full_2448_fast/best.pt
[--data DIR] [--out benchmarks/results/tiling_overlap.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks._common import machine, report
from lc_utils.datasets import read_pair
from lc_utils.inference import predict_tiled
from lc_utils.layouts import find_pairs, load_schema
from lc_utils.metrics import ConfusionMatrix
from lc_utils.models import load_trained_model
from lc_utils.settings import PROJECT_ROOT
from lc_utils.windows import DEFAULT_OVERLAP, prediction_windows

REAL_FULL = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "full_2448"
OVERLAPS = (0.0, DEFAULT_OVERLAP, 0.125, 0.25)
REFERENCE = 0.25
TILE = 512


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a best.pt or last.pt of fit")
    parser.add_argument("--data", type=Path, default=REAL_FULL)
    parser.add_argument("--out", type=Path, help="also write the record to this JSON file")
    args = parser.parse_args(argv)
    model = load_trained_model(args.checkpoint, "cpu")
    schema = load_schema(args.data)
    pairs = find_pairs(args.data)
    confusions = {o: ConfusionMatrix(schema.num_classes, schema=schema) for o in OVERLAPS}
    agreement = {o: [] for o in OVERLAPS}
    seconds = dict.fromkeys(OVERLAPS, 0.0)
    windows = dict.fromkeys(OVERLAPS, 0)
    for image_path, mask_path in pairs:
        image, truth = read_pair(image_path, mask_path, schema)
        predictions = {}
        for overlap in OVERLAPS:
            start = time.perf_counter()
            predictions[overlap] = predict_tiled(model, image, tile_size=TILE, overlap=overlap)
            seconds[overlap] += time.perf_counter() - start
            tops, lefts = prediction_windows(*image.shape[:2], TILE, overlap)
            windows[overlap] += len(tops) * len(lefts)
            confusions[overlap].update(predictions[overlap], truth)
        for overlap in OVERLAPS:
            agreement[overlap].append(float((predictions[overlap] == predictions[REFERENCE]).mean()))
    rows = []
    for overlap in OVERLAPS:
        summary = confusions[overlap].summary()
        rows.append({"overlap": overlap, "windows": windows[overlap], "seconds": seconds[overlap],
                     "mean_iou": summary["mean_iou"], "pixel_accuracy": summary["pixel_accuracy"],
                     "agreement_with_0.25": float(np.mean(agreement[overlap])),
                     "agreement_per_image": agreement[overlap]})
    record = {"checkpoint": str(args.checkpoint), "data": str(args.data), "images": len(pairs), "tile": TILE,
              "rows": rows, "command": "python -m benchmarks.tiling_overlap " + " ".join(argv or []),
              "date": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine(), **record}, indent=2) + "\n")
    report("tiling_overlap", record, "; ".join(
        f"overlap {r['overlap']}: {r['windows']} windows, {r['seconds']:.1f} s, mIoU {r['mean_iou']:.4f}, "
        f"pixel accuracy {r['pixel_accuracy']:.4f}, {r['agreement_with_0.25']:.2%} of pixels as at 0.25"
        for r in rows))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
