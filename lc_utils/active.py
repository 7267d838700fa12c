"""Label where it matters: the model suggests which pixels to label next (notebook 09).

A trained model's uncertainty at every pixel (margin or entropy of its softmax) ranks the
unlabelled pixels; the next ``k`` points of an image are the most uncertain ones that keep a
distance from each other and from the points already there, so that a round of suggestions
spreads over the image instead of piling onto one blurry edge (PixelPick, Shin et al. 2021, picks
per pixel; the spacing is what a person clicking them needs). Random picks under the same rules
are the baseline every active round is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from torch import nn

from .inference import predict_tiled
from .sparse import PointAnnotation
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
    disc_rows, disc_cols = (np.array(v, dtype=np.int64) for v in zip(*offsets)) if offsets else ([], [])

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
