"""Self-training as the field runs it, on the real DeepGlobe tiles (``make self-training``).

For each label density and seed: a **teacher** trained on the points alone for the density
study's whole schedule (its checkpoint kept, so both arms reuse it), then from its weights the same
further epochs twice (:mod:`lc_utils.self_training`): the **student** on the points and the
teacher's class-balanced confident pixels, the **control** on the points alone, both with strong
colour jitter and in the same crops. Every model is scored on the same validation tiles, one
confusion matrix per tile, so that the gap student - control carries a paired bootstrap interval
over the tiles (:mod:`lc_utils.tile_bootstrap`); the pseudo-labels' precision and coverage per
class are kept beside it. Finished runs are kept in the record and skipped when the command runs
again.

    python -m benchmarks.self_training [--data DIR] [--points-per-mp 100 1000] [--seeds 0 1 2]
    python -m benchmarks.self_training --readme   # the README's table and the plot from the record
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lc_utils import checkpoints, records, settings, tile_bootstrap
from lc_utils.run_spec import RunSpec
from lc_utils.runs import build_run
from lc_utils.self_training import ARMS, ExtraTraining, from_teacher, pseudo_label_quality, train_further
from lc_utils.settings import PROJECT_ROOT
from lc_utils.viz_results import plot_method_comparison

from ._common import open_record, redraw_from_record, save_record

REAL_TILES = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "self_training_deepglobe.json"
TEACHER = records.TEACHER
MODELS = (TEACHER, *ARMS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_TILES, help="folder of <id>_sat.jpg/<id>_mask.png")
    parser.add_argument(
        "--points-per-mp",
        type=float,
        nargs="+",
        default=[100, 1000],
        help="label densities: 100 per megapixel is 0.01%% of the pixels (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--val-images",
        type=int,
        default=32,
        help="validation tiles, the rest train (default: %(default)s; the density study had 16)",
    )
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--samples-per-epoch", type=int, default=960, help="crops per epoch (120 steps of 8)")
    parser.add_argument("--epochs", type=int, default=10, help="the teacher's epochs (10 x 120 steps)")
    parser.add_argument(
        "--extra-epochs", type=int, default=5, help="further epochs of both arms (default: 600 steps)"
    )
    parser.add_argument(
        "--color-jitter", type=float, default=0.4, help="strong augmentation of the further epochs"
    )
    parser.add_argument(
        "--consistency-at",
        type=float,
        nargs="*",
        default=[100],
        help="densities at which the consistency arm runs too (default: %(default)s)",
    )
    parser.add_argument("--consistency-weight", type=float, default=1.0)
    parser.add_argument("--pseudo-threshold", type=float, default=0.9)
    parser.add_argument("--pseudo-class-share", type=float, default=0.2)
    parser.add_argument(
        "--work",
        type=Path,
        default=settings.runs_dir() / "self_training",
        help="the teachers' and the arms' run folders",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON record (a PNG is written beside)")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="only rewrite the README's table and redraw the plot from the record at --out",
    )
    return parser.parse_args(argv)


def teacher_spec(args: argparse.Namespace, points_per_mp: float, seed: int) -> RunSpec:
    """The density study's real-tile recipe on the points alone (MobileNetV3 from random weights,
    128² crops, 1,200 steps at 3e-4 with the Dice term), validated on ``--val-images`` tiles."""
    return RunSpec(
        data=str(args.data),
        val_images=args.val_images,
        split_seed=0,
        strategy="uniform",
        points_per_mp=points_per_mp,
        backbone="mobilenet_v3_large",
        weights=None,
        crop=args.crop,
        batch_size=8,
        epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch,
        lr=3e-4,
        dice_weight=1.0,
        val_window=128,
        val_overlap=0.5,
        val_windows=16,
        pseudo_threshold=args.pseudo_threshold,
        pseudo_class_share=args.pseudo_class_share,
        seed=seed,
    )


def run_one(
    args: argparse.Namespace, record: dict[str, Any], points_per_mp: float, seed: int
) -> Iterator[dict[str, Any]]:
    """The teacher, the control and the student of one density and seed (and the consistency arm
    at the densities of ``--consistency-at``), each added to the record and yielded when done."""
    spec = teacher_spec(args, points_per_mp, seed)
    tag = f"{points_per_mp:g}permp_seed{seed}"
    teacher_dir = args.work / f"teacher_{tag}"
    extra = ExtraTraining(
        epochs=args.extra_epochs, color_jitter=args.color_jitter, consistency_weight=args.consistency_weight
    )
    done = {(r["points_per_mp"], r["seed"], r["model"]) for r in record["runs"]}
    for model in MODELS:
        if (points_per_mp, seed, model) in done or (
            model == "consistency" and points_per_mp not in args.consistency_at
        ):
            continue
        started = time.perf_counter()
        row: dict[str, Any] = {"points_per_mp": points_per_mp, "seed": seed, "model": model}
        if model == TEACHER:
            run = build_run(spec, runs_dir=args.work / "runs")
            run.train(teacher_dir, progress=False)
            row.update(
                steps=run.steps,
                points_per_image=run.points_per_image,
                labelled_fraction=run.labelled_fraction,
            )
        else:
            if not (teacher_dir / checkpoints.LAST).is_file():
                # a record carried to another machine keeps its rows, not the teachers' checkpoints:
                # the teacher is trained again, the same weights for the same seed on a CPU
                build_run(spec, runs_dir=args.work / "runs").train(teacher_dir, progress=False)
            run, maps = from_teacher(
                teacher_dir / checkpoints.LAST, model, extra, runs_dir=args.work / "runs"
            )
            train_further(run, model, extra, args.work / f"{model}_{tag}")
            row.update(steps=extra.epochs * len(run.train_loader), trained_fraction=run.trained_fraction)
            if run.spec.consistency() is not None:
                row["consistency"] = asdict(run.spec.consistency())
            if model == "pseudo-labels":
                quality = pseudo_label_quality(run, maps)
                row["pseudo_labels"] = {
                    name: {k: float(v) for k, v in quality.loc[name].items()} for name in quality.index
                }
        tiles = tile_bootstrap.score_tiles(
            run.model, run.split["val"], run.schema, tile_size=spec.val_window, overlap=spec.val_overlap
        )
        row.update(records.scores_from_tiles(tiles, run.schema), tile_confusions=tiles,
                   minutes=(time.perf_counter() - started) / 60)
        record["runs"].append(row)
        yield row


def gaps(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per density: the student's mIoU minus the control's and the control's minus the teacher's,
    each per seed with its paired tile interval and pooled over the seeds."""
    return records.gaps_against(record["runs"], records.SELF_TRAINING_CONTROLS, name="model",
                                classes=record["classes"], group="points_per_mp")


def readme_table(record: dict[str, Any]) -> str:
    """Markdown: per density and model, the steps, the mIoU (mean ± sd over seeds) and the gap to
    its control on the same seeds with its 90% paired tile interval."""
    lines = [
        "| points per MP | model | steps (in all) | val mIoU, mean ± sd "
        "| gap to its control (90% tile interval) |",
        "|---|---|---|---|---|",
    ]
    by_gap = {(g["points_per_mp"], g["method"]): g for g in gaps(record)}
    for row in records.self_training_summary(record).itertuples():
        gap = by_gap.get((row.points_per_mp, row.model))
        spread = "" if np.isnan(row.miou_sd) else f" ± {row.miou_sd:.3f}"
        lines.append(
            f"| {row.points_per_mp:g} | {row.strategy} | {row.steps:,} ({row.total_steps:,}) | "
            f"{row.miou_mean:.3f}{spread} ({row.runs} seed{'s' if row.runs > 1 else ''}) | "
            f"{'' if gap is None else records.describe_gap(gap)} |"
        )
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """Bars per density: the teacher, the control and the arms (mean ± sd over the seeds)."""
    figure = plot_method_comparison(
        records.self_training_summary(record),
        title=f"self-training against the same extra steps ({record['val_images']} validation tiles)",
    )
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        redraw_from_record(args.out, readme_table, plot)
        return
    shared = {
        "data": args.data.name,
        "crop": args.crop,
        "samples_per_epoch": args.samples_per_epoch,
        "val_images": args.val_images,
        "epochs": args.epochs,
        "extra_epochs": args.extra_epochs,
        "color_jitter": args.color_jitter,
        "pseudo_threshold": args.pseudo_threshold,
        "pseudo_class_share": args.pseudo_class_share,
    }
    record = open_record(args.out, shared, "runs")
    record["seeds"] = sorted({*record.get("seeds", []), *args.seeds})
    started = time.perf_counter()
    record["spec"] = teacher_spec(
        args, args.points_per_mp[0], args.seeds[0]
    ).to_dict()  # points and seed vary
    for seed in args.seeds:
        for density in args.points_per_mp:
            for row in run_one(args, record, density, seed):
                record.setdefault("classes", list(row["val_iou"]))
                record["gaps"] = gaps(record)
                save_record(args.out, record, "self_training", argv, started)
                print(
                    f"  {density:g} per MP, seed {seed}, {row['model']}: val mIoU {row['val_mean_iou']:.3f} "
                    f"({row['minutes']:.1f} min)",
                    flush=True,
                )
    plot(record, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
