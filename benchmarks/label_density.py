"""The label-density study on real DeepGlobe tiles (``make density``).

Trains DeepLabV3 at several point densities (uniform points, stratified points, stratified points
with the loss's prior correction; points spread over superpixels, self-training) and with dense
labels, the same number of steps for each and several seeds per setting, on a seeded split of the
real 512x512 tiles beside the project. Writes every finished run at once to a JSON record
(settings, seeds, every run, mean and sd per setting, the majority baseline, date, versions, CPU,
command) and, at the end, a plot beside it. Running the same command again skips the runs already
in the record, so the study can be stopped and resumed. The code is notebook 06's
(``lc_utils.study``).

    python -m benchmarks.label_density [--data DIR] [--seeds 0 1 2] [--points 26 262 2621] ...
    python -m benchmarks.label_density --readme [--out RECORD]   # the README's table and the plot from it
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from lc_utils.metrics import majority_baseline
from lc_utils.run_data import load_data
from lc_utils.run_spec import DENSE, LOSS_WEIGHTS, RunSpec
from lc_utils.settings import PROJECT_ROOT
from lc_utils.study import PRIOR_CORRECTED, run_label_study, summarize
from lc_utils.transforms import CROP_SAMPLING
from lc_utils.viz_results import plot_density_curve, plot_method_comparison
from lc_utils.windows import DEFAULT_OVERLAP

from ._common import README, machine, record_text, write_readme_table

REAL_TILES = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "label_density_deepglobe.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_TILES, help="folder of <id>_sat.jpg/<id>_mask.png")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--points", type=int, nargs="+",
                        help="points per image (26, 262, 2621 are 0.01%%, 0.1%%, 1%% of a 512x512 tile)")
    budget.add_argument("--points-per-mp", type=float, nargs="+",
                        help="points per megapixel (default: 100, 1000, 10000, or 0.01%%, 0.1%%, 1%%)")
    parser.add_argument("--strategies", nargs="+", default=["uniform", "stratified", PRIOR_CORRECTED],
                        help="point strategies, each with any of +prior, +propagation, +self-training "
                             "(e.g. uniform+propagation)")
    parser.add_argument("--superpixel-area", type=float, default=900.0,
                        help="superpixel size in pixels of the +propagation settings (default: %(default)s)")
    parser.add_argument("--self-training-rounds", type=int, default=1,
                        help="rounds of the +self-training settings (default: %(default)s)")
    parser.add_argument("--also", nargs="+", default=[], metavar="STRATEGY:PER_MP", type=_extra_row,
                        help="rows outside the grid of strategies and budgets, e.g. stratified:1000")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbone", default="mobilenet_v3_large")
    parser.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a local file")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--samples-per-epoch", type=int,
                        help="crops per epoch (default: every training image once)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--crop-sampling", choices=list(CROP_SAMPLING), default="labelled")
    parser.add_argument("--color-jitter", type=float, default=0.0)
    parser.add_argument("--loss-weights", choices=list(LOSS_WEIGHTS), default="none")
    parser.add_argument("--dice-weight", type=float, default=0.0)
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--val-window", type=int, default=512,
                        help="whole validation images are scored in windows of this size ...")
    parser.add_argument("--val-overlap", type=float, default=DEFAULT_OVERLAP,
                        help="... overlapping by at least this share of a window")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split")
    parser.add_argument("--reuse", type=Path, metavar="RECORD",
                        help="take the runs of this plan from another record of the same settings "
                             "(e.g. the plain points and dense rows of the density study)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON record (a PNG is written beside)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's table and redraw the plot from the record at --out")
    return parser.parse_args(argv)


def _extra_row(text: str) -> tuple[str, float]:
    strategy, _, density = text.partition(":")
    try:
        return strategy, float(density)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STRATEGY:POINTS_PER_MP, got {text!r}") from None


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: mean +- sd of validation mIoU per setting, and the ratio to dense."""
    summary = pd.DataFrame(record["summary"])
    spread = "trained_fraction" in summary  # records of propagation and self-training
    lines = ["| labels | labelled pixels |" + (" trained on |" if spread else "")
             + " val mIoU, mean ± sd | vs dense | pixel accuracy |",
             "|---|---|" + ("---|" if spread else "") + "---|---|---|"]
    for row in summary.itertuples():
        if row.strategy == DENSE:
            labels = "dense masks"
        elif pd.notna(getattr(row, "points_per_mp", None)):  # records before budgets per MP have none
            labels = (f"{row.strategy}, {row.points_per_mp:,.0f} points per MP "
                      f"({int(row.points_per_image):,} per image)")
        else:
            labels = f"{row.strategy}, {int(row.points_per_image):,} points per image"
        trained = f" {row.trained_fraction:.2%} |" if spread else ""
        lines.append(f"| {labels} | {row.labelled_fraction:.2%} |{trained} {row.miou_mean:.3f} ± "
                     f"{row.miou_sd:.3f} | {row.miou_vs_dense:.2f} | {row.pixel_accuracy_mean:.3f} |")
    baseline = record["majority_baseline"]
    lines.append(f"| majority class ({baseline['class']}) everywhere | |{' |' if spread else ''} "
                 f"{baseline['mean_iou']:.3f} | | {baseline['pixel_accuracy']:.3f} |")
    return "\n".join(lines)


def update_readme(record: dict[str, Any], name: str, readme: Path = README) -> None:
    """Replace the table between the README's markers for ``name`` with the one made from ``record``."""
    write_readme_table(markdown_table(record), name, readme)


def draw_figure(record: dict[str, Any], path: Path) -> None:
    """The study's figure, drawn from its record: mean ± sd per setting against the labelled
    fraction, or, where some settings grow labels from the points (propagation, self-training),
    the settings side by side at each density."""
    steps = int(record["runs"][0]["steps"])
    title = (f"{record['data']}: {record['train_images']} training images, "
             f"DeepLabV3-{record['settings']['backbone']}, {steps} steps per run")
    summary = pd.DataFrame(record["summary"])
    plot = plot_method_comparison if "trained_fraction" in summary else plot_density_curve
    figure = plot(summary, record["majority_baseline"]["mean_iou"], title=title)
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        record = json.loads(args.out.read_text())
        update_readme(record, args.out.stem)
        draw_figure(record, args.out.with_suffix(".png"))
        print(f"{README}: table rewritten from {args.out}; {args.out.with_suffix('.png')} redrawn")
        return
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no data folder (pass --data)")
    # What every run shares; each run sets its labels and seed. Whole validation images are scored
    # at the end (study.train_and_score), so no windows during training.
    spec = RunSpec(data=str(args.data), split_seed=args.split_seed, val_images=args.val_images,
                   backbone=args.backbone, weights=args.weights, crop=args.crop, batch_size=args.batch_size,
                   epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, lr=args.lr,
                   warmup_steps=args.warmup_steps, crop_sampling=args.crop_sampling,
                   color_jitter=args.color_jitter, loss_weights=args.loss_weights,
                   dice_weight=args.dice_weight, val_window=args.val_window, val_overlap=args.val_overlap,
                   val_windows=0)
    data = load_data(spec)
    train_pairs, val_pairs = data.split["train"], data.split["val"]
    started = time.perf_counter()
    baseline = majority_baseline(train_pairs, val_pairs, data.schema)
    per_mp = args.points_per_mp or ([] if args.points else [100.0, 1000.0, 10000.0])
    results = run_label_study(spec, args.points or [], points_per_mp=per_mp, strategies=args.strategies,
                                extra_rows=args.also, seeds=args.seeds, results_file=args.out,
                                superpixel_area=args.superpixel_area,
                                self_training_rounds=args.self_training_rounds, reuse=args.reuse)
    summary = summarize(results)
    record = json.loads(args.out.read_text())
    record.update({
        "benchmark": "label_density", "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "-m", "benchmarks.label_density", *(argv or sys.argv[1:])]),
        "machine": machine(), "data": args.data.name, "train_images": len(train_pairs),
        "val_images": len(val_pairs), "split_seed": args.split_seed, "seeds": args.seeds,
        "settings": spec.to_dict(), "majority_baseline": baseline,
        "modifiers": {"superpixel_area": args.superpixel_area,
                      "self_training_rounds": args.self_training_rounds},
        "minutes_this_call": (time.perf_counter() - started) / 60,
        "train_minutes_all_runs": float(results["train_seconds"].sum()) / 60,
        "summary": json.loads(summary.to_json(orient="records")),
    })
    args.out.write_text(record_text(record))
    draw_figure(record, args.out.with_suffix(".png"))
    print(summary.round(3).to_string(index=False))
    print(f"[label_density] dense mIoU {summary.loc[summary.strategy == DENSE, 'miou_mean'].iloc[0]:.3f}, "
          f"majority baseline {baseline['mean_iou']:.3f}; {len(results)} runs -> {args.out}")


if __name__ == "__main__":
    main()
