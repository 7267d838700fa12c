"""The label-density study on real DeepGlobe tiles (``make density``).

Trains DeepLabV3 at several point densities (uniform and stratified points) and with dense labels,
the same number of steps for each, on a seeded split of the real 512x512 tiles beside the project,
and writes a table (CSV, JSON) and a plot of validation mIoU (unknown excluded) against the
labelled fraction to ``runs/label_density/``. The code is notebook 06's (``lc_utils.study``).

    python -m benchmarks.label_density [--data DIR] [--epochs N] [--points 26 262 2621] ...
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lc_utils.datasets import find_pairs, split_items
from lc_utils.settings import PROJECT_ROOT, runs_dir
from lc_utils.study import StudySettings, majority_baseline, run_density_study, sparse_to_dense_ratio
from lc_utils.viz import plot_density_curve

from ._common import machine

REAL_TILES = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_TILES, help="folder of <id>_sat.jpg/<id>_mask.png")
    parser.add_argument("--points", type=int, nargs="+", default=[26, 262, 2621],
                        help="points per image (262 is 0.1%% of a 512x512 tile)")
    parser.add_argument("--strategies", nargs="+", default=["uniform", "stratified"])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a local file")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no data folder (pass --data)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pairs = find_pairs(args.data)
    val_share = args.val_images / len(pairs)
    train_pairs, val_pairs = split_items(pairs, (1 - val_share, val_share), seed=args.seed)
    settings = StudySettings(backbone=args.backbone, weights=None if args.weights == "none" else args.weights,
                             crop_size=args.crop, batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
                             seed=args.seed)
    out = args.out or runs_dir() / "label_density"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    baseline = majority_baseline(train_pairs, val_pairs)
    results = run_density_study(train_pairs, val_pairs, args.points, strategies=args.strategies,
                                settings=settings, annotation_dir=out / "annotations",
                                results_dir=out / "runs")
    minutes = (time.perf_counter() - started) / 60
    ratios = sparse_to_dense_ratio(results)
    results.to_csv(out / "results.csv", index=False)
    plot_density_curve(results).savefig(out / "miou_vs_labelled_fraction.png", dpi=120)
    record = {"benchmark": "label_density", "machine": machine(), "data": str(args.data),
              "train_images": len(train_pairs), "val_images": len(val_pairs), "settings": asdict(settings),
              "majority_baseline": baseline, "minutes": minutes,
              "results": results.to_dict(orient="records"), "ratios": ratios.to_dict(orient="records")}
    (out / "results.json").write_text(json.dumps(record, indent=2, default=float))
    print(results.round(4).to_string(index=False))
    print(ratios.round(3).to_string(index=False))
    near = ratios.iloc[(ratios["labelled_fraction"] - 0.001).abs().argsort()]
    summary = "; ".join(f"{r.strategy} {r.labelled_fraction:.3%}: {r.miou_vs_dense:.2f}"
                        for r in near.drop_duplicates("strategy").itertuples())
    print(f"[label_density] mIoU(sparse)/mIoU(dense) near 0.1% labelled: {summary} "
          f"(dense mIoU {results.loc[results.strategy == 'dense', 'val_mean_iou'].iloc[0]:.3f}, "
          f"majority baseline {baseline['mean_iou']:.3f}; {minutes:.0f} min) -> {out}")


if __name__ == "__main__":
    main()
