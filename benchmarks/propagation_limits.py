"""Why spreading points over superpixels did not beat the points alone: two label sets that
isolate the cause, on the real tiles, with the settings of the more-from-points study
(``make propagation-limits``).

Propagated labels differ from the points in two ways: they are sometimes wrong (a superpixel that
crosses a class edge), and they cover blobs around the points, each blob weighted in the loss by
its size. Two label sets, each trained like every row of that study (same spec, points, seeds and
steps), tell the two apart:

- ``propagated, wrong pixels removed``: the propagated labels where they agree with the mask,
  unlabelled elsewhere: the same blobs, precision 1.
- ``every superpixel, its majority class``: every superpixel of every training image given the
  most common class of its pixels in the mask: the blobs everywhere, not only around the points,
  with superpixel-shaped errors.

If the first scores like the propagated labels, their errors were not what held them back; if the
second comes close to dense masks, superpixels are fine and what propagation lacks is coverage
beyond the points. The record (every run, the study's own rows of the same seeds beside them, the
labels' coverage and precision, the command) and a plot are written to ``benchmarks/results/``;
finished seeds are skipped when the command runs again.

    python -m benchmarks.propagation_limits [--like RECORD] [--points-per-mp 100] [--seeds 0 1 2]
    python -m benchmarks.propagation_limits --readme   # the README's table and the plot from the record
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lc_utils.classes import IGNORE_INDEX
from lc_utils.metrics import majority_baseline
from lc_utils.propagation import label_quality, majority_labels, superpixels
from lc_utils.run_data import load_data
from lc_utils.run_spec import RunSpec
from lc_utils.runs import Run, build_run
from lc_utils.settings import PROJECT_ROOT
from lc_utils.sparse import annotatable
from lc_utils.study import DENSE, summarize, train_and_score
from lc_utils.viz_results import plot_method_comparison

from ._common import open_record, redraw_from_record, save_record

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
STUDY = RESULTS / "more_from_points_deepglobe.json"
CLEAN = "propagated, wrong pixels removed"
MAJORITY = "every superpixel, its majority class"
REFERENCES = ("uniform", "uniform+propagation", DENSE)
"""The study's own settings shown beside the two label sets (the same seeds, the same runs)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", type=Path, default=STUDY,
                        help="the study whose settings, superpixels and runs to use (default: %(default)s)")
    parser.add_argument("--points-per-mp", type=float, default=100.0, help="(default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "propagation_limits_deepglobe.json",
                        help="the JSON record (a PNG is written beside)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's table and redraw the plot from the record at --out")
    return parser.parse_args(argv)


def label_sets(run: Run, superpixel_area: float) -> dict[str, dict[str, np.ndarray]]:
    """The two label sets for the training images of ``run`` (a run on propagated points)."""
    train_set, schema = run.train_set, run.schema
    sets: dict[str, dict[str, np.ndarray]] = {CLEAN: {}, MAJORITY: {}}
    for index, image_id in enumerate(train_set.image_ids):
        image, propagated = train_set.read_item(index)
        truth = annotatable(train_set.read_class_map(index), schema)
        sets[CLEAN][image_id] = np.where(propagated == truth, propagated, IGNORE_INDEX).astype(np.uint8)
        sets[MAJORITY][image_id] = majority_labels(superpixels(image, superpixel_area), truth)
    return sets


def _quality(run: Run, label_maps: dict[str, np.ndarray]) -> dict[str, float]:
    train_set = run.train_set
    pairs = ((label_maps[image_id], train_set.read_class_map(index))
             for index, image_id in enumerate(train_set.image_ids))
    every = label_quality(pairs, run.schema).loc["all"]
    return {"trained_fraction": float(every["coverage"]), "label_precision": float(every["precision"])}


def table(record: dict[str, Any]) -> pd.DataFrame:
    """Mean ± sd per label set with the study's rows of the same seeds, in reading order."""
    runs = pd.DataFrame(record["runs"] + record["references"])
    # the points alone train on their points, dense masks on every pixel
    runs["trained_fraction"] = runs["trained_fraction"].fillna(runs["labelled_fraction"])
    summary = summarize(runs).set_index("strategy")
    order = [s for s in (*REFERENCES[:2], CLEAN, MAJORITY, DENSE) if s in summary.index]
    precision = runs.groupby("strategy")["label_precision"].mean() if "label_precision" in runs else None
    summary = summary.loc[order]
    if precision is not None:
        summary["label_precision"] = precision.reindex(order)
    return summary.reset_index()


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: a row per label set."""
    lines = ["| labels | trained on | label precision | val mIoU, mean ± sd | vs dense |",
             "|---|---|---|---|---|"]
    for row in table(record).itertuples():
        precision = "" if pd.isna(getattr(row, "label_precision", np.nan)) else f"{row.label_precision:.3f}"
        lines.append(f"| {row.strategy} | {row.trained_fraction:.2%} | {precision} | {row.miou_mean:.3f} ± "
                     f"{row.miou_sd:.3f} | {row.miou_vs_dense:.2f} |")
    return "\n".join(lines)


def draw_figure(record: dict[str, Any], path: Path) -> None:
    """The label sets as bars beside the study's rows, dense masks as the line above."""
    figure = plot_method_comparison(table(record), record["majority_miou"],
                                    title=f"{record['data']}: what held propagation back")
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        redraw_from_record(args.out, markdown_table, draw_figure)
        return
    started = time.perf_counter()
    study = json.loads(args.like.read_text())
    area = study["modifiers"]["superpixel_area"]
    spec = RunSpec.from_dict(study["settings"], source=str(args.like)).replace(
        strategy="uniform", points_per_mp=args.points_per_mp, superpixel_area=area)
    shared = {"settings": spec.to_dict(), "like": args.like.name}
    record = open_record(args.out, shared, "runs")
    data = load_data(spec)
    baseline = majority_baseline(data.split["train"], data.split["val"], data.schema)
    done = {row["seed"] for row in record["runs"]}
    points_per_image = next(row["points_per_image"] for row in study["runs"]
                            if row["strategy"] == "uniform" and row["points_per_mp"] == args.points_per_mp)
    for seed in args.seeds:
        if seed in done:
            continue
        run = build_run(spec.replace(seed=seed))
        for name, label_maps in label_sets(run, area).items():
            print(f"{name}, seed {seed} ...", flush=True)
            trial = build_run(spec.replace(seed=seed))
            trial.train_on(label_maps)
            scores = train_and_score(trial)
            record["runs"].append({"strategy": name, "points_per_mp": args.points_per_mp,
                                   "points_per_image": points_per_image,
                                   "labelled_fraction": trial.labelled_fraction, "seed": seed,
                                   **_quality(trial, label_maps),
                                   **{k: v for k, v in scores.items() if k != "history"}})
            print(f"    val mIoU {scores['val_mean_iou']:.3f}", flush=True)
        seeds = sorted({row["seed"] for row in record["runs"]})
        record["references"] = [row for row in study["runs"] if row["seed"] in seeds
                                and row["strategy"] in REFERENCES
                                and (row["strategy"] == DENSE or row["points_per_mp"] == args.points_per_mp)]
        save_record(args.out, record, "propagation_limits", argv, started, data=study["data"], seeds=seeds,
                    superpixel_area=area, majority_miou=baseline["mean_iou"],
                    summary=json.loads(table(record).to_json(orient="records")))
    draw_figure(record, args.out.with_suffix(".png"))
    print(markdown_table(record))


if __name__ == "__main__":
    main()
