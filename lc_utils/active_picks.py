"""Where to label next: uncertainty at every pixel, and the rules that turn it into picks.

A trained model's uncertainty at every pixel (margin or entropy of its softmax) ranks the
unlabelled pixels. Every selection keeps the same spacing rule (:func:`select_points`): the picks
of a round keep a distance from each other and from the points already there, so that they spread
over the image instead of piling onto one blurry edge (the spacing is what a person clicking them
needs), and never land on a labelled or no-data pixel. The selections (:data:`SELECTIONS`):

- ``"margin"``, ``"entropy"``: the most uncertain pixels under that measure;
- ``"pixelpick"``: random pixels among the image's most uncertain ``top_share`` (PixelPick, Shin
  et al., ICCVW 2021: the top 5% by margin), :func:`top_share_picks`;
- ``"class-balanced"``: the most uncertain pixels of each class the model predicts, the classes
  in turn (after Cai et al., CVPR 2021), :func:`class_balanced_picks`;
- ``"random"``: random pixels, the baseline every other selection is compared with.

:mod:`lc_utils.active` runs them in rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd
from skimage import morphology
from torch import nn

from .classes import ClassSchema
from .inference import predict_tiled
from .point_sources import SIMULATED
from .sparse import PointAnnotation, image_seed
from .windows import DEFAULT_OVERLAP

Measure = Literal["margin", "entropy"]
MEASURES: tuple[str, ...] = get_args(Measure)

Selection = Literal[Measure, "pixelpick", "class-balanced", "random"]
SELECTIONS: tuple[str, ...] = get_args(Selection)
"""How a round picks its points: a model's uncertainty (most uncertain first, at random among the
most uncertain, or per predicted class), or random pixels under the same rules."""

TOP_SHARE = 0.05
"""PixelPick's share of each image's most uncertain pixels that its picks are drawn from."""


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


def suggest_points(probs: np.ndarray, labelled: PointAnnotation | None = None, k: int = 5, *,
                   measure: Measure = "margin", min_distance: float = 8.0
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """From a model's (C, H, W) probabilities: its :func:`uncertainty` map and the ``k`` most
    uncertain pixels, spaced and off the ``labelled`` points (:func:`select_points`), fewer where
    the image has no room for ``k``. What the annotator's live mode redraws after every click
    (``PointAnnotator(..., suggest=functools.partial(suggest_points, k=5))``)."""
    scores = uncertainty(probs, measure)
    for count in range(k, 0, -1):
        try:
            return scores, select_points(scores, count, labelled=labelled, min_distance=min_distance)
        except ValueError:
            continue
    return scores, (np.zeros(0, np.int64), np.zeros(0, np.int64))


def measure_of(selection: str) -> Measure | None:
    """The uncertainty measure ``selection`` ranks pixels by (None for random picks): PixelPick
    and the class-balanced picks rank by margin, as their papers do."""
    _check_selection(selection)
    if selection == "random":
        return None
    return selection if selection in MEASURES else "margin"


def _check_selection(selection: str) -> None:
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")


def select_points(scores: np.ndarray, k: int, *, labelled: PointAnnotation | None = None,
                  valid: np.ndarray | None = None, min_distance: float = 8.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` pixels with the highest ``scores`` (an (H, W) map: uncertainty, or random numbers
    for the baseline) such that no two picks, and no pick and labelled point, are closer than
    ``min_distance`` pixels; never a labelled pixel, never outside ``valid`` (e.g. no data).
    Returns (rows, cols), best first. Raises ``ValueError`` when the image has no room for ``k``
    such picks."""
    candidates = np.flatnonzero(_allowed(scores.shape, valid))
    order = candidates[np.argsort(-scores.ravel()[candidates], kind="stable")]
    return _spaced_picks([order], k, scores.shape, labelled, min_distance)


def top_share_picks(scores: np.ndarray, k: int, *, seed: int | Sequence[int], top_share: float = TOP_SHARE,
                    labelled: PointAnnotation | None = None, valid: np.ndarray | None = None,
                    min_distance: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """PixelPick's picks: ``k`` pixels drawn at random (seeded by ``seed``) among the ``top_share``
    of the image's unlabelled pixels inside ``valid`` with the highest ``scores``, spaced as
    :func:`select_points` spaces them. Where the top share has no room for ``k`` spaced picks, the
    rest are the most uncertain pixels beyond it: always ``k`` picks where the image has room.
    Returns (rows, cols) in the order drawn."""
    if not 0 < top_share <= 1:
        raise ValueError(f"top_share must lie in (0, 1], got {top_share}")
    free = _allowed(scores.shape, valid)
    if labelled is not None and len(labelled):
        labelled.check_bounds(scores.shape, "labelled points")
        free[labelled.rows, labelled.cols] = False
    candidates = np.flatnonzero(free)
    n_top = int(np.ceil(top_share * len(candidates)))
    top = candidates[np.argsort(-scores.ravel()[candidates], kind="stable")[:n_top]]
    # the top share ranked above every other pixel, in a random order of its own
    ranks = np.array(scores, dtype=np.float64, order="C")  # a copy whose ravel() is a view
    ceiling = float(ranks.max(initial=0.0)) + 1.0
    ranks.ravel()[top] = ceiling + random_scores(scores.shape, seed).ravel()[top]
    return select_points(ranks, k, labelled=labelled, valid=valid, min_distance=min_distance)


def class_balanced_picks(scores: np.ndarray, predicted: np.ndarray, k: int, *,
                         labelled: PointAnnotation | None = None, valid: np.ndarray | None = None,
                         min_distance: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` picks spread over the classes of ``predicted`` (the model's (H, W) class map): the
    classes predicted on the pixels inside ``valid`` take one pick each in turn, the rarest
    first (so the picks that do not share out evenly go to the rarest), each its most uncertain
    pixel by ``scores`` that the spacing of :func:`select_points` allows; a class without room
    left drops out of the turns. Returns (rows, cols) in the order taken."""
    if predicted.shape != scores.shape:
        raise ValueError(f"predicted classes {predicted.shape} and scores {scores.shape} differ in size")
    candidates = np.flatnonzero(_allowed(scores.shape, valid))
    classes = predicted.ravel()[candidates]
    present, counts = np.unique(classes, return_counts=True)
    queues = []
    for value in present[np.argsort(counts, kind="stable")]:
        members = candidates[classes == value]
        queues.append(members[np.argsort(-scores.ravel()[members], kind="stable")])
    return _spaced_picks(queues, k, scores.shape, labelled, min_distance)


def _allowed(shape: tuple[int, ...], valid: np.ndarray | None) -> np.ndarray:
    """Where picks may go: ``valid`` (a copy), or everywhere."""
    if valid is None:
        return np.ones(shape, bool)
    if valid.shape != tuple(shape):
        raise ValueError(f"valid mask {valid.shape} and scores {tuple(shape)} differ in size")
    return valid.astype(bool)


def _spaced_picks(queues: Sequence[np.ndarray], k: int, shape: tuple[int, ...],
                  labelled: PointAnnotation | None, min_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """``k`` picks from ``queues`` (flat pixel indices, best first), one from each queue in turn:
    each queue's best pixel not within ``min_distance`` of a pick or a labelled point (never the
    point itself); a queue with none left drops out. One queue: its best pixels, spaced."""
    height, width = shape
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
    flat_blocked = blocked.reshape(-1)  # a view: blocking shows at once
    lists = [queue.tolist() for queue in queues]
    next_index = [0] * len(lists)
    turns = list(range(len(lists)))
    picks: list[tuple[int, int]] = []
    while turns and len(picks) < k:
        for turn in list(turns):
            queue, position = lists[turn], next_index[turn]
            while position < len(queue) and flat_blocked[queue[position]]:
                position += 1
            next_index[turn] = position + 1
            if position == len(queue):
                turns.remove(turn)
                continue
            row, col = divmod(queue[position], width)
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


def next_picks(selection: str, k: int, *, image_id: str, valid: np.ndarray, seed: int, round_number: int,
               uncertainty: np.ndarray | None = None, predicted: np.ndarray | None = None,
               labelled: PointAnnotation | None = None, min_distance: float = 8.0,
               top_share: float = TOP_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` points that round ``round_number`` of :func:`lc_utils.active.run_active_rounds`
    (seed ``seed``) adds to one image for ``selection`` (:data:`SELECTIONS`), from ``uncertainty``
    (the image's :func:`uncertainty` map under :func:`measure_of` the selection) and, for the
    class-balanced picks, ``predicted`` (the model's class map); spaced and kept off ``labelled``
    points and off pixels outside ``valid`` (an (H, W) mask: no data) as :func:`select_points`
    does. Random and PixelPick draws are seeded by the seed, the round and ``image_id`` (the same
    draws for both). Returns (rows, cols), best (or first drawn) first."""
    _check_selection(selection)
    rules = {"labelled": labelled, "valid": valid, "min_distance": min_distance}
    # a round of its own for every round: the picks of round 2 are not those of round 1 again
    draw_seed = image_seed(seed + 1000 * round_number, image_id)
    if selection == "random":
        return select_points(random_scores(valid.shape, draw_seed), k, **rules)
    if uncertainty is None:
        raise ValueError(f"{selection} picks need the image's uncertainty map")
    if selection == "pixelpick":
        return top_share_picks(uncertainty, k, seed=draw_seed, top_share=top_share, **rules)
    if selection == "class-balanced":
        if predicted is None:
            raise ValueError("class-balanced picks need the image's predicted class map")
        return class_balanced_picks(uncertainty, predicted, k, **rules)
    return select_points(uncertainty, k, **rules)


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
