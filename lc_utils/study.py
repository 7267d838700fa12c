"""The label-density study: the same model trained at several point densities and with dense labels.

Shared by notebook 06 and ``benchmarks/label_density.py``. Every run gets the same training
images, crops, batch size, learning rate and number of optimiser steps; only the labels (and the
seed) differ. Each setting is repeated over several seeds (a seed draws the points, the starting
weights and the crops), so a difference between rows can be told from noise. Validation scores
whole images with the same tiled prediction as notebook 05.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from .classes import DEEPGLOBE, ClassSchema
from .datasets import (
    DenseLandCoverDataset,
    SparseLandCoverDataset,
    class_statistics,
    image_shapes,
    make_transforms,
)
from .files import image_id_of
from .inference import evaluate_tiled
from .losses import PartialCrossEntropyLoss, prior_correction
from .masks import read_mask
from .metrics import ConfusionMatrix
from .models import build_deeplabv3
from .settings import seed_everything
from .sparse import annotation_filename, ensure_annotations, labelled_fraction, point_counts
from .training import fit, make_loader

DENSE = "dense"
PRIOR_CORRECTED = "stratified+prior"
"""Stratified points with the loss's prior correction (:func:`lc_utils.losses.prior_correction`)."""

CACHE_MB = 2048
"""Decoded training images each run keeps in memory (a speed-up only: results are the same)."""

_ORDER = ("uniform", "stratified", PRIOR_CORRECTED, "grid", DENSE)


@dataclass(frozen=True)
class StudySettings:
    """What every run of the study shares (the seed is per run)."""

    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    crop_size: int = 256
    batch_size: int = 8
    epochs: int = 20
    lr: float = 1e-3
    schedule: str | None = "cosine"
    warmup_steps: int = 0
    num_workers: int = 0
    tile_size: int = 512
    samples_per_epoch: int | None = None
    """Crops per epoch (None: every training image once): with it, the number of steps no longer
    depends on how many training images there are (3 originals or 45 sample images alike)."""


def train_once(train_pairs, val_pairs, settings: StudySettings, seed: int = 0, annotations=None,
               logit_adjustment=None, schema: ClassSchema = DEEPGLOBE,
               progress: bool = False) -> dict[str, Any]:
    """Train one model (sparse when ``annotations`` are given, else dense) and score it on whole
    validation images: mean IoU (unknown excluded), pixel accuracy, macro F1 and IoU per class.
    ``weights_used`` says what the model started from (None: random weights, e.g. where the
    pretrained ones could not be downloaded)."""
    seed_everything(seed)
    transform = make_transforms(settings.crop_size)
    if annotations is None:
        dataset = DenseLandCoverDataset(train_pairs, schema, transform, cache_mb=CACHE_MB)
    else:
        dataset = SparseLandCoverDataset(train_pairs, annotations, schema, transform, cache_mb=CACHE_MB)
    loader = make_loader(dataset, settings.batch_size, shuffle=True, num_workers=settings.num_workers,
                         samples_per_epoch=settings.samples_per_epoch)
    model = build_deeplabv3(schema.num_classes, settings.backbone, settings.weights)
    started = time.perf_counter()
    history = fit(model, loader, epochs=settings.epochs, lr=settings.lr, schedule=settings.schedule,
                  warmup_steps=settings.warmup_steps, seed=seed, num_classes=schema.num_classes,
                  loss_fn=PartialCrossEntropyLoss(logit_adjustment=logit_adjustment), progress=progress)
    seconds = time.perf_counter() - started
    confusion = evaluate_tiled(model, val_pairs, schema, tile_size=settings.tile_size)
    summary = confusion.summary()
    per_class = confusion.per_class()["iou"]
    return {"val_mean_iou": summary["mean_iou"], "val_pixel_accuracy": summary["pixel_accuracy"],
            "val_macro_f1": summary["macro_f1"],
            "val_iou": {name: None if np.isnan(v) else float(v) for name, v in per_class.items()},
            "final_train_loss": history[-1]["train_loss"], "steps": settings.epochs * len(loader),
            "train_seconds": seconds, "weights_used": model.weights}


def majority_baseline(train_pairs: Sequence[tuple[Path, Path]],
                      val: Sequence[tuple[Path, Path]] | Dataset,
                      schema: ClassSchema = DEEPGLOBE) -> dict[str, float]:
    """Scores of predicting the training set's most frequent class everywhere: the bar to beat.

    ``val`` is a list of (image, mask) pairs, scored whole, or a dataset of (image, labels), e.g.
    the fixed validation windows (:class:`lc_utils.datasets.WindowDataset`) that training scores."""
    majority = int(class_statistics(train_pairs, schema)["pixels"].to_numpy().argmax())
    confusion = ConfusionMatrix(schema.num_classes, schema=schema)
    if isinstance(val, Dataset):
        truths = (np.asarray(val[i][1]) for i in range(len(val)))  # type: ignore[arg-type]
    else:
        truths = (read_mask(mask, schema) for _, mask in val)
    for truth in truths:
        confusion.update(np.full_like(truth, majority), truth)
    return {"class": schema.names[majority], **confusion.summary()}


def _study_key(settings: StudySettings, train_pairs, val_pairs) -> dict[str, Any]:
    return {"settings": asdict(settings), "train": [image_id_of(i) for i, _ in train_pairs],
            "val": [image_id_of(i) for i, _ in val_pairs]}


def results_filename(settings: StudySettings) -> str:
    """A results file name that keeps studies with other settings apart, e.g. ``runs_1a2b3c4d.json``."""
    digest = hashlib.sha1(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:8]
    return f"runs_{digest}.json"


def read_results_file(path: str | Path, key: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The finished runs saved in ``path`` (none if it is absent). A file made for another study
    (settings or images differ from ``key``) is an error rather than something to overwrite."""
    path = Path(path)
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    theirs = saved.get("key", {})
    if "settings" in theirs:  # a setting added since the file was made: it ran with the default
        theirs["settings"] = {**asdict(StudySettings()), **theirs["settings"]}
    if key is not None and theirs != json.loads(json.dumps(key)):
        ours = json.loads(json.dumps(key))
        changed = sorted(k for k in ours.get("settings", {})
                         if theirs.get("settings", {}).get(k) != ours["settings"][k])
        what = f"settings {', '.join(changed)}" if changed else "images"
        raise ValueError(f"{path} holds a study with other {what}; choose another results file "
                         "(e.g. study.results_filename(settings)) or delete it")
    return list(saved.get("runs", []))


def _write_results_file(path: Path, key: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Rewrite the runs of ``path`` atomically, keeping any other field the file holds."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.update(key=key, runs=runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def run_density_study(
    train_pairs: Sequence[tuple[Path, Path]],
    val_pairs: Sequence[tuple[Path, Path]],
    points_per_image: Sequence[int] = (),
    *,
    points_per_mp: Sequence[float] = (),
    strategies: Sequence[str] = ("uniform", "stratified", PRIOR_CORRECTED),
    include_dense: bool = True,
    seeds: Sequence[int] = (0,),
    settings: StudySettings = StudySettings(),
    annotation_dir: str | Path,
    results_file: str | Path | None = None,
    schema: ClassSchema = DEEPGLOBE,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per run: every (strategy, label budget) and dense labels, for every seed.

    A budget is a number of points per image (``points_per_image``) or a density in points per
    megapixel (``points_per_mp``, :func:`lc_utils.sparse.points_for_density`: the same share of
    the pixels whatever the image size). Strategies are those of
    :func:`lc_utils.sparse.sample_points`, plus :data:`PRIOR_CORRECTED`: the stratified points
    trained with the loss's logit adjustment for the true class prior (pixel shares of the
    training masks). A seed draws the points, the starting weights and the crops; the images stay
    the same. Columns: strategy, points_per_image (the mean over the images for a density),
    points_per_mp (None for a count per image), seed, labelled_fraction (of all training pixels),
    the validation scores (mean IoU with "unknown" excluded, pixel accuracy, macro F1, IoU per
    class), the final training loss, steps and seconds. Annotations are made once per setting
    under ``annotation_dir`` and reused. With ``results_file`` (JSON) each finished run is saved
    there at once and reused when the study runs again, so an interrupted study loses at most
    the run under way; a file made with other settings or images is refused
    (:func:`results_filename` names one per setting).
    """
    shapes = image_shapes(train_pairs)
    key = _study_key(settings, train_pairs, val_pairs)
    results_file = Path(results_file) if results_file is not None else None
    done = read_results_file(results_file, key) if results_file is not None else []
    true_counts = None
    budgets: list[tuple[int | None, float | None]] = ([(n, None) for n in points_per_image]
                                                      + [(None, d) for d in points_per_mp])
    plan = [(s, n, d, seed) for seed in seeds for s in strategies for n, d in budgets]
    if include_dense:
        plan += [(DENSE, None, None, seed) for seed in seeds]
    rows = []
    for strategy, n_points, density, seed in plan:
        if strategy == DENSE:
            amount = "dense labels"
        else:
            amount = f"{n_points} points per image" if density is None else f"{density:,g} points per MP"
        saved = next((r for r in done if r["strategy"] == strategy and r["seed"] == seed
                      and r.get("points_per_mp") == density
                      and (density is not None or r["points_per_image"] == n_points)), None)
        if saved is not None:
            rows.append(saved)
            if progress:
                print(f"{strategy:>16}, {amount}, seed {seed}: val mIoU {saved['val_mean_iou']:.3f} "
                      "(saved earlier)", flush=True)
            continue
        annotations, adjustment, labelled = None, None, 1.0
        if strategy != DENSE:
            sampling = "stratified" if strategy == PRIOR_CORRECTED else strategy
            path = Path(annotation_dir) / annotation_filename(sampling, n_points=n_points, seed=seed,
                                                              points_per_mp=density)
            annotations = ensure_annotations(path, train_pairs, n_points=n_points, points_per_mp=density,
                                             strategy=sampling, seed=seed, schema=schema)
            labelled = labelled_fraction(annotations, shapes)
            n_points = round(float(np.mean([len(a) for a in annotations.values()])))
        if strategy == PRIOR_CORRECTED:
            if true_counts is None:
                true_counts = class_statistics(train_pairs, schema)["pixels"].to_numpy()
            adjustment = prior_correction(point_counts(annotations, schema.num_classes), true_counts)
        if progress:
            print(f"{strategy:>16}, {amount} ({labelled:.4%} of pixels), seed {seed} ...", flush=True)
        scores = train_once(train_pairs, val_pairs, settings, seed, annotations, adjustment, schema)
        rows.append({"strategy": strategy, "points_per_image": n_points, "points_per_mp": density,
                     "seed": seed, "labelled_fraction": labelled, **scores})
        if results_file is not None:
            done.append(rows[-1])
            _write_results_file(results_file, key, done)
        if progress:
            print(f"{'':>16}  val mIoU {scores['val_mean_iou']:.3f} in {scores['train_seconds']:.0f} s",
                  flush=True)
    frame = pd.DataFrame(rows)
    frame.attrs["settings"] = asdict(settings)
    return frame


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for every (strategy, points per image), with the
    ratio of each mean to the dense-label mean (when there is a dense run).

    Columns: strategy, points_per_image, points_per_mp (NaN for budgets per image),
    labelled_fraction, runs, miou_mean, miou_sd, pixel_accuracy_mean, miou_vs_dense. The
    standard deviation is the sample one (ddof=1).
    """
    frame = results.copy()
    frame["points_per_image"] = frame["points_per_image"].astype("Int64")
    if "points_per_mp" not in frame:
        frame["points_per_mp"] = np.nan
    grouped = frame.groupby(["strategy", "points_per_image"], dropna=False, sort=False)
    summary = grouped.agg(points_per_mp=("points_per_mp", "first"),
                          labelled_fraction=("labelled_fraction", "mean"), runs=("val_mean_iou", "size"),
                          miou_mean=("val_mean_iou", "mean"), miou_sd=("val_mean_iou", "std"),
                          pixel_accuracy_mean=("val_pixel_accuracy", "mean")).reset_index()
    dense = summary.loc[summary["strategy"] == DENSE, "miou_mean"]
    summary["miou_vs_dense"] = summary["miou_mean"] / float(dense.iloc[0]) if len(dense) else np.nan
    summary["_order"] = summary["strategy"].map({s: i for i, s in enumerate(_ORDER)}).fillna(len(_ORDER))
    return (summary.sort_values(["_order", "labelled_fraction"]).drop(columns="_order")
            .reset_index(drop=True))
