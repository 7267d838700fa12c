"""How sure is a gap between two methods? A paired bootstrap over the validation tiles.

A study scores a method and its control on the same few validation tiles. Most of the spread of
such scores is the tiles' own: a harder set of tiles lowers both. Resampling the tiles (with
replacement), and scoring the method and the control on the *same* resampled tiles, keeps what
they share out of their gap; the spread of the gap over the resamples is the uncertainty that
choosing these N tiles adds. Where its interval spans zero, the gap is not measurable on N tiles:
"did not help" cannot be told from "helped a little" (or "hurt a little").

Each run keeps one confusion matrix per validation tile (:func:`tile_confusions`); mIoU is
computed from the summed matrices of a resample, as it is from the whole set (never a mean of
per-tile IoUs, which a tile without a class would make undefined).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .classes import ClassSchema
from .files import as_pairs
from .inference import predict_pairs
from .metrics import ConfusionMatrix
from .windows import DEFAULT_OVERLAP


def mean_iou_of(counts: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The mean IoU of confusion matrices ``counts`` (..., C, C; rows truth, columns prediction)
    over the classes ``keep`` (a boolean mask), a class counted only where it occurs in the truth
    or the prediction (as :class:`~lc_utils.metrics.ConfusionMatrix` counts it); NaN where none does."""
    diagonal = np.diagonal(counts, axis1=-2, axis2=-1)
    union = counts.sum(axis=-1) + counts.sum(axis=-2) - diagonal
    present = (union > 0) & keep
    iou = np.where(present, diagonal / np.maximum(union, 1), 0.0)
    n_present = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, iou.sum(axis=-1) / n_present, np.nan)


@dataclass(frozen=True)
class PairedGap:
    """A method's mIoU minus its control's on the same tiles, with a bootstrap interval."""

    gap: float
    low: float
    high: float
    confidence: float
    n_tiles: int

    @property
    def measurable(self) -> bool:
        """Whether the interval leaves zero out: the gap's sign is not the tiles' chance."""
        return bool(self.low > 0 or self.high < 0)

    def fields(self) -> dict[str, float | bool]:
        """The gap, its interval and whether it is measurable, as a record keeps them."""
        return {"gap": self.gap, "low": self.low, "high": self.high, "measurable": self.measurable}

    def describe(self, digits: int = 3) -> str:
        """``+0.021 (90% interval -0.004 to +0.047): not measurable on 32 tiles``, or ``... measurable``."""
        verdict = "measurable" if self.measurable else "not measurable"
        return (f"{self.gap:+.{digits}f} ({self.confidence:.0%} interval {self.low:+.{digits}f} to "
                f"{self.high:+.{digits}f}): {verdict} on {self.n_tiles} tiles")


def paired_gap(method: Mapping[str, np.ndarray], control: Mapping[str, np.ndarray], keep: np.ndarray, *,
               confidence: float = 0.9, n_boot: int = 2000, seed: int = 0) -> PairedGap:
    """The mIoU of ``method`` minus that of ``control`` (each: tile id -> its confusion matrix on
    that tile), with a ``confidence`` percentile interval from ``n_boot`` paired resamples of the
    tiles: both scored on the same resampled tiles every time. Both must hold the same tiles."""
    if set(method) != set(control):
        raise ValueError(f"the method and its control were scored on other tiles "
                         f"({len(set(method) ^ set(control))} differ): a paired gap needs the same tiles")
    return pooled_gap([(method, control)], keep, confidence=confidence, n_boot=n_boot, seed=seed)


def pooled_gap(pairs: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]], keep: np.ndarray,
               *, confidence: float = 0.9, n_boot: int = 2000, seed: int = 0) -> PairedGap:
    """The mean over seeds of the paired gap, each seed a (method, control) pair scored on the same
    tiles, resampling the tiles once per draw for every seed alike (a tile that is hard is hard
    for every seed): the interval of the seeds' mean gap, the tiles' sampling error included."""
    if not pairs or not pairs[0][0]:
        raise ValueError("no tiles to compare on")
    tiles = sorted(pairs[0][0])
    if any(sorted(method) != tiles or sorted(control) != tiles for method, control in pairs):
        raise ValueError("every seed must be scored on the same tiles to pool their gaps")
    stacks = [tuple(np.stack([np.asarray(scores[t], dtype=np.int64) for t in tiles]) for scores in pair)
              for pair in pairs]
    gap = float(np.mean([mean_iou_of(a.sum(0), keep) - mean_iou_of(b.sum(0), keep) for a, b in stacks]))
    # a draw is how often it takes each tile: memory n_boot x tiles, not n_boot x tiles x C x C
    draws = np.random.default_rng(seed).integers(0, len(tiles), size=(n_boot, len(tiles)))
    weights = np.stack([np.bincount(row, minlength=len(tiles)) for row in draws])
    gaps = np.mean([mean_iou_of(np.einsum("bt,tij->bij", weights, a), keep)
                    - mean_iou_of(np.einsum("bt,tij->bij", weights, b), keep) for a, b in stacks], axis=0)
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(gaps, [alpha, 1 - alpha])
    return PairedGap(gap, float(low), float(high), confidence, len(tiles))


def seed_gaps(seeds: Sequence[int], pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
              keep: np.ndarray, *, confidence: float = 0.9, n_boot: int = 2000) -> dict[str, Any]:
    """What a study record keeps of a method against its control over ``seeds`` (one (method,
    control) pair of tile confusions per seed): the pooled gap with its interval
    (:func:`pooled_gap`), and each seed's own (:func:`paired_gap`)."""
    pooled = pooled_gap(pairs, keep, confidence=confidence, n_boot=n_boot)
    per_seed = [paired_gap(*pair, keep, confidence=confidence, n_boot=n_boot) for pair in pairs]
    return {"seeds": list(seeds), **pooled.fields(), "confidence": confidence, "n_tiles": pooled.n_tiles,
            "per_seed": [{"seed": seed, **gap.fields()} for seed, gap in zip(seeds, per_seed)]}


def tile_confusions(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], num_classes: int
                    ) -> dict[str, list[list[int]]]:
    """One confusion matrix per tile (tile id -> (truth, prediction) class maps), as nested lists
    a JSON record keeps."""
    confusions = {}
    for tile, (truth, prediction) in predictions.items():
        matrix = ConfusionMatrix(num_classes)
        matrix.update(prediction, truth)
        confusions[tile] = matrix.matrix.astype(int).tolist()
    return confusions


def score_tiles(model: nn.Module, pairs: Sequence[tuple[Path, Path]], schema: ClassSchema, *,
                tile_size: int = 512, overlap: float = DEFAULT_OVERLAP) -> dict[str, list[list[int]]]:
    """Every (image, mask) pair's confusion matrix for ``model``, each image predicted whole in
    ``tile_size`` windows (:func:`lc_utils.inference.predict_tiled`): what a study record keeps
    so that its gaps can be resampled by tile."""
    pairs = as_pairs(pairs)
    predicted = predict_pairs(model, pairs, schema, tile_size=tile_size, overlap=overlap)
    return tile_confusions({pair.image_id: (truth, prediction)
                            for pair, (_, truth, prediction) in zip(pairs, predicted)}, schema.num_classes)
