"""Why spreading points over superpixels did not beat the points alone: label sets that isolate the
cause, on the real tiles, beside the self-training study's teachers (``make propagation-limits``).

Propagated labels differ from the points in two ways: they are sometimes wrong (a superpixel that
crosses a class edge), and they cover blobs around the points, each blob weighted in the loss by
its size. Each label set below trains like the self-training study's teacher (the same spec, split,
points, seeds and steps; ``--like``) and is scored per validation tile:

- ``uniform+propagation``: the points spread over superpixels (the more-from-points study's
  setting, run again on this split);
- ``propagated, wrong pixels removed``: the propagated labels where they agree with the mask,
  unlabelled elsewhere: the same blobs, precision 1;
- ``every superpixel, its majority class``: every superpixel of every training image given the
  most common class of its pixels in the mask: the blobs everywhere, not only around the points,
  with superpixel-shaped errors;
- ``dense``: the masks, the ceiling on this split.

The points alone are the teachers of ``--like`` (the same runs). Each set is measured against its
control on the same seed with a paired interval over the validation tiles
(:data:`lc_utils.records.LIMITS_CONTROLS`): if the clean blobs score like the propagated ones, the
errors were not what held them back; if every superpixel comes close to dense masks, superpixels
are fine and what propagation lacks is coverage beyond the points. The record (every run, the
teachers beside them, the labels' coverage and precision, the gaps, the command) and a plot are
written to ``benchmarks/results/``; finished runs are skipped when the command runs again.

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

from lc_utils import records, tile_bootstrap
from lc_utils.classes import IGNORE_INDEX, ClassSchema
from lc_utils.metrics import majority_baseline
from lc_utils.propagation import label_quality, majority_labels, superpixels
from lc_utils.run_data import load_data
from lc_utils.run_spec import DENSE, RunSpec
from lc_utils.runs import Run, build_run
from lc_utils.settings import PROJECT_ROOT
from lc_utils.sparse import annotatable
from lc_utils.viz_results import plot_method_comparison

from ._common import open_record, redraw_from_record, save_record

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
LIKE = RESULTS / "self_training_deepglobe.json"
CLEAN, MAJORITY, PROPAGATED = records.CLEAN, records.MAJORITY, records.PROPAGATED
LABEL_SETS = (PROPAGATED, CLEAN, MAJORITY, DENSE)
"""What each seed trains, in order: the two derived sets need the propagated labels first."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", type=Path, default=LIKE,
                        help="the study whose spec, split and teachers to use (default: %(default)s)")
    parser.add_argument("--points-per-mp", type=float, default=100.0, help="(default: %(default)s)")
    parser.add_argument("--superpixel-area", type=float, default=900.0,
                        help="mean superpixel in pixels, as in the more-from-points study "
                             "(default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "propagation_limits_deepglobe.json",
                        help="the JSON record (a PNG is written beside)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's table and redraw the plot from the record at --out")
    return parser.parse_args(argv)


def derived_label_sets(run: Run, superpixel_area: float) -> dict[str, dict[str, np.ndarray]]:
    """The clean blobs and every superpixel's majority class for the training images of ``run``
    (a run on propagated points)."""
    train_set, schema = run.train_set, run.schema
    sets: dict[str, dict[str, np.ndarray]] = {CLEAN: {}, MAJORITY: {}}
    for index, image_id in enumerate(train_set.image_ids):
        image, propagated = train_set.read_item(index)
        truth = annotatable(train_set.read_class_map(index), schema)
        sets[CLEAN][image_id] = np.where(propagated == truth, propagated, IGNORE_INDEX).astype(np.uint8)
        sets[MAJORITY][image_id] = majority_labels(superpixels(image, superpixel_area), truth)
    return sets


def _label_maps(run: Run) -> dict[str, np.ndarray]:
    """What ``run`` trains on, per training image (its points, spread or not, or its masks)."""
    train_set = run.train_set
    return {image_id: train_set.read_item(index)[1] for index, image_id in enumerate(train_set.image_ids)}


def _quality(run: Run, label_maps: dict[str, np.ndarray]) -> dict[str, float]:
    base = run.base_train_set
    pairs = ((label_maps[image_id], base.read_class_map(index))
             for index, image_id in enumerate(base.image_ids))
    every = label_quality(pairs, run.schema).loc["all"]
    return {"trained_fraction": float(every["coverage"]), "label_precision": float(every["precision"])}


def references(like: dict[str, Any], points_per_mp: float, seeds: list[int], schema: ClassSchema
               ) -> list[dict[str, Any]]:
    """The teachers of ``like`` at ``points_per_mp`` on ``seeds``: the points alone, as rows of this
    record (their own labels are right, so their precision is 1)."""
    kept = ("points_per_mp", "points_per_image", "labelled_fraction", "seed", "steps", "tile_confusions")
    rows = []
    for row in like["runs"]:
        if row["model"] == records.TEACHER and row["points_per_mp"] == points_per_mp and row["seed"] in seeds:
            rows.append({"strategy": records.POINTS, **{k: row[k] for k in kept},
                "trained_fraction": row["labelled_fraction"], "label_precision": 1.0,
                **records.scores_from_tiles(row["tile_confusions"], schema)})
    return rows


def gaps(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each label set against its control on the same seeds, with the paired tile intervals."""
    return records.gaps_against([*record["references"], *record["runs"]], records.LIMITS_CONTROLS,
                                name="strategy", classes=record["classes"])


def summary_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's summary as it keeps it: :func:`lc_utils.records.limits_summary`'s rows."""
    return json.loads(records.limits_summary(record).to_json(orient="records"))


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: a row per label set, with the gap to its control and its interval."""
    by_gap = {g["method"]: g for g in record.get("gaps", [])}
    lines = ["| labels | trained on | label precision | val mIoU, mean ± sd | vs dense "
             "| gap to its control (90% tile interval) |", "|---|---|---|---|---|---|"]
    for row in records.limits_summary(record).itertuples():
        gap = by_gap.get(row.strategy)
        against = "" if gap is None else f"against {gap['control']}: {records.describe_gap(gap)}"
        spread = "" if np.isnan(row.miou_sd) else f" ± {row.miou_sd:.3f}"
        lines.append(f"| {row.strategy} | {row.trained_fraction:.2%} | {row.label_precision:.3f} | "
                     f"{row.miou_mean:.3f}{spread} | {row.miou_vs_dense:.2f} | {against} |")
    return "\n".join(lines)


def draw_figure(record: dict[str, Any], path: Path) -> None:
    """The label sets as bars beside the points alone, dense masks as the line above."""
    figure = plot_method_comparison(records.limits_summary(record), record["majority_miou"],
                                    title=f"{record['data']}, {record['val_images']} validation tiles: "
                                          "what held propagation back")
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        redraw_from_record(args.out, markdown_table, draw_figure)
        return
    started = time.perf_counter()
    like = records.load(args.like)
    spec = RunSpec.from_dict(like["spec"], source=str(args.like)).replace(
        strategy="uniform", points_per_mp=args.points_per_mp, superpixel_area=None)
    shared = {"settings": spec.to_dict(), "like": args.like.name, "superpixel_area": args.superpixel_area}
    record = open_record(args.out, shared, "runs")
    data = load_data(spec)
    baseline = majority_baseline(data.split["train"], data.split["val"], data.schema)
    for seed in args.seeds:
        done = {row["strategy"] for row in record["runs"] if row["seed"] == seed}
        propagated = build_run(spec.replace(seed=seed, superpixel_area=args.superpixel_area))
        derived = None
        for name in LABEL_SETS:
            if name in done:
                continue
            print(f"{name}, seed {seed} ...", flush=True)
            run_started = time.perf_counter()
            if name in (CLEAN, MAJORITY):
                derived = derived or derived_label_sets(propagated, args.superpixel_area)
                run = build_run(spec.replace(seed=seed))
                run.train_on(derived[name])
            elif name == DENSE:
                run = build_run(spec.replace(seed=seed, strategy=DENSE, points_per_mp=None))
            else:
                run = build_run(spec.replace(seed=seed, superpixel_area=args.superpixel_area))
            label_maps = _label_maps(run)
            run.train(progress=False)
            tiles = tile_bootstrap.score_tiles(run.model, run.split["val"], run.schema,
                                               tile_size=spec.val_window, overlap=spec.val_overlap)
            points = name != DENSE
            record["runs"].append({
                "strategy": name, "points_per_mp": args.points_per_mp if points else None,
                "points_per_image": propagated.points_per_image if points else None,
                "labelled_fraction": run.labelled_fraction, "seed": seed, "steps": run.steps,
                **_quality(run, label_maps), **records.scores_from_tiles(tiles, run.schema),
                "tile_confusions": tiles, "minutes": (time.perf_counter() - run_started) / 60})
            record.setdefault("classes", list(record["runs"][-1]["val_iou"]))
            seeds = sorted({row["seed"] for row in record["runs"]})
            record["references"] = references(like, args.points_per_mp, seeds, data.schema)
            record["gaps"] = gaps(record)
            save_record(args.out, record, "propagation_limits", argv, started, data=Path(spec.data).name,
                        seeds=seeds, val_images=len(data.split["val"]), majority_miou=baseline["mean_iou"],
                        summary=summary_rows(record))
            print(f"    val mIoU {record['runs'][-1]['val_mean_iou']:.3f}", flush=True)
    draw_figure(record, args.out.with_suffix(".png"))
    print(markdown_table(record))


if __name__ == "__main__":
    main()
