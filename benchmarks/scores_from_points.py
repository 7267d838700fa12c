"""Scores from clicked points against scores from masks, on the real DeepGlobe tiles
(``make scores-from-points``).

The workflow of notebook 08 on real imagery: an images-only copy of the tiles (links to the
images; the masks set aside) and a few points per tile drawn from the set-aside masks, as a
person's clicks would land (uniform, none on no data), train DeepLabV3 with the real-tile recipe,
validating on the points of the split's validation tiles. The final model is then scored twice
on those tiles: from their held-out points, with intervals (``point_scores.score_points``), and
from their masks, pixel by pixel. From the same predictions, ``point_scores.point_sampling_error``
measures how many uniform held-out points a point mIoU needs to fall within ±0.03 of the masks'.
Finished seeds are kept in the record and skipped when the command runs again.

    python -m benchmarks.scores_from_points [--data DIR] [--points-per-tile 30] [--seeds 0 1 2]
    python -m benchmarks.scores_from_points --readme   # the README's table and the plot from the record
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from lc_utils import (
    files,
    inference,
    layouts,
    masks,
    metrics,
    point_editor,
    point_scores,
    settings,
    viz_results,
)
from lc_utils.classes import ClassSchema
from lc_utils.run_spec import RunSpec
from lc_utils.runs import build_run
from lc_utils.settings import PROJECT_ROOT

from ._common import open_record, redraw_from_record, save_record

REAL_TILES = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "scores_from_points_deepglobe.json"
SAMPLE_SIZES = (50, 100, 200, 400, 800, 1600, 3200, 6400)
TOLERANCE = 0.03


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_TILES, help="folder of <id>_sat.jpg/<id>_mask.png")
    parser.add_argument("--points-per-tile", type=int, default=30,
                        help="clicks per tile (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="each seed: other clicks, starting weights and crops (default: %(default)s)")
    parser.add_argument("--backbone", default="mobilenet_v3_large")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples-per-epoch", type=int, default=960)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--dice-weight", type=float, default=1.0)
    parser.add_argument("--val-images", type=int, default=16,
                        help="validation tiles, the rest train (default: %(default)s, as the density study)")
    parser.add_argument("--repeats", type=int, default=300, help="draws per number of held-out points")
    parser.add_argument("--work", type=Path, default=settings.runs_dir() / "scores_from_points",
                        help="the images-only copy, the clicks and the runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON record (a PNG is written beside)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's table and redraw the plot from the record at --out")
    return parser.parse_args(argv)


def simulate_clicks(pairs: list[files.ImagePair], schema: ClassSchema, points_per_tile: int, seed: int,
                    path: Path) -> Path:
    """Clicks drawn from the set-aside masks (uniform, never on no data) through the annotation
    widget's editor, as notebook 08 makes them without a person; a new file for every call."""
    path.unlink(missing_ok=True)
    editor = point_editor.PointEditor(path, files.image_shapes(pairs), schema)
    point_editor.simulate_clicks(editor, {pair.image_id: pair.mask for pair in pairs},
                                 points_per_tile, seed)
    return path


def measure_seed(args: argparse.Namespace, pairs: list[files.ImagePair], seed: int) -> dict[str, Any]:
    """Train from one seed's clicks and score the final model from points and from masks."""
    clicks = simulate_clicks(pairs, layouts.load_schema(args.data), args.points_per_tile, seed,
                             args.work / f"clicks_seed{seed}.csv")
    spec = RunSpec(data=str(args.work / "images"), annotations=str(clicks), held_out="images",
                   val_images=args.val_images, backbone=args.backbone, weights=None, crop=args.crop,
                   batch_size=8, epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, lr=args.lr,
                   dice_weight=args.dice_weight, val_window=args.crop, val_overlap=0.5, seed=seed)
    run = build_run(spec, runs_dir=args.work / "runs")
    started = time.perf_counter()
    history = run.train(args.work / "runs" / f"seed{seed}", progress=False)
    train_seconds = time.perf_counter() - started
    masks_of = {pair.image_id: pair.mask for pair in pairs}
    predictions, truths = {}, {}
    for pair in run.split["val"]:
        image_id = pair.image_id
        predictions[image_id] = inference.predict_tiled(run.model, files.read_rgb(pair.image, what="image"),
                                                        tile_size=spec.val_window, overlap=spec.val_overlap)
        truths[image_id] = masks.read_mask(masks_of[image_id], run.schema)
    scores = point_scores.score_points(point_scores.point_table(predictions, run.val_points), run.schema,
                                       seed=seed)
    confusion = metrics.ConfusionMatrix(run.schema.num_classes, schema=run.schema)
    confusion.update_many((predictions[i], truths[i]) for i in predictions)
    mask_miou = confusion.summary()["mean_iou"]
    sampling = point_scores.point_sampling_error(((truths[i], predictions[i]) for i in predictions),
                                                 SAMPLE_SIZES, run.schema, repeats=args.repeats,
                                                 tolerance=TOLERANCE, seed=seed)
    low, high = scores.miou_interval
    return {"seed": seed, "train_images": len(run.split["train"]), "val_images": len(predictions),
            "train_points": int(sum(len(a) for a in run.annotations.values())),
            "held_out_points": scores.n_points, "steps": run.steps, "train_seconds": train_seconds,
            "best_epoch_point_miou": max(r["val_mean_iou"] for r in history),
            "point_miou": scores.miou, "point_miou_low": low, "point_miou_high": high,
            "point_accuracy": scores.accuracy, "point_accuracy_low": scores.accuracy_interval[0],
            "point_accuracy_high": scores.accuracy_interval[1],
            "mask_miou": mask_miou, "mask_pixel_accuracy": confusion.summary()["pixel_accuracy"],
            "mask_within_point_interval": bool(low <= mask_miou <= high),
            "mask_per_class_iou": dict(confusion.per_class()["iou"].round(4)),
            "point_per_class": json.loads(scores.per_class.to_json(orient="index")),
            "sampling": json.loads(sampling.to_json(orient="records"))}


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: per seed, the point mIoU with its interval beside the masks' mIoU."""
    lines = ["| seed | held-out points (tiles) | point mIoU (95% interval) | mask mIoU | mask inside the "
             "interval | points needed for ±0.03 |", "|---|---|---|---|---|---|"]
    for row in record["runs"]:
        needed = point_scores.points_needed(pd.DataFrame(row["sampling"]))
        lines.append(f"| {row['seed']} | {row['held_out_points']} ({row['val_images']}) | "
                     f"{row['point_miou']:.3f} ({row['point_miou_low']:.3f}-{row['point_miou_high']:.3f}) | "
                     f"{row['mask_miou']:.3f} | {'yes' if row['mask_within_point_interval'] else 'no'} | "
                     f"{f'{needed:,}' if needed is not None else f'more than {SAMPLE_SIZES[-1]:,}'} |")
    return "\n".join(lines)


def draw_figure(record: dict[str, Any], path: Path) -> None:
    """Point mIoU minus mask mIoU against the number of held-out points, one band per seed."""
    sampling = {f"seed {row['seed']}: 95% of draws (mask mIoU {row['mask_miou']:.2f})":
                pd.DataFrame(row["sampling"]) for row in record["runs"]}
    title = (f"{record['data']}: {record['runs'][0]['val_images']} validation tiles, "
             f"model trained on {record['points_per_tile']} clicks per tile")
    figure = viz_results.plot_point_sampling_error(sampling, record["tolerance"], title=title,
                                                   held_out=record["runs"][0]["held_out_points"])
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        redraw_from_record(args.out, markdown_table, draw_figure)
        return
    started = time.perf_counter()
    pairs = layouts.images_only_copy(args.data, args.work / "images")
    # what every seed shares; more seeds, another record path or work folder leave the study the same
    settings_used = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                     if k not in ("seeds", "out", "work", "readme")}
    record = open_record(args.out, {"settings": settings_used}, "runs")
    done = {row["seed"] for row in record["runs"]}
    for seed in args.seeds:
        if seed in done:
            continue
        print(f"seed {seed} ...", flush=True)
        record["runs"].append(measure_seed(args, pairs, seed))
        save_record(args.out, record, "scores_from_points", argv, started, data=args.data.name,
                    points_per_tile=args.points_per_tile, tolerance=TOLERANCE)
        row = record["runs"][-1]
        print(f"  point mIoU {row['point_miou']:.3f} ({row['point_miou_low']:.3f}-"
              f"{row['point_miou_high']:.3f}) from {row['held_out_points']} points; "
              f"mask mIoU {row['mask_miou']:.3f}", flush=True)
    draw_figure(record, args.out.with_suffix(".png"))
    print(markdown_table(record))


if __name__ == "__main__":
    main()
