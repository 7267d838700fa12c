"""Choosing a training recipe for the real DeepGlobe tiles, from random weights on a CPU.

Each candidate is a set of changes to one dense-label run on the label-density study's split
(16 validation tiles, split seed 0) at the same pixel budget: crop side squared x batch x steps is
the same for every candidate, so a candidate with larger crops takes fewer steps. Every epoch is
scored on the 16 validation tiles in windows of the training crop (the curves); the end of the run
in such windows overlapping by half (:data:`VAL_OVERLAP`), on whole tiles at once, and on real
tiles the choice never looked at: the five 2448 x 2448 originals beside the tiles, shrunk to the tiles'
ground sample distance (512 x 512; they are other scenes than the tiles). Every finished run is
written at once to the JSON record (candidate, seed, spec, curves, per-class IoU on both sets,
seconds, versions, command; the weights under runs/); running the command again skips them, so it
can be stopped and resumed.

    python -m benchmarks.real_tile_recipe [--candidates baseline lr3e-4-dice ...] [--seeds 0]
    python -m benchmarks.real_tile_recipe --readme   # rewrite the README's table from the record
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

import matplotlib.pyplot as plt
import torch
from PIL import Image

from lc_utils.layouts import find_pairs
from lc_utils.run_spec import DENSE, RunSpec
from lc_utils.runs import build_run
from lc_utils.saved_files import write_text
from lc_utils.settings import PROJECT_ROOT
from lc_utils.study import score_images, train_and_score
from lc_utils.viz_data import COLUMN_WIDTH

from ._common import machine, record_text, write_readme_table
from .label_density import REAL_TILES

ORIGINALS = REAL_TILES.parent / "full_2448"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "real_tile_recipe.json"
PIXELS_PER_RUN = 1200 * 8 * 128 * 128
"""The pixel budget of every candidate: 1,200 steps of 8 crops of 128 x 128 (about 7 minutes here)."""
EPOCHS = 10

CANDIDATES: dict[str, dict[str, Any]] = {
    "baseline": {"crop": 128, "batch_size": 8},
    "balanced": {"crop": 128, "batch_size": 8, "crop_sampling": "class-balanced", "color_jitter": 0.2},
    "balanced-256": {"crop": 256, "batch_size": 4, "crop_sampling": "class-balanced", "color_jitter": 0.2},
    "lr3e-4": {"crop": 128, "batch_size": 8, "lr": 3e-4},
    "lr3e-4-dice": {"crop": 128, "batch_size": 8, "lr": 3e-4, "dice_weight": 1.0},
    "lr6e-4-dice": {"crop": 128, "batch_size": 8, "lr": 6e-4, "dice_weight": 1.0},
}
"""Changes to :func:`base_spec` per candidate; the steps follow from the crop and batch."""


VAL_OVERLAP = 0.5
"""Whole tiles are scored in windows of the training crop overlapping by half a window, as notebook
05 predicts: a model trained on 128 x 128 crops never saw the context of a whole 512 x 512 tile
(image pooling, atrous rates up to 36 at 1/16 resolution). The record keeps the whole-tile score
of every run beside it."""


def base_spec(data: Path, seed: int) -> RunSpec:
    """The label-density study's dense run before any candidate's changes."""
    return RunSpec(data=str(data), split_seed=0, val_images=16, strategy=DENSE, backbone="mobilenet_v3_large",
                   weights=None, crop=128, batch_size=8, epochs=EPOCHS, lr=2e-3, warmup_steps=30,
                   val_overlap=VAL_OVERLAP, seed=seed)


def candidate_spec(name: str, data: Path, seed: int) -> RunSpec:
    """A candidate's spec: its changes, samples per epoch that spend :data:`PIXELS_PER_RUN`, and
    validation in windows of the training crop (every one of the 16 tiles' grid, every epoch)."""
    changes = CANDIDATES[name]
    crop, batch = changes["crop"], changes["batch_size"]
    steps = PIXELS_PER_RUN // (crop * crop * batch)
    return base_spec(data, seed).replace(**changes, samples_per_epoch=steps * batch // EPOCHS,
                                         val_window=crop, val_windows=16 * (512 // crop) ** 2)


def shrunk_copy(source: Path, dest: Path, size: int = 512) -> Path:
    """``source``'s (image, mask) pairs resized to ``size`` x ``size`` in ``dest`` (images with a
    Lanczos filter, masks by nearest neighbour so that every pixel keeps a colour of the mask);
    made once."""
    if (dest / ".complete").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for image, mask in find_pairs(source):
        shrunk = Image.open(image).convert("RGB").resize((size, size), Image.LANCZOS)
        shrunk.save(dest / image.name, quality=95)
        Image.open(mask).convert("RGB").resize((size, size), Image.NEAREST).save(dest / mask.name)
    (dest / ".complete").touch()
    return dest


def markdown_table(record: dict[str, Any]) -> str:
    """The README's table: every run's changes, scores and classes learned."""
    lines = ["| candidate | changes to the first recipe | val mIoU | classes >= 0.15 | whole tiles | "
             "unseen originals | minutes |", "|---|---|---|---|---|---|---|"]
    first = CANDIDATES["baseline"]
    for run in record["runs"]:
        changes = {k: v for k, v in CANDIDATES[run["candidate"]].items() if first.get(k) != v}
        learned = [name for name, iou in run["val_iou"].items() if iou is not None and iou >= 0.15]
        described = ", ".join(f"{k} {v}" for k, v in changes.items()) or "-"
        lines.append(f"| {run['candidate']} (seed {run['seed']}) | {described} | {run['val_mean_iou']:.3f} | "
                     f"{len(learned)}: {', '.join(learned)} | {run['whole_tile_val_mean_iou']:.3f} | "
                     f"{run['unseen_mean_iou']:.3f} | {run['minutes']:.1f} |")
    return "\n".join(lines)


def plot_curves(runs: list[dict[str, Any]], path: Path) -> None:
    """Validation mIoU per epoch of every run, one colour per candidate."""
    figure, axis = plt.subplots(figsize=(COLUMN_WIDTH, 3.6), layout="constrained")
    colours = dict(zip(CANDIDATES, plt.get_cmap("tab10").colors))
    for run in runs:
        steps = [(epoch + 1) * run["steps"] / len(run["history"]) for epoch in range(len(run["history"]))]
        label = f"{run['candidate']} (seed {run['seed']})"
        axis.plot(steps, [h["val_mean_iou"] for h in run["history"]], color=colours.get(run["candidate"]),
                  label=label, alpha=0.9)
    axis.set(xlabel="optimiser step", ylabel="val mIoU (16 tiles, crop windows)",
             title="Dense labels from random weights, the same pixels per run")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_TILES)
    parser.add_argument("--originals", type=Path, default=ORIGINALS,
                        help="large originals to shrink to the tiles' scale and score on")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--readme", action="store_true", help="only rewrite the README's table from --out")
    args = parser.parse_args(argv)
    if args.readme:
        write_readme_table(markdown_table(json.loads(args.out.read_text())), args.out.stem)
        return
    unseen = find_pairs(shrunk_copy(args.originals, PROJECT_ROOT / "runs" / "unseen_originals_512"))
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    for name in args.candidates:
        for seed in args.seeds:
            spec = candidate_spec(name, args.data, seed)
            if any(r["spec"] == json.loads(json.dumps(spec.to_dict())) for r in record["runs"]):
                continue
            print(f"{name}, seed {seed}: {spec.crop}² x {spec.batch_size} ...", flush=True)
            started = time.perf_counter()
            run = build_run(spec)
            scores = train_and_score(run)
            unseen_scores = score_images(run.model, unseen, run.schema, spec.val_window, spec.val_overlap)
            whole_tiles = score_images(run.model, run.split["val"], run.schema, 512)
            weights = PROJECT_ROOT / "runs" / "real_tile_recipe" / f"{name}_seed{seed}.pt"
            weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": run.model.state_dict(), "spec": spec.to_dict()}, weights)
            record["runs"].append({"candidate": name, "seed": seed, "spec": spec.to_dict(), **scores,
                                   **{f"unseen_{k}": v for k, v in unseen_scores.items()},
                                   **{f"whole_tile_val_{k}": v for k, v in whole_tiles.items()},
                                   "minutes": (time.perf_counter() - started) / 60})
            record.update({"benchmark": "real_tile_recipe", "date": datetime.date.today().isoformat(),
                           "command": shlex.join(["python", "-m", "benchmarks.real_tile_recipe",
                                                  *(argv or sys.argv[1:])]),
                           "machine": machine(), "pixels_per_run": PIXELS_PER_RUN,
                           "unseen": [image.name for image, _ in unseen]})
            write_text(args.out, record_text(record))
            iou = {k: round(v, 2) for k, v in scores["val_iou"].items() if v is not None}
            print(f"  val mIoU {scores['val_mean_iou']:.3f} {iou}; unseen {unseen_scores['mean_iou']:.3f} "
                  f"({record['runs'][-1]['minutes']:.1f} min)", flush=True)
    plot_curves(record["runs"], args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
