"""Label where it matters: the model suggests which pixels to label next (notebook 09).

A trained model's uncertainty at every pixel (margin or entropy of its softmax) ranks the
unlabelled pixels; the next ``k`` points of an image are the most uncertain ones that keep a
distance from each other and from the points already there, so that a round of suggestions
spreads over the image instead of piling onto one blurry edge (PixelPick, Shin et al. 2021, picks
per pixel; the spacing is what a person clicking them needs). Random picks under the same rules
are the baseline every active round is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from torch import nn

from .classes import IGNORE_INDEX
from .files import image_id_of, image_shapes, read_rgb
from .inference import predict_tiled
from .masks import read_mask
from .point_editor import SIMULATED
from .runs import RunSpec, build_run, load_data
from .sparse import PointAnnotation, annotatable, image_seed, load_annotations, save_annotations
from .study import score_images
from .windows import DEFAULT_OVERLAP

Measure = Literal["margin", "entropy"]
MEASURES: tuple[str, ...] = ("margin", "entropy")


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


def round_files(work_dir: str | Path, selection: str, seed: int, round_number: int) -> tuple[Path, Path]:
    """Where :func:`run_active_rounds` keeps a round's points (a CSV annotation file) and its run
    (checkpoints ``last.pt`` and ``best.pt``). Round 0 does not depend on the selection: every
    selection shares its points and model."""
    name = f"seed{seed}" if round_number == 0 else f"{selection}_seed{seed}"
    work_dir = Path(work_dir)
    return work_dir / f"{name}_round{round_number}.csv", work_dir / name / f"round{round_number}"


def run_active_rounds(spec: RunSpec, budgets: Sequence[int], selection: str = "margin", *,
                      work_dir: str | Path, min_distance: float = 8.0, fine_tune_epochs: int | None = None,
                      runs_dir: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
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

    Returns a row per round: round, points_per_image, labelled_fraction, the scores of
    :func:`lc_utils.study.score_images` (``val_mean_iou``, ...), train_seconds."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    if not budgets or any(b <= a for a, b in zip(budgets, budgets[1:])) or budgets[0] < 1:
        raise ValueError(f"budgets must be points per image that grow round by round, got {list(budgets)}")
    data = load_data(spec)
    schema, train = data.schema, data.split["train"]
    truths = {image_id_of(image): annotatable(read_mask(mask, schema), schema) for image, mask in train}
    annotations: dict[str, PointAnnotation] = {}
    model: nn.Module | None = None
    rows = []
    for round_number, budget in enumerate(budgets):
        path, run_dir = round_files(work_dir, selection, spec.seed, round_number)
        if path.is_file():  # a resumed study: the round's points as they were picked
            annotations = load_annotations(path, schema, image_shapes(train))
        else:
            annotations = _next_points(annotations, truths, train, budget, round_number, selection, model,
                                       spec, min_distance)
            info = {"round": round_number, **({"selection": selection} if round_number else {})}
            save_annotations(annotations, path, schema, info=info)
        epochs = spec.epochs if round_number == 0 or fine_tune_epochs is None else fine_tune_epochs
        run = build_run(spec.replace(annotations=str(path), epochs=epochs), runs_dir=runs_dir)
        if model is not None:
            run.model.load_state_dict(model.state_dict())
        started = time.perf_counter()
        run.fit(run_dir, progress=progress)
        model = run.model
        scores = score_images(model, data.split["val"], schema, spec.val_window, spec.val_overlap)
        rows.append({"selection": selection, "seed": spec.seed, "round": round_number,
                     "points_per_image": budget, "labelled_fraction": run.labelled_fraction,
                     "steps": run.steps, **{f"val_{k}": v for k, v in scores.items()},
                     "train_seconds": time.perf_counter() - started})
    return pd.DataFrame(rows)


def _next_points(annotations: dict[str, PointAnnotation], truths: dict[str, np.ndarray],
                 train: Sequence[tuple[Path, Path]], budget: int, round_number: int, selection: str,
                 model: nn.Module | None, spec: RunSpec, min_distance: float) -> dict[str, PointAnnotation]:
    """Every training image's points after one more round: the first points, or ``budget`` minus
    those it has, picked by ``selection`` and labelled from ``truths``."""
    grown = {}
    for image, _ in train:
        image_id = image_id_of(image)
        truth = truths[image_id]
        if round_number == 0:
            rows, cols = select_points(random_scores(truth.shape, image_seed(spec.seed, image_id)), budget,
                                       valid=truth != IGNORE_INDEX, min_distance=0)
        else:
            if selection == "random":
                scores = random_scores(truth.shape, image_seed(spec.seed + 1000 * round_number, image_id))
            else:
                scores = predict_uncertainty(model, read_rgb(image, what="image"), selection,
                                             tile_size=spec.val_window, overlap=spec.val_overlap)[1]
            k = budget - len(annotations[image_id])
            rows, cols = select_points(scores, k, labelled=annotations[image_id], valid=truth != IGNORE_INDEX,
                                       min_distance=min_distance)
        new = PointAnnotation(rows, cols, truth[rows, cols], sources=[SIMULATED] * len(rows),
                              rounds=[round_number] * len(rows))
        grown[image_id] = new if round_number == 0 else annotations[image_id].extend(new)
    return grown


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
