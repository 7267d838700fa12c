"""Active against random point selection on the real DeepGlobe tiles (``make active``,
``make active-protocols``).

Rounds of notebook 09 with the masks answering for a person (``lc_utils.active``): every
training tile starts with the same few uniform points; each round then adds points per tile,
picked by a selection (``lc_utils.active_picks``: where the last round's model is least sure by
margin, PixelPick's random picks among its most uncertain 5%, the most uncertain pixels of each
class it predicts in turn) or at random under the same spacing rule, and fine-tunes the model on
all of them, or with ``--retrain`` trains the fresh model again on all of them for the whole
schedule. The validation tiles are scored after every round, one confusion matrix per tile kept,
and each round's new points are described against the masks and the model that picked them
(how often it was wrong there, how near a class edge they lie, their classes).
Writes every finished (selection, seed) at once to a JSON record (settings, seeds, every round,
mean and sd per selection and round, the gap active minus random on the same seed, with a paired
interval over the tiles where they were kept, the picks' descriptions, date, versions, CPU,
command) and a plot beside it; running the command again skips what is done.

    python -m benchmarks.active_selection [--budgets 5 10 20 40] [--seeds 0 1 2] ...
    python -m benchmarks.active_selection --selections random pixelpick class-balanced --budgets 10 20 40 \
        --retrain --out benchmarks/results/active_protocols_deepglobe.json
    python -m benchmarks.active_selection --readme   # the README's table and the plot from the record
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from lc_utils import settings
from lc_utils.active import describe_rounds, gaps_to_random, run_active_rounds, summarize_rounds
from lc_utils.active_picks import PICK_COLUMNS, SELECTIONS, TOP_SHARE
from lc_utils.metrics import majority_baseline
from lc_utils.run_data import load_data
from lc_utils.run_spec import RunSpec
from lc_utils.settings import PROJECT_ROOT
from lc_utils.viz_results import plot_active_rounds

from ._common import open_record, redraw_from_record, save_record

REAL_TILES = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "active_deepglobe.json"
FINE_TUNE_EPOCHS = 5
BEFORE = {"retrain": False, "top_share": TOP_SHARE}
"""What a record from before these settings were kept was made with: fine-tuned rounds, and no
PixelPick rounds (so any share)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_TILES, help="folder of <id>_sat.jpg/<id>_mask.png")
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 20, 40],
                        help="points per tile after each round (default: %(default)s)")
    parser.add_argument("--selections", nargs="+", choices=list(SELECTIONS), default=["margin", "random"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--min-distance", type=float, default=16.0,
                        help="least distance in pixels between points of a tile (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="round 0's epochs (default: %(default)s)")
    parser.add_argument("--fine-tune-epochs", type=int, default=None,
                        help=f"each later round's epochs, from the last round's model (default: "
                             f"{FINE_TUNE_EPOCHS}; not with --retrain)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every round from the fresh model for --epochs, instead of fine-tuning")
    parser.add_argument("--top-share", type=float, default=TOP_SHARE,
                        help="pixelpick: the share of each tile's most uncertain pixels its picks are "
                             "drawn from (default: %(default)s)")
    parser.add_argument("--samples-per-epoch", type=int, default=960)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--dice-weight", type=float, default=1.0)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--work", type=Path, default=settings.runs_dir() / "active_selection",
                        help="every round's points and checkpoints")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON record (a PNG is written beside)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's table and redraw the plot from the record at --out")
    args = parser.parse_args(argv)
    if args.retrain and args.fine_tune_epochs is not None:
        parser.error("--retrain trains every round for --epochs: leave out --fine-tune-epochs")
    if not args.retrain and args.fine_tune_epochs is None:
        args.fine_tune_epochs = FINE_TUNE_EPOCHS
    return args


def study_spec(args: argparse.Namespace) -> RunSpec:
    """What every round of every selection and seed shares: the real-tile recipe of the density study."""
    return RunSpec(data=str(args.data), backbone="mobilenet_v3_large", weights=None, crop=args.crop,
                   batch_size=8, epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, lr=args.lr,
                   dice_weight=args.dice_weight, val_images=args.val_images, val_windows=0,
                   val_window=args.crop, val_overlap=0.5)


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: a row per round, a column per selection (mean ± sd), and the gap of
    each active selection to random picks on the same seed; where the record kept the tiles'
    confusion matrices, also that gap's paired interval over the tiles, the seeds pooled."""
    summary = pd.DataFrame(record["summary"])
    selections = list(dict.fromkeys(summary["selection"]))
    active = [s for s in selections if s != "random"]
    intervals = {(g["selection"], g["round"]): g for g in record.get("gaps", [])}
    header = [f"{s}: val mIoU" for s in selections] + [f"{s} minus random, same seed" for s in active]
    if intervals:
        first = next(iter(intervals.values()))
        header += [f"{s} minus random: {first['confidence']:.0%} interval over {first['n_tiles']} tiles, "
                   "seeds pooled" for s in active]
    lines = ["| round | points per tile | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
    for round_number, rows in summary.groupby("round", sort=True):
        by = rows.set_index("selection")
        cells = [_mean_sd(by.loc[s, "miou_mean"], by.loc[s, "miou_sd"]) for s in selections]
        cells += [f"{_mean_sd(by.loc[s, 'gap_to_random_mean'], by.loc[s, 'gap_to_random_sd'], '+.3f')} "
                  f"({int(by.loc[s, 'seeds_above_random'])} of {int(by.loc[s, 'runs'])} above)"
                  for s in active]
        if intervals:
            cells += [_interval(intervals.get((s, round_number))) for s in active]
        budget = int(rows["points_per_image"].iloc[0])
        lines.append(f"| {round_number} | {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(gap: dict[str, Any] | None) -> str:
    """"-0.050 to +0.010, not measurable" ("" where the gap has no interval)."""
    if gap is None:
        return ""
    verdict = "measurable" if gap["measurable"] else "not measurable"
    return f"{gap['low']:+.3f} to {gap['high']:+.3f}, {verdict}"


def picks_table(record: dict[str, Any]) -> str:
    """The README's second table: what each selection's new points asked about, round by round
    (means over the seeds): the share where the last model was wrong, near a class edge, and on
    each class."""
    picks = pd.DataFrame(record["picks"])
    classes = [c for c in picks.columns if c not in {"selection", "seed", "round", "points_per_image",
                                                        *PICK_COLUMNS}]
    means = picks.groupby(["round", "selection"], sort=True)[["points_per_image", "model_wrong", "near_edge",
                                                               *classes]].mean()
    header = ["round", "new points per tile", "selection", "the last model wrong there",
              "within 2 px of a class edge", *classes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    budgets = record["budgets"]
    for (round_number, selection), row in means.iterrows():
        new = budgets[round_number] - budgets[round_number - 1]
        lines.append(f"| {round_number} | {new} | {selection} | " + " | ".join(
            f"{row[c]:.0%}" for c in ["model_wrong", "near_edge", *classes]) + " |")
    return "\n".join(lines)


def readme_text(record: dict[str, Any]) -> str:
    """Both README tables: the scores per round, then what the picks asked about."""
    return markdown_table(record) + ("\n\n" + picks_table(record) if record.get("picks") else "")


def _mean_sd(mean: float, sd: float | None, spec: str = ".3f") -> str:
    """"mean ± sd", or the mean alone where one seed leaves no sd."""
    return f"{mean:{spec}}" if sd is None or pd.isna(sd) else f"{mean:{spec}} ± {sd:.3f}"


def draw_figure(record: dict[str, Any], path: Path) -> None:
    """Validation mIoU after each round against the points per tile, a line per selection."""
    figure = plot_active_rounds(pd.DataFrame(record["summary"]), record["majority_miou"],
                                title=f"{record['data']}, {record['train_images']} training tiles: "
                                      f"mean ± sd over {len(record['seeds'])} seeds",
                                budget_unit="512 x 512 tile")
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        redraw_from_record(args.out, readme_text, draw_figure)
        return
    started = time.perf_counter()
    spec = study_spec(args)
    shared = {"settings": spec.to_dict(), "budgets": args.budgets, "min_distance": args.min_distance,
              "fine_tune_epochs": args.fine_tune_epochs, "retrain": args.retrain, "top_share": args.top_share}
    record = open_record(args.out, shared, "rounds", before=BEFORE)
    data = load_data(spec)
    baseline = majority_baseline(data.split["train"], data.split["val"], data.schema)
    record.setdefault("picks", [])
    done = {(row["selection"], row["seed"]) for row in record["rounds"]}
    described = {(row["selection"], row["seed"]) for row in record["picks"]}
    work_dir = args.work / args.data.name
    for seed in args.seeds:
        for selection in args.selections:
            if (selection, seed) in done and (selection, seed) in described:
                continue
            print(f"{selection}, seed {seed} ...", flush=True)
            if (selection, seed) not in done:
                rounds = run_active_rounds(spec.replace(seed=seed), args.budgets, selection,
                                           work_dir=work_dir, min_distance=args.min_distance,
                                           fine_tune_epochs=args.fine_tune_epochs, retrain=args.retrain,
                                           top_share=args.top_share)
                record["rounds"] += json.loads(rounds.to_json(orient="records"))
                print(rounds[["round", "points_per_image", "val_mean_iou"]].round(3).to_string(index=False),
                      flush=True)
            picks = describe_rounds(spec.replace(seed=seed), args.budgets, selection, work_dir=work_dir)
            record["picks"] += json.loads(picks.to_json(orient="records"))
            all_rounds = pd.DataFrame(record["rounds"])
            save_record(args.out, record, "active_selection", argv, started, data=args.data.name,
                        train_images=len(data.split["train"]), val_images=len(data.split["val"]),
                        seeds=sorted(set(all_rounds["seed"])), majority_miou=baseline["mean_iou"],
                        summary=json.loads(summarize_rounds(all_rounds).to_json(orient="records")),
                        gaps=gaps_to_random(record["rounds"], data.schema))
    draw_figure(record, args.out.with_suffix(".png"))
    print(readme_text(record))


if __name__ == "__main__":
    main()
