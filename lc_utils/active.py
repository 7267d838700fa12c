"""Label where it matters: rounds of train, pick, label, train (notebook 09, ``make active``).

The picks themselves (uncertainty, the spacing rule, the selections: margin, entropy, PixelPick's
random picks among the most uncertain, class-balanced picks, and random picks under the same rules)
live in :mod:`lc_utils.active_picks`; what notebook 09 calls of them is imported here too
(``next_picks``, ``predict_uncertainty``, ``describe_picks``). This module runs them in rounds with
the masks answering for a person, each round fine-tuning the last model or training the spec's
fresh one again, and compares each selection with random picks on the same seed, with a paired
interval over the validation tiles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from . import tile_bootstrap
from .active_picks import (
    SELECTIONS,
    TOP_SHARE,
    answer_picks,
    describe_picks,
    measure_of,
    next_picks,
    predict_uncertainty,
)
from .classes import IGNORE_INDEX, ClassSchema
from .files import as_pairs, image_shapes, read_rgb
from .inference import predict_tiled
from .masks import read_mask
from .metrics import ConfusionMatrix
from .models import load_trained_model
from .point_files import load_annotations, read_annotation_info, save_annotations
from .run_data import load_data
from .run_spec import RunSpec
from .runs import Run, build_run
from .saved_files import refuse_other_settings
from .sparse import PointAnnotation, annotatable
from .study import confusion_scores

__all__ = ["SELECTIONS", "answer_maps", "describe_picks", "describe_rounds", "gaps_to_random", "next_picks",
           "predict_uncertainty", "round_files", "run_active_rounds", "summarize_rounds", "weights_digest"]

# a round file from before ``retrain`` was recorded was made by fine-tuning
_BEFORE_RETRAIN = MappingProxyType({"retrain": False})


def round_files(work_dir: str | Path, selection: str, seed: int, round_number: int, *,
                start: Run | None = None) -> tuple[Path, Path]:
    """Where :func:`run_active_rounds` keeps a round's points (a CSV annotation file) and its run
    (checkpoints ``last.pt`` and ``best.pt``). Round 0 does not depend on the selection: every
    selection shares its points and model. Rounds from a ``start`` run live in a sub-folder named
    after its weights and points, so that a start trained again starts its rounds again rather
    than resuming those of the old one."""
    name = f"seed{seed}" if round_number == 0 else f"{selection}_seed{seed}"
    work_dir = _rounds_folder(work_dir, start)
    return work_dir / f"{name}_round{round_number}.csv", work_dir / name / f"round{round_number}"


def _rounds_folder(work_dir: str | Path, start: Run | None) -> Path:
    """The folder of the rounds from ``start`` (``work_dir`` itself without one)."""
    return Path(work_dir) if start is None else Path(work_dir) / f"start-{_fingerprint(start)}"


def answer_maps(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema) -> dict[str, np.ndarray]:
    """The class maps that answer for a person, by image id: each mask's classes as points are
    labelled from them (no data: the ignore index, never picked)."""
    return {pair.image_id: annotatable(read_mask(pair.mask, schema), schema) for pair in as_pairs(pairs)}


def weights_digest(model: nn.Module) -> str:
    """A short digest of a model's weights (and batch-norm statistics): equal for equal weights."""
    return _weights_hash(model).hexdigest()[:12]


def _weights_hash(model: nn.Module) -> hashlib._Hash:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest


def _fingerprint(run: Run) -> str:
    """A short digest of a run's trained weights and points: equal for the same run loaded twice."""
    digest = _weights_hash(run.model)
    for image_id, points in sorted((run.annotations or {}).items()):
        digest.update(image_id.encode())
        for values in (points.rows, points.cols, points.labels):
            digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:12]


def run_active_rounds(spec: RunSpec, budgets: Sequence[int], selection: str = "margin", *,
                      work_dir: str | Path, start: Run | None = None, min_distance: float = 8.0,
                      fine_tune_epochs: int | None = None, retrain: bool = False,
                      top_share: float = TOP_SHARE, runs_dir: str | Path | None = None,
                      progress: bool = False) -> pd.DataFrame:
    """Active labelling simulated on data with masks, the masks answering for a person: rounds of
    train, pick, label, train.

    Round 0 labels ``budgets[0]`` uniform points per training image, drawn for ``spec.seed`` and
    the same whatever the selection. Each later round adds ``budgets[r] - budgets[r - 1]`` points
    per image, picked by ``selection`` (:data:`~lc_utils.active_picks.SELECTIONS`, PixelPick's
    from the ``top_share`` most uncertain pixels) from the last round's model, with
    :func:`~lc_utils.active_picks.select_points`' spacing, labelled from the masks, recorded with
    their round in ``work_dir`` (:func:`round_files`; round 0's points and model, the same for
    every selection, are made once). Round 0 trains ``spec`` as it is; each later round
    fine-tunes the previous round's model on all its points for ``fine_tune_epochs`` (default
    ``spec.epochs``), the warm-up and schedule started again, or with ``retrain`` trains the
    spec's fresh model (its own starting weights, seeded by its seed) for ``spec.epochs`` on all
    its points. After each round the model is scored on the validation images, whole, one
    confusion matrix per image kept. Every round's points and checkpoints are kept, so a stopped
    study resumes; a resume with other settings (another ``retrain`` among them) is refused.

    ``start``: a trained run on the same data and split (notebook 04's, from
    :func:`lc_utils.runs.load_run`) whose points and model are round 0, not trained again. Its
    points are not counted in ``budgets``, which then starts at 0: ``[0, 5, 10]`` adds 5 points
    per image in each of two rounds.

    Returns a row per round: selection, seed, round, retrain, points_per_image (with ``start``:
    the mean over the images), labelled_fraction, steps (round 0 from ``start``: its whole
    training), start_weights (:func:`weights_digest` of the weights the round's training started
    from; None for a start, not trained again), the scores of
    :func:`lc_utils.study.score_images` (``val_mean_iou``, ...), tile_confusions (validation image
    id -> its confusion matrix, :func:`lc_utils.tile_bootstrap.score_tiles`), train_seconds."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    first = 0 if start is not None else 1
    if not budgets or any(b <= a for a, b in zip(budgets, budgets[1:])) or budgets[0] < first:
        raise ValueError(f"budgets must be points per image that grow round by round, got {list(budgets)}")
    if start is not None and budgets[0] != 0:
        raise ValueError(f"with a start, budgets count the points added to its own from 0, got "
                         f"{list(budgets)}")
    if retrain and fine_tune_epochs is not None:
        raise ValueError("with retrain every round trains the spec's epochs from its fresh model; "
                         "fine_tune_epochs is for fine-tuning")
    data = load_data(spec)
    schema, train = data.schema, as_pairs(data.split["train"])
    if start is not None and [p for p, _ in start.split["train"]] != [p for p, _ in train]:
        raise ValueError(f"the start run ({start.spec.data}) trained on other images than {spec.data}'s "
                         "training split: give the spec it was trained with")
    truths = answer_maps(train, schema)
    rounds_folder = _rounds_folder(work_dir, start)  # the start's digest, taken once
    picking = {"min_distance": min_distance, "top_share": top_share}
    annotations: dict[str, PointAnnotation] = {}
    model: nn.Module | None = None
    rows = []
    for round_number, budget in enumerate(budgets):
        path, run_dir = round_files(rounds_folder, selection, spec.seed, round_number)
        info = {"round": round_number, "budget": budget,
                **({"selection": selection, "min_distance": min_distance, "retrain": retrain,
                    **({"top_share": top_share} if selection == "pixelpick" else {})}
                   if round_number else {})}
        if path.is_file():  # a resumed study: the round's points as they were picked
            saved = {**_BEFORE_RETRAIN, **read_annotation_info(path)}
            # any other key the file lacks (from before it was recorded) is taken as the same
            refuse_other_settings(path, {k: saved.get(k, v) for k, v in info.items()}, info,
                                  what="holds a round's points picked",
                                  fix="choose another work_dir or delete the old rounds")
            annotations = load_annotations(path, schema, image_shapes(train))
        else:
            if start is not None and round_number == 0:
                annotations = {pair.image_id: _from_round(start.annotations[pair.image_id], 0)
                               for pair in train}
            else:
                last_budget = budgets[round_number - 1] if round_number else 0
                annotations = _next_points(annotations, truths, train, last_budget, budget, round_number,
                                           selection, model, spec, **picking)
            save_annotations(annotations, path, schema, info=info)
        started = time.perf_counter()
        start_weights = None
        if start is not None and round_number == 0:
            run, model = start, start.model
        else:
            afresh = model is None or retrain
            epochs = spec.epochs if afresh or fine_tune_epochs is None else fine_tune_epochs
            round_spec = spec.replace(annotations=str(path), epochs=epochs)
            if not afresh:  # the last round's weights replace the starting ones: no download
                round_spec = round_spec.replace(weights=None)
            run = build_run(round_spec, runs_dir=runs_dir)
            if not afresh:
                run.model.load_state_dict(model.state_dict())
            start_weights = weights_digest(run.model)
            run.train(run_dir, progress=progress)
            model = run.model
        train_seconds = time.perf_counter() - started
        tiles = tile_bootstrap.score_tiles(model, data.split["val"], schema, tile_size=spec.val_window,
                                           overlap=spec.val_overlap)
        scores = confusion_scores(ConfusionMatrix.from_counts(_summed(tiles, schema.num_classes),
                                                              schema=schema))
        rows.append({"selection": selection, "seed": spec.seed, "round": round_number, "retrain": retrain,
                     "points_per_image": budget if start is None else
                     float(np.mean([len(a) for a in annotations.values()])),
                     "labelled_fraction": run.labelled_fraction, "steps": run.steps,
                     "start_weights": start_weights, **{f"val_{k}": v for k, v in scores.items()},
                     "tile_confusions": tiles, "train_seconds": train_seconds})
    return pd.DataFrame(rows)


def _summed(tiles: Mapping[str, Sequence[Sequence[int]]], num_classes: int) -> np.ndarray:
    """The confusion matrix of every tile together."""
    return sum((np.asarray(counts, dtype=np.int64) for counts in tiles.values()),
               np.zeros((num_classes, num_classes), np.int64))


def _from_round(points: PointAnnotation, round_number: int) -> PointAnnotation:
    """``points`` recorded as added in ``round_number`` (their sources kept)."""
    return dataclasses.replace(points, rounds=np.full(len(points), round_number, dtype=np.int64))


def _next_points(annotations: dict[str, PointAnnotation], truths: dict[str, np.ndarray],
                 train: Sequence[tuple[Path, Path]], last_budget: int, budget: int, round_number: int,
                 selection: str, model: nn.Module | None, spec: RunSpec, *, min_distance: float,
                 top_share: float) -> dict[str, PointAnnotation]:
    """Every training image's points after one more round: the first ``budget`` points (round 0:
    uniform, random picks with no spacing), or ``budget - last_budget`` more, picked by
    ``selection`` (:func:`~lc_utils.active_picks.next_picks`) and labelled from ``truths``."""
    grown = {}
    # round 0 has no model to ask: uniform points, unspaced, as a sampler would draw them
    chosen, spacing = (selection, min_distance) if round_number else ("random", 0.0)
    measure = measure_of(chosen)
    for pair in as_pairs(train):
        image_id = pair.image_id
        truth = truths[image_id]
        predicted = unsure = None
        if measure is not None:
            predicted, unsure = predict_uncertainty(model, read_rgb(pair.image, what="image"), measure,
                                                    tile_size=spec.val_window, overlap=spec.val_overlap)
        picks = next_picks(chosen, budget - last_budget, image_id=image_id, valid=truth != IGNORE_INDEX,
                           seed=spec.seed, round_number=round_number, uncertainty=unsure,
                           predicted=predicted, labelled=annotations.get(image_id), min_distance=spacing,
                           top_share=top_share)
        new = answer_picks(picks, truth, round_number)
        grown[image_id] = new if round_number == 0 else annotations[image_id].extend(new)
    return grown


def describe_rounds(spec: RunSpec, budgets: Sequence[int], selection: str, *, work_dir: str | Path,
                    start: Run | None = None, edge_distance: int = 2) -> pd.DataFrame:
    """:func:`describe_picks` for every later round that :func:`run_active_rounds` kept in
    ``work_dir``: the round's new points, against the model that picked them (the last round's)."""
    data = load_data(spec)
    schema, train = data.schema, as_pairs(data.split["train"])
    truths = answer_maps(train, schema)
    rounds_folder = _rounds_folder(work_dir, start)
    rows = []
    for round_number in range(1, len(budgets)):
        points = load_annotations(round_files(rounds_folder, selection, spec.seed, round_number)[0],
                                  schema, image_shapes(train))
        last_run = round_files(rounds_folder, selection, spec.seed, round_number - 1)[1]
        model = start.model if start is not None and round_number == 1 else load_trained_model(
            last_run / "last.pt")
        predictions = {pair.image_id: predict_tiled(model, read_rgb(pair.image, what="image"),
                                                    tile_size=spec.val_window, overlap=spec.val_overlap)
                       for pair in train}
        picks = {image_id: (p.rows[p.rounds == round_number], p.cols[p.rounds == round_number])
                 for image_id, p in points.items()}
        described = describe_picks(picks, truths, predictions, schema, edge_distance=edge_distance)
        rows.append({"selection": selection, "seed": spec.seed, "round": round_number,
                     "points_per_image": budgets[round_number], **described})
    return pd.DataFrame(rows)


def summarize_rounds(rounds: pd.DataFrame) -> pd.DataFrame:
    """Validation mIoU per selection and round of :func:`run_active_rounds`' rows (several seeds):
    mean, sd and runs, the optimiser steps behind the round's model (``model_steps``: the rounds so
    far added up when each fine-tunes the last, the round's own when it retrains from the initial
    weights), and each selection's gap to random picks on the same seed and round
    (``gap_to_random_mean``, ``gap_to_random_sd``, ``seeds_above_random``) where random ran."""
    rounds = rounds.copy()
    steps = {}
    if "steps" in rounds:
        retrained = rounds["retrain"].fillna(False).astype(bool) if "retrain" in rounds else False
        so_far = rounds.sort_values("round").groupby(["selection", "seed"])["steps"].cumsum()
        rounds["model_steps"] = np.where(retrained, rounds["steps"], so_far.reindex(rounds.index))
        steps = {"model_steps": ("model_steps", "mean")}
    summary = (rounds.groupby(["selection", "round", "points_per_image"], sort=False)
               .agg(miou_mean=("val_mean_iou", "mean"), miou_sd=("val_mean_iou", "std"),
                    runs=("val_mean_iou", "size"), **steps).reset_index())
    if "random" in set(rounds["selection"]):
        table = rounds.pivot_table(index=["seed", "round"], columns="selection", values="val_mean_iou")
        gaps = (table.sub(table["random"], axis=0).reset_index()
                .melt(id_vars=["seed", "round"], var_name="selection", value_name="gap"))
        per_round = gaps.groupby(["selection", "round"])["gap"].agg(
            gap_to_random_mean="mean", gap_to_random_sd="std",
            seeds_above_random=lambda g: int((g > 0).sum()))
        summary = summary.merge(per_round.reset_index(), on=["selection", "round"], how="left")
    return summary


def gaps_to_random(rounds: pd.DataFrame | Sequence[Mapping[str, Any]], schema: ClassSchema, *,
                   confidence: float = 0.9, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Per selection and round of :func:`run_active_rounds`' rows, its validation mIoU (the
    schema's unknown class left out) minus random picks' on the same seed, with a ``confidence``
    paired interval over the validation tiles: per seed (:func:`lc_utils.tile_bootstrap.paired_gap`)
    and over the seeds where both ran (:func:`lc_utils.tile_bootstrap.pooled_gap`). Rows without
    their tiles' confusion matrices (records from before they were kept) are left out.

    Each item: selection, round, points_per_image, seeds, the pooled gap, low, high, confidence,
    measurable, n_tiles, and per_seed (seed, gap, low, high, measurable)."""
    records = rounds.to_dict("records") if isinstance(rounds, pd.DataFrame) else list(rounds)
    tiles = {(r["selection"], r["seed"], r["round"]): r for r in records
             if isinstance(r.get("tile_confusions"), Mapping)}
    keep = np.isin(np.arange(schema.num_classes), schema.known_indices())
    gaps = []
    for selection, round_number in dict.fromkeys((s, r) for s, _, r in tiles if s != "random"):
        seeds = sorted(int(seed) for s, seed, r in tiles if (s, r) == (selection, round_number)
                       and ("random", seed, r) in tiles)
        if not seeds:
            continue
        pairs = [(tiles[selection, seed, round_number]["tile_confusions"],
                  tiles["random", seed, round_number]["tile_confusions"]) for seed in seeds]
        gaps.append({"selection": selection, "round": round_number,
                     "points_per_image": tiles[selection, seeds[0], round_number]["points_per_image"],
                     **tile_bootstrap.seed_gaps(seeds, pairs, keep, confidence=confidence, n_boot=n_boot)})
    return gaps
