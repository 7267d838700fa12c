"""A simulated person teaching a trained model by clicks on real tiles it never trained on
(``make simulated-person``): the live head against ilastik's recipe and a full fine-tune on the
same clicks.

The start is the self-training study's teacher (``--like``: its spec, split and seeds; the points
alone at ``--points-per-mp``, 1,200 steps from random weights, trained again here where its
checkpoint is missing: the same weights for the same seed on a CPU). Its validation tiles are the
person's: the first ``--clicked-tiles`` get one click per tile per round under each policy of
:mod:`lc_utils.simulated_person` (random, the largest wrong region's centre, notebook 09's
suggestions), the masks answering, the live head (:class:`lc_utils.live_head.LiveHead`) refitted
after every round; the others are never clicked and show what the head learned beyond the
clicked tiles. At each ``--score-at`` count the record keeps every tile's confusion matrix, for
the live head, for ilastik's recipe on the same clicks (:class:`lc_utils.filter_forest.FilterForest`)
and, at ``--fine-tune-at``, for the model fine-tuned from the live head on the clicks for
``--fine-tune-epochs`` of the recipe's batches (:meth:`lc_utils.runs.Run.on_points`). Gaps are
paired over the tiles, the seeds pooled (:func:`lc_utils.records.gaps_against`).

    python -m benchmarks.simulated_person [--seeds 0 1 2] [--score-at 0 1 2 5 10 20 50] ...
    python -m benchmarks.simulated_person --readme   # the README's table and the plot from the record
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lc_utils import checkpoints, records
from lc_utils.datasets import read_pair
from lc_utils.filter_forest import FilterForest
from lc_utils.inference import predict_tiled
from lc_utils.live_head import LiveHead
from lc_utils.run_spec import RunSpec
from lc_utils.runs import Run, build_run, load_run
from lc_utils.settings import PROJECT_ROOT
from lc_utils.simulated_person import POLICIES, Tiles, fitted, score_learner, simulate_clicks, summarize
from lc_utils.sparse import PointAnnotation
from lc_utils.viz_results import plot_click_curves

from ._common import open_record, redraw_from_record, save_record

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
LIVE, FOREST, FINE_TUNE = "live head", "ilastik recipe", "full fine-tune"
CONTROLS = {FOREST: LIVE, FINE_TUNE: LIVE}
"""Each learner against the live head on the same clicks."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", type=Path, default=RESULTS / "self_training_deepglobe.json",
                        help="the self-training record whose teachers start (default: %(default)s)")
    parser.add_argument("--points-per-mp", type=float, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--clicked-tiles", type=int, default=16,
                        help="validation tiles the person clicks on; the rest are never clicked")
    parser.add_argument("--score-at", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20, 50],
                        help="clicks per tile at which every learner is scored (default: %(default)s)")
    parser.add_argument("--fine-tune-at", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "runs" / "simulated_person",
                        help="the teachers' checkpoints")
    parser.add_argument("--out", type=Path, default=RESULTS / "simulated_person_deepglobe.json")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README's table and redraw the plot from the record at --out")
    args = parser.parse_args(argv)
    if not set(args.fine_tune_at) <= set(args.score_at) or 0 in args.fine_tune_at:
        parser.error("--fine-tune-at must be click counts of --score-at, above 0")
    return args


def teacher(args: argparse.Namespace, spec: RunSpec) -> Run:
    """The trained start of one seed, from its checkpoint (trained first where it is missing)."""
    run_dir = args.work / f"teacher_{spec.points_per_mp:g}permp_seed{spec.seed}"
    if not (run_dir / checkpoints.LAST).is_file():
        build_run(spec, runs_dir=args.work / "runs").train(run_dir, progress=False)
    return load_run(run_dir / checkpoints.LAST, runs_dir=args.work / "runs")


class _Model:
    """A trained model as a learner that has learned already: its whole-image prediction."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def predict(self, image_id: str, image: np.ndarray, *, return_probs: bool = False) -> np.ndarray:
        spec = self.run.spec
        return predict_tiled(self.run.model, image, tile_size=spec.val_window, overlap=spec.val_overlap)


def _live(run: Run, tiles: int) -> LiveHead:
    spec = run.spec
    return LiveHead(run.model, schema=run.schema, tile_size=spec.val_window, overlap=spec.val_overlap,
                    cache_images=tiles)


def _rows(base: dict[str, Any], learner: str, scored: Mapping[str, Mapping[str, Any]], schema) -> list[dict]:
    """A record row per tile set (clicked, unseen) of one learner's scores."""
    return [{**base, "learner": learner, "tiles": tiles, **records.scores_from_tiles(confusions, schema),
             "tile_confusions": confusions} for tiles, confusions in scored.items()]


def run_seed(args: argparse.Namespace, like: dict[str, Any], seed: int, policy: str) -> list[dict[str, Any]]:
    """Every learner's rows for one seed and policy."""
    spec = RunSpec.from_dict(like["spec"], source=str(args.like)).replace(
        strategy="uniform", points_per_mp=args.points_per_mp, seed=seed)
    run = teacher(args, spec)
    pairs = run.split["val"]
    tiles = {Path(image).stem.removesuffix("_sat"): read_pair(image, mask, run.schema)
             for image, mask in pairs}
    ids = list(tiles)
    clicked: Tiles = {t: tiles[t] for t in ids[:args.clicked_tiles]}
    unseen: Tiles = {t: tiles[t] for t in ids[args.clicked_tiles:]}
    clicked_pairs = [pair for pair, t in zip(pairs, ids) if t in clicked]
    started = time.perf_counter()
    live_rows = simulate_clicks(_live(run, len(tiles)), clicked, unseen, policy, args.score_at, run.schema,
                                seed=seed)
    live_seconds = time.perf_counter() - started  # every round's learn and redraw, and the scoring
    rows = []
    for scored in live_rows:
        count, clicks = scored["clicks_per_tile"], scored["annotations"]
        base = {"seed": seed, "policy": policy, "clicks_per_tile": count}
        rows += _rows({**base, "simulation_seconds": live_seconds}, LIVE,
                      {k: scored[k] for k in ("clicked_tiles", "unseen_tiles")}, run.schema)
        if count == 0:
            continue
        forest = FilterForest({t: image for t, (image, _) in tiles.items()}, schema=run.schema, seed=seed,
                              cache_images=len(tiles))
        rows += _rows(base, FOREST, score_learner(fitted(forest), clicks, clicked, unseen, run.schema),
                      run.schema)
        if count in args.fine_tune_at:
            tune = partial(_fine_tuned, args, spec, pairs=clicked_pairs, tiles=tiles)
            tuned = score_learner(tune, clicks, clicked, unseen, run.schema)
            steps = args.fine_tune_epochs * (spec.samples_per_epoch // spec.batch_size)
            rows += _rows({**base, "steps": steps}, FINE_TUNE, tuned, run.schema)
    return rows


def _fine_tuned(args: argparse.Namespace, spec: RunSpec, clicks: Mapping[str, PointAnnotation], *,
                pairs: list, tiles: Tiles) -> _Model:
    """The teacher with the live head on ``clicks`` written into its last layer, then trained on
    the clicks for ``--fine-tune-epochs``: the full fine-tune a person would start."""
    run = teacher(args, spec)
    head = _live(run, len(tiles))
    head.learn(clicks, {t: image for t, (image, _) in tiles.items()})
    head.write_into(run.model)
    tuned = run.on_points(pairs, clicks, epochs=args.fine_tune_epochs)
    tuned.train(progress=False)
    tuned.model.eval()
    return _Model(tuned)


def gaps(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The forest and the fine-tune against the live head on the same clicks, tiles and seeds."""
    return records.gaps_against(record["runs"], CONTROLS, name="learner", classes=record["classes"],
                                group=("policy", "clicks_per_tile", "tiles"))


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: a row per policy and click count, the three learners' mIoU on the
    clicked and unseen tiles, and the forest's gap to the live head with its interval."""
    table = summarize(record["runs"])
    by_gap = {(g["policy"], g["clicks_per_tile"], g["tiles"], g["method"]): g for g in record["gaps"]}
    header = ["policy", "clicks per tile"] + [f"{learner}, {tiles} tiles" for tiles in ("clicked", "unseen")
                                              for learner in (LIVE, FOREST, FINE_TUNE)]
    header += ["ilastik recipe minus live head, clicked tiles (90% tile interval)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells = table.set_index(["policy", "clicks_per_tile", "tiles", "learner"])
    for (policy, count), _ in table.groupby(["policy", "clicks_per_tile"], sort=False):
        row = [policy, str(count)]
        for tiles in ("clicked_tiles", "unseen_tiles"):
            for learner in (LIVE, FOREST, FINE_TUNE):
                key = (policy, count, tiles, learner)
                row.append(_mean_sd(cells.loc[key]) if key in cells.index else "")
        gap = by_gap.get((policy, count, "clicked_tiles", FOREST))
        row.append(records.describe_gap(gap) if gap else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _mean_sd(cell: pd.Series) -> str:
    return f"{cell['miou_mean']:.3f}" + ("" if pd.isna(cell["miou_sd"]) else f" ± {cell['miou_sd']:.3f}")


def draw_figure(record: dict[str, Any], path: Path) -> None:
    """mIoU against clicks per tile, a panel per tile set, a line per policy and learner."""
    title = (f"{record['data']}: {record['clicked_tiles']} tiles clicked, {record['unseen_tiles']} never; "
             f"{len(record['seeds'])} seed{'s' * (len(record['seeds']) != 1)}")
    figure = plot_click_curves(summarize(record["runs"]), title=title)
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.readme:
        redraw_from_record(args.out, markdown_table, draw_figure)
        return
    started = time.perf_counter()
    like = records.load(args.like)
    shared = {"like": args.like.name, "points_per_mp": args.points_per_mp,
              "clicked_tiles": args.clicked_tiles, "score_at": args.score_at,
              "fine_tune_at": args.fine_tune_at,
              "fine_tune_epochs": args.fine_tune_epochs}
    record = open_record(args.out, shared, "runs")
    for seed in args.seeds:
        for policy in args.policies:
            if any(r["seed"] == seed and r["policy"] == policy for r in record["runs"]):
                continue
            print(f"{policy}, seed {seed} ...", flush=True)
            rows = run_seed(args, like, seed, policy)
            record["runs"] += rows
            record.setdefault("classes", list(rows[0]["val_iou"]))
            for row in rows:
                if row["tiles"] == "clicked_tiles" and row["clicks_per_tile"] in (0, max(args.score_at)):
                    print(f"    {row['learner']}, {row['clicks_per_tile']} clicks: {row['val_mean_iou']:.3f}",
                          flush=True)
            record["gaps"] = gaps(record)
            unseen = next(len(r["tile_confusions"]) for r in rows if r["tiles"] == "unseen_tiles")
            save_record(args.out, record, "simulated_person", argv, started,
                        data=Path(like["spec"]["data"]).name, unseen_tiles=unseen,
                        seeds=sorted({r["seed"] for r in record["runs"]}))
    draw_figure(record, args.out.with_suffix(".png"))
    print(markdown_table(record))


if __name__ == "__main__":
    main()
