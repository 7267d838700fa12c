"""The label-density study: the same model trained at several point densities and with dense labels.

Shared by notebook 06 and ``benchmarks/label_density.py``. Every configuration gets the same
training images, crops, batch size, learning rate and number of optimiser steps; only the
labels differ. Validation scores whole images with the same tiled prediction as notebook 05.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
from .masks import read_mask
from .metrics import ConfusionMatrix
from .models import build_deeplabv3
from .settings import seed_everything
from .sparse import annotation_filename, ensure_annotations, labelled_fraction
from .training import fit, make_loader

DENSE = "dense"


@dataclass(frozen=True)
class StudySettings:
    """What every run of the study shares."""

    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    crop_size: int = 256
    batch_size: int = 8
    epochs: int = 20
    lr: float = 1e-3
    seed: int = 0
    num_workers: int = 0
    tile_size: int = 512


def train_once(train_pairs, val_pairs, settings: StudySettings, annotations=None,
               schema: ClassSchema = DEEPGLOBE, progress: bool = False) -> dict[str, float]:
    """Train one model (sparse when ``annotations`` are given, else dense) and score it."""
    seed_everything(settings.seed)
    transform = make_transforms(settings.crop_size)
    if annotations is None:
        dataset = DenseLandCoverDataset(train_pairs, schema, transform)
    else:
        dataset = SparseLandCoverDataset(train_pairs, annotations, schema, transform)
    loader = make_loader(dataset, settings.batch_size, shuffle=True, num_workers=settings.num_workers)
    model = build_deeplabv3(schema.num_classes, settings.backbone, settings.weights)
    started = time.perf_counter()
    history = fit(model, loader, epochs=settings.epochs, lr=settings.lr, seed=settings.seed,
                  num_classes=schema.num_classes, progress=progress)
    seconds = time.perf_counter() - started
    summary = evaluate_tiled(model, val_pairs, schema, tile_size=settings.tile_size).summary()
    return {"val_mean_iou": summary["mean_iou"], "val_pixel_accuracy": summary["pixel_accuracy"],
            "val_macro_f1": summary["macro_f1"], "final_train_loss": history[-1]["train_loss"],
            "steps": settings.epochs * len(loader), "train_seconds": seconds}


def majority_baseline(train_pairs: Sequence[tuple[Path, Path]], val_pairs: Sequence[tuple[Path, Path]],
                      schema: ClassSchema = DEEPGLOBE) -> dict[str, float]:
    """Scores of predicting the training set's most frequent class everywhere: the bar to beat."""
    majority = int(class_statistics(train_pairs, schema)["pixels"].to_numpy().argmax())
    confusion = ConfusionMatrix(schema.num_classes, schema=schema)
    for _, mask in val_pairs:
        truth = read_mask(mask, schema)
        confusion.update(np.full_like(truth, majority), truth)
    return {"class": schema.names[majority], **confusion.summary()}


def _row_key(strategy: str, n_points: int | None, settings: StudySettings, train_pairs, val_pairs) -> dict:
    return {"strategy": strategy, "points_per_image": n_points, "settings": asdict(settings),
            "train": [image_id_of(i) for i, _ in train_pairs], "val": [image_id_of(i) for i, _ in val_pairs]}


def _row_path(results_dir: str | Path, strategy: str, n_points: int | None) -> Path:
    return Path(results_dir) / f"run_{strategy}_{n_points or 'all'}.json"


def _saved_row(results_dir, strategy, n_points, settings, train_pairs, val_pairs) -> dict | None:
    if results_dir is None or not _row_path(results_dir, strategy, n_points).is_file():
        return None
    saved = json.loads(_row_path(results_dir, strategy, n_points).read_text())
    key = _row_key(strategy, n_points, settings, train_pairs, val_pairs)
    return saved["row"] if saved["key"] == key else None


def _save_row(results_dir, row: dict, settings, train_pairs, val_pairs) -> None:
    if results_dir is None:
        return
    key = _row_key(row["strategy"], row["points_per_image"], settings, train_pairs, val_pairs)
    path = _row_path(results_dir, row["strategy"], row["points_per_image"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "row": row}, indent=1))


def run_density_study(
    train_pairs: Sequence[tuple[Path, Path]],
    val_pairs: Sequence[tuple[Path, Path]],
    points_per_image: Sequence[int],
    *,
    strategies: Sequence[str] = ("uniform", "stratified"),
    include_dense: bool = True,
    settings: StudySettings = StudySettings(),
    annotation_dir: str | Path,
    results_dir: str | Path | None = None,
    schema: ClassSchema = DEEPGLOBE,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (strategy, points per image), plus one for dense labels.

    Columns: strategy, points_per_image, labelled_fraction (of all training pixels), the
    validation scores (mean IoU with "unknown" excluded, pixel accuracy, macro F1), the final
    training loss, steps and seconds. Annotations are made once per setting under
    ``annotation_dir`` and reused on later runs. With ``results_dir`` each finished row is saved
    there and reused when the study runs again with the same settings and images, so an
    interrupted study (a Colab disconnect) loses at most the run under way.
    """
    shapes = image_shapes(train_pairs)
    runs: list[tuple[str, int | None]] = [(s, n) for s in strategies for n in points_per_image]
    if include_dense:
        runs.append((DENSE, None))
    rows = []
    for strategy, n_points in runs:
        saved = _saved_row(results_dir, strategy, n_points, settings, train_pairs, val_pairs)
        if saved is not None:
            rows.append(saved)
            if progress:
                print(f"{strategy:>10}, {n_points or 'dense'}: val mIoU {saved['val_mean_iou']:.3f} "
                      "(saved earlier)", flush=True)
            continue
        if strategy == DENSE:
            annotations, labelled = None, 1.0
        else:
            path = Path(annotation_dir) / annotation_filename(strategy, n_points=n_points, seed=settings.seed)
            annotations = ensure_annotations(path, train_pairs, n_points=n_points, strategy=strategy,
                                             seed=settings.seed, schema=schema)
            labelled = labelled_fraction(annotations, shapes)
        if progress:
            amount = "dense labels" if n_points is None else f"{n_points} points per image"
            print(f"{strategy:>10}, {amount} ({labelled:.4%} of pixels) ...", flush=True)
        scores = train_once(train_pairs, val_pairs, settings, annotations, schema)
        rows.append({"strategy": strategy, "points_per_image": n_points, "labelled_fraction": labelled,
                     **scores})
        _save_row(results_dir, rows[-1], settings, train_pairs, val_pairs)
        if progress:
            print(f"{'':>10}  val mIoU {scores['val_mean_iou']:.3f} in {scores['train_seconds']:.0f} s",
                  flush=True)
    frame = pd.DataFrame(rows)
    frame.attrs["settings"] = asdict(settings)
    return frame


def sparse_to_dense_ratio(results: pd.DataFrame) -> pd.DataFrame:
    """mIoU(sparse) / mIoU(dense) for every sparse row, beside its labelled fraction."""
    dense = results.loc[results["strategy"] == DENSE, "val_mean_iou"]
    if dense.empty:
        raise ValueError("the results have no dense run to compare with")
    sparse = results[results["strategy"] != DENSE].copy()
    sparse["miou_vs_dense"] = sparse["val_mean_iou"] / float(dense.iloc[0])
    return sparse[["strategy", "points_per_image", "labelled_fraction", "val_mean_iou", "miou_vs_dense"]]
