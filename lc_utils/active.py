"""Label where it matters: the model suggests which pixels to label next (notebook 09).

A trained model's uncertainty at every pixel (margin or entropy of its softmax) ranks the
unlabelled pixels; the next ``k`` points of an image are the most uncertain ones that keep a
distance from each other and from the points already there, so that a round of suggestions
spreads over the image instead of piling onto one blurry edge (PixelPick, Shin et al. 2021, picks
per pixel; the spacing is what a person clicking them needs). Random picks under the same rules
are the baseline every active round is compared with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
from skimage import morphology
from torch import nn

from .classes import IGNORE_INDEX, ClassSchema
from .files import as_pairs, image_shapes, read_rgb
from .inference import predict_tiled
from .masks import read_mask
from .models import load_trained_model
from .point_files import load_annotations, read_annotation_info, save_annotations
from .point_sources import SIMULATED
from .run_data import load_data
from .run_spec import RunSpec
from .runs import Run, build_run
from .saved_files import refuse_other_settings
from .sparse import PointAnnotation, annotatable, image_seed
from .study import score_images
from .windows import DEFAULT_OVERLAP

Measure = Literal["margin", "entropy"]
MEASURES: tuple[str, ...] = get_args(Measure)


def uncertainty(probs: np.ndarray, measure: Measure = "margin") -> np.ndarray:
    """How unsure a model is at every pixel of its (C, H, W) softmax probabilities, from 0 (sure)
    to 1: ``"margin"`` is one minus the gap between the two most likely classes, ``"entropy"``
    the entropy over the classes divided by its largest possible value."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"expected (C, H, W) probabilities of two classes or more, got shape {probs.shape}")
    if measure == "margin":
        top_two = np.sort(probs, axis=0)[-2:]
        return (1.0 - (top_two[1] - top_two[0])).astype(np.float32)
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(probs > 0, probs * np.log(probs), 0.0)
        return (-terms.sum(axis=0) / np.log(probs.shape[0])).astype(np.float32)
    raise ValueError(f"measure must be one of {list(MEASURES)}, got {measure!r}")


def predict_uncertainty(model: nn.Module, image: np.ndarray, measure: Measure = "margin", *,
                        tile_size: int = 512, overlap: float = DEFAULT_OVERLAP
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A model's (H, W) class map of ``image`` and its :func:`uncertainty` at every pixel."""
    predicted, probs = predict_tiled(model, image, tile_size=tile_size, overlap=overlap, return_probs=True)
    return predicted, uncertainty(probs, measure)


def select_points(scores: np.ndarray, k: int, *, labelled: PointAnnotation | None = None,
                  valid: np.ndarray | None = None, min_distance: float = 8.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` pixels with the highest ``scores`` (an (H, W) map: uncertainty, or random numbers
    for the baseline) such that no two picks, and no pick and labelled point, are closer than
    ``min_distance`` pixels; never a labelled pixel, never outside ``valid`` (e.g. no data).
    Returns (rows, cols), best first. Raises ``ValueError`` when the image has no room for ``k``
    such picks."""
    height, width = scores.shape
    allowed = np.ones((height, width), bool) if valid is None else valid.astype(bool).copy()
    if allowed.shape != scores.shape:
        raise ValueError(f"valid mask {allowed.shape} and scores {scores.shape} differ in size")
    candidates = np.flatnonzero(allowed.ravel())
    order = candidates[np.argsort(-scores.ravel()[candidates], kind="stable")]
    # a pick rules out the disc around it: one look-up per candidate, however many are passed over
    blocked = np.zeros((height, width), bool)
    reach = int(np.ceil(min_distance)) - 1
    offsets = [(dr, dc) for dr in range(-reach, reach + 1) for dc in range(-reach, reach + 1)
               if dr * dr + dc * dc < min_distance ** 2]
    disc_rows, disc_cols = (np.array([o[axis] for o in offsets], dtype=np.int64) for axis in (0, 1))

    def block(row: int, col: int) -> None:
        rows, cols = disc_rows + row, disc_cols + col
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        blocked[rows[inside], cols[inside]] = True
        blocked[row, col] = True

    if labelled is not None and len(labelled):
        labelled.check_bounds((height, width), "labelled points")
        for row, col in zip(labelled.rows.tolist(), labelled.cols.tolist()):
            block(row, col)
    picks: list[tuple[int, int]] = []
    for index in order.tolist():
        row, col = divmod(index, width)
        if blocked[row, col]:
            continue
        picks.append((row, col))
        if len(picks) == k:
            break
        block(row, col)
    if len(picks) < k:
        raise ValueError(f"only {len(picks)} of {k} picks fit {min_distance:g} pixels apart on this "
                         f"{width}x{height} image; lower min_distance or k")
    return (np.array([r for r, _ in picks], dtype=np.int64), np.array([c for _, c in picks], dtype=np.int64))


def random_scores(shape: Sequence[int], seed: int | Sequence[int]) -> np.ndarray:
    """Random scores for :func:`select_points`: the random baseline under the same rules."""
    return np.random.default_rng(seed).random(tuple(shape)).astype(np.float32)


SELECTIONS: tuple[str, ...] = (*MEASURES, "random")
"""How a round picks its points: a model's uncertainty, or random pixels under the same rules."""


def next_picks(selection: str, k: int, *, image_id: str, valid: np.ndarray, seed: int, round_number: int,
               uncertainty: np.ndarray | None = None, labelled: PointAnnotation | None = None,
               min_distance: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` points that round ``round_number`` of :func:`run_active_rounds` (seed ``seed``)
    adds to one image for ``selection`` (:data:`SELECTIONS`): the most uncertain pixels of
    ``uncertainty`` (the image's :func:`uncertainty` map under that measure), or random pixels,
    seeded by the seed, the round and ``image_id``; spaced and kept off ``labelled`` points and
    off pixels outside ``valid`` (an (H, W) mask: no data) as :func:`select_points` does.
    Returns (rows, cols), best first."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    if selection == "random":
        # a round of its own for every round: the picks of round 2 are not those of round 1 again
        scores = random_scores(valid.shape, image_seed(seed + 1000 * round_number, image_id))
    elif uncertainty is None:
        raise ValueError(f"{selection} picks need the image's uncertainty map")
    else:
        scores = uncertainty
    return select_points(scores, k, labelled=labelled, valid=valid, min_distance=min_distance)


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


def _fingerprint(run: Run) -> str:
    """A short digest of a run's trained weights and points: equal for the same run loaded twice."""
    digest = hashlib.sha1()
    for name, tensor in sorted(run.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for image_id, points in sorted((run.annotations or {}).items()):
        digest.update(image_id.encode())
        for values in (points.rows, points.cols, points.labels):
            digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:12]


def run_active_rounds(spec: RunSpec, budgets: Sequence[int], selection: str = "margin", *,
                      work_dir: str | Path, start: Run | None = None, min_distance: float = 8.0,
                      fine_tune_epochs: int | None = None, runs_dir: str | Path | None = None,
                      progress: bool = False) -> pd.DataFrame:
    """Active labelling simulated on data with masks, the masks answering for a person: rounds of
    train, pick, label, train.

    Round 0 labels ``budgets[0]`` uniform points per training image, drawn for ``spec.seed`` and
    the same whatever the selection. Each later round adds ``budgets[r] - budgets[r - 1]`` points
    per image, picked by ``selection`` (:data:`SELECTIONS`: the last round's model's uncertainty,
    or random pixels) with :func:`select_points`' spacing, labelled from the masks, recorded with
    their round in ``work_dir`` (:func:`round_files`; round 0's points and model, the same for
    every selection, are made once). Round 0 trains
    ``spec`` as it is; each later round fine-tunes the previous round's model on all its points for
    ``fine_tune_epochs`` (default ``spec.epochs``), the warm-up and schedule started again. After
    each round the model is scored on the validation images, whole. Every round's points and
    checkpoints are kept, so a stopped study resumes.

    ``start``: a trained run on the same data and split (notebook 04's, from
    :func:`lc_utils.runs.load_run`) whose points and model are round 0, not trained again. Its
    points are not counted in ``budgets``, which then starts at 0: ``[0, 5, 10]`` adds 5 points
    per image in each of two rounds.

    Returns a row per round: round, points_per_image (with ``start``: the mean over the images),
    labelled_fraction, steps (round 0 from ``start``: its whole training), the scores of
    :func:`lc_utils.study.score_images` (``val_mean_iou``, ...), train_seconds."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    first = 0 if start is not None else 1
    if not budgets or any(b <= a for a, b in zip(budgets, budgets[1:])) or budgets[0] < first:
        raise ValueError(f"budgets must be points per image that grow round by round, got {list(budgets)}")
    if start is not None and budgets[0] != 0:
        raise ValueError(f"with a start, budgets count the points added to its own from 0, got "
                         f"{list(budgets)}")
    data = load_data(spec)
    schema, train = data.schema, as_pairs(data.split["train"])
    if start is not None and [p for p, _ in start.split["train"]] != [p for p, _ in train]:
        raise ValueError(f"the start run ({start.spec.data}) trained on other images than {spec.data}'s "
                         "training split: give the spec it was trained with")
    truths = answer_maps(train, schema)
    rounds_folder = _rounds_folder(work_dir, start)  # the start's digest, taken once
    annotations: dict[str, PointAnnotation] = {}
    model: nn.Module | None = None
    rows = []
    for round_number, budget in enumerate(budgets):
        path, run_dir = round_files(rounds_folder, selection, spec.seed, round_number)
        info = {"round": round_number, "budget": budget,
                **({"selection": selection, "min_distance": min_distance} if round_number else {})}
        if path.is_file():  # a resumed study: the round's points as they were picked
            saved = read_annotation_info(path)
            # a key the file lacks (from before it was recorded) is taken as the same
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
                                           selection, model, spec, min_distance)
            save_annotations(annotations, path, schema, info=info)
        started = time.perf_counter()
        if start is not None and round_number == 0:
            run, model = start, start.model
        else:
            epochs = spec.epochs if round_number == 0 or fine_tune_epochs is None else fine_tune_epochs
            round_spec = spec.replace(annotations=str(path), epochs=epochs)
            if model is not None:  # the last round's weights replace the starting ones: no download
                round_spec = round_spec.replace(weights=None)
            run = build_run(round_spec, runs_dir=runs_dir)
            if model is not None:
                run.model.load_state_dict(model.state_dict())
            run.train(run_dir, progress=progress)
            model = run.model
        train_seconds = time.perf_counter() - started
        scores = score_images(model, data.split["val"], schema, spec.val_window, spec.val_overlap)
        rows.append({"selection": selection, "seed": spec.seed, "round": round_number,
                     "points_per_image": budget if start is None else
                     float(np.mean([len(a) for a in annotations.values()])),
                     "labelled_fraction": run.labelled_fraction,
                     "steps": run.steps, **{f"val_{k}": v for k, v in scores.items()},
                     "train_seconds": train_seconds})
    return pd.DataFrame(rows)


def _from_round(points: PointAnnotation, round_number: int) -> PointAnnotation:
    """``points`` recorded as added in ``round_number`` (their sources kept)."""
    return dataclasses.replace(points, rounds=np.full(len(points), round_number, dtype=np.int64))


def _next_points(annotations: dict[str, PointAnnotation], truths: dict[str, np.ndarray],
                 train: Sequence[tuple[Path, Path]], last_budget: int, budget: int, round_number: int,
                 selection: str, model: nn.Module | None, spec: RunSpec, min_distance: float
                 ) -> dict[str, PointAnnotation]:
    """Every training image's points after one more round: the first ``budget`` points (round 0:
    uniform, random picks with no spacing), or ``budget - last_budget`` more, picked by
    ``selection`` (:func:`next_picks`) and labelled from ``truths``."""
    grown = {}
    for pair in as_pairs(train):
        image, image_id = pair.image, pair.image_id
        truth = truths[image_id]
        # round 0 has no model to ask: uniform points, unspaced, as a sampler would draw them
        chosen, spacing = (selection, min_distance) if round_number else ("random", 0.0)
        unsure = None
        if chosen != "random":
            unsure = predict_uncertainty(model, read_rgb(image, what="image"), chosen,
                                         tile_size=spec.val_window, overlap=spec.val_overlap)[1]
        picks = next_picks(chosen, budget - last_budget, image_id=image_id, valid=truth != IGNORE_INDEX,
                           seed=spec.seed, round_number=round_number, uncertainty=unsure,
                           labelled=annotations.get(image_id), min_distance=spacing)
        new = answer_picks(picks, truth, round_number)
        grown[image_id] = new if round_number == 0 else annotations[image_id].extend(new)
    return grown


def answer_picks(picks: tuple[np.ndarray, np.ndarray], truth: np.ndarray, round_number: int = 0
                 ) -> PointAnnotation:
    """Picked pixels (rows, cols) labelled from a class map, the mask answering for a person:
    simulated clicks recorded as added in ``round_number``."""
    rows, cols = picks
    return PointAnnotation(rows, cols, truth[rows, cols], sources=[SIMULATED] * len(rows),
                           rounds=[round_number] * len(rows))


PICK_COLUMNS: tuple[str, ...] = ("points", "model_wrong", "near_edge")
"""What :func:`describe_picks` reports before the class shares."""


def describe_picks(picks: Mapping[str, tuple[np.ndarray, np.ndarray]], truths: Mapping[str, np.ndarray],
                   predictions: Mapping[str, np.ndarray], schema: ClassSchema, *, edge_distance: int = 2
                   ) -> pd.Series:
    """What a set of picks asks about, the class maps ``truths`` answering (by image id): how many
    (``points``), the share where the ``predictions`` are wrong (``model_wrong``: a point where the
    model is right teaches it little), the share within ``edge_distance`` pixels of a class edge of
    the truth (``near_edge``: where a person's click is least certain too), and the share on each
    class (unknown left out: it is never picked)."""
    labels, wrong, near = [], [], []
    square = np.ones((2 * edge_distance + 1,) * 2, bool)
    for image_id, (rows, cols) in picks.items():
        truth = truths[image_id]
        edges = morphology.dilation(truth, square) != morphology.erosion(truth, square)
        labels.append(truth[rows, cols])
        wrong.append(predictions[image_id][rows, cols] != truth[rows, cols])
        near.append(edges[rows, cols])
    flat = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    shares = np.bincount(flat.astype(np.int64), minlength=schema.num_classes)[:schema.num_classes]
    named = {name: share for name, share in zip(schema.names, shares / max(len(flat), 1))
             if name != schema.names[schema.unknown_index]}
    return pd.Series({"points": len(flat), "model_wrong": _share(wrong), "near_edge": _share(near), **named})


def _share(flags: Sequence[np.ndarray]) -> float:
    """The share of True over several arrays of flags (NaN for none)."""
    flat = np.concatenate(flags) if flags else np.zeros(0, bool)
    return float(flat.mean()) if flat.size else float("nan")


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
    mean, sd and runs, and each selection's gap to random picks on the same seed and round
    (``gap_to_random_mean``, ``gap_to_random_sd``, ``seeds_above_random``) where random ran."""
    summary = (rounds.groupby(["selection", "round", "points_per_image"], sort=False)["val_mean_iou"]
               .agg(miou_mean="mean", miou_sd="std", runs="size").reset_index())
    if "random" in set(rounds["selection"]):
        table = rounds.pivot_table(index=["seed", "round"], columns="selection", values="val_mean_iou")
        gaps = (table.sub(table["random"], axis=0).reset_index()
                .melt(id_vars=["seed", "round"], var_name="selection", value_name="gap"))
        per_round = gaps.groupby(["selection", "round"])["gap"].agg(
            gap_to_random_mean="mean", gap_to_random_sd="std",
            seeds_above_random=lambda g: int((g > 0).sum()))
        summary = summary.merge(per_round.reset_index(), on=["selection", "round"], how="left")
    return summary
