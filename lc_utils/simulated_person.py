"""A simulated person teaching a model by clicking, the masks answering: where the clicks go and
what each learner makes of them (``make simulated-person``, notebook 08's last section).

A person looks at the live map of each tile and clicks one pixel per tile per round, under one of
three policies (:data:`POLICIES`):

- ``random``: any pixel of a known class, none clicked before;
- ``largest-wrong``: inside the largest connected region the live map gets wrong, at its pixel
  farthest from the region's border, as a person corrects a map (iSAGE, 2026, and Microsoft's
  land cover tool, Robinson et al., AAAI 2020, place their clicks where the model is wrong);
- ``suggestions``: notebook 09's suggestion, the live map's least sure pixel by margin, spaced
  from the clicks before (:func:`lc_utils.active_picks.select_points`).

The mask's class at the pixel is the click's class. After every round the learner (a
:class:`~lc_utils.live_head.LiveHead`) refits on all the clicks and the map is redrawn, as the
annotator does. :func:`simulate_clicks` records, at the chosen click counts, the clicks so far and
each tile's confusion matrix, for the clicked tiles and for tiles never clicked; other learners
(:class:`~lc_utils.filter_forest.FilterForest`, a full fine-tune) are then scored on the same
clicks with :func:`score_learner`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import label as connected_regions

from .active_picks import select_points, uncertainty
from .classes import ClassSchema
from .records import scores_from_tiles
from .sparse import PointAnnotation
from .tile_bootstrap import tile_confusions

Policy = Literal["random", "largest-wrong", "suggestions"]
POLICIES: tuple[Policy, ...] = ("random", "largest-wrong", "suggestions")
MIN_DISTANCE = 8.0
"""Suggestions keep this many pixels from the clicks before (notebook 09's spacing)."""
Tiles = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Tile id -> (H, W, 3) uint8 image and (H, W) class map (the mask that answers)."""


class Learner(Protocol):
    """What learns from clicks: :class:`~lc_utils.live_head.LiveHead` and
    :class:`~lc_utils.filter_forest.FilterForest` alike."""

    def learn(self, annotations: Mapping[str, PointAnnotation], images: Mapping | None = None) -> object: ...

    def predict(self, image_id: str, image: np.ndarray | None = None, *,
                return_probs: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


def next_click(policy: Policy, truth: np.ndarray, prediction: np.ndarray, clicked: PointAnnotation,
               rng: np.random.Generator, *, probs: np.ndarray | None = None,
               unknown_index: int | None = None) -> tuple[int, int]:
    """The pixel a person clicks next on one tile under ``policy``, given the mask ``truth``, the
    live map ``prediction`` and its (C, H, W) ``probs`` (``suggestions`` only), never a clicked
    pixel or one of the unknown class. Where the map is right everywhere, ``largest-wrong`` clicks
    at random."""
    if policy not in POLICIES:
        raise ValueError(f"unknown click policy {policy!r}; choose from {list(POLICIES)}")
    allowed = np.ones(truth.shape, bool) if unknown_index is None else truth != unknown_index
    allowed[clicked.rows, clicked.cols] = False
    if not allowed.any():
        raise ValueError("no pixel left to click on this tile")
    if policy == "suggestions":
        if probs is None:
            raise ValueError("the suggestions policy needs the live map's probabilities")
        for spacing in (MIN_DISTANCE, 0.0):  # a tile full of clicks: spacing given up last
            try:
                rows, cols = select_points(uncertainty(probs, "margin"), 1, labelled=clicked, valid=allowed,
                                           min_distance=spacing)
                return int(rows[0]), int(cols[0])
            except ValueError:
                continue
    if policy == "largest-wrong":
        regions = connected_regions((prediction != truth) & allowed, connectivity=1)
        if regions.max() > 0:
            largest = np.bincount(regions.ravel())[1:].argmax() + 1
            depth = ndimage.distance_transform_edt(regions == largest)
            row, col = np.unravel_index(int(depth.argmax()), depth.shape)
            return int(row), int(col)
    row, col = np.unravel_index(int(rng.choice(np.flatnonzero(allowed))), truth.shape)
    return int(row), int(col)


def _add(points: PointAnnotation, row: int, col: int, label: int) -> PointAnnotation:
    return PointAnnotation(np.append(points.rows, row), np.append(points.cols, col),
                           np.append(points.labels, label), sources=np.array(["person"] * (len(points) + 1)))


def _predict_all(learner: Learner, tiles: Tiles, with_probs: bool) -> dict[str, tuple]:
    out = {}
    for tile_id, (image, _) in tiles.items():
        result = learner.predict(tile_id, image, return_probs=with_probs)
        out[tile_id] = result if with_probs else (result, None)
    return out


def simulate_clicks(learner: Learner, clicked: Tiles, unseen: Tiles, policy: Policy, score_at: Sequence[int],
                    schema: ClassSchema, *, seed: int = 0) -> list[dict[str, object]]:
    """Rounds of one click per ``clicked`` tile under ``policy``, ``learner`` refitted on all the
    clicks after each; at every count in ``score_at`` (clicks per tile, 0 for the learner before
    any click) a row: the count, the clicks so far (tile id -> :class:`PointAnnotation`), and the
    confusion matrix of every clicked and every ``unseen`` tile (:func:`tile_confusions`)."""
    rng = np.random.default_rng(seed)
    annotations = {tile_id: PointAnnotation([], [], []) for tile_id in clicked}
    with_probs = policy == "suggestions"
    maps = _predict_all(learner, clicked, with_probs)
    rows = []
    for count in range(max(score_at) + 1):
        if count > 0:
            for tile_id, (_, truth) in clicked.items():
                prediction, probs = maps[tile_id]
                row, col = next_click(policy, truth, prediction, annotations[tile_id], rng, probs=probs,
                                      unknown_index=schema.unknown_index)
                annotations[tile_id] = _add(annotations[tile_id], row, col, int(truth[row, col]))
            learner.learn(annotations)
            maps = _predict_all(learner, clicked, with_probs)
        if count in score_at:
            rows.append({"clicks_per_tile": count, "annotations": dict(annotations),
                         **_confusions({t: (clicked[t][1], maps[t][0]) for t in clicked},
                                       unseen, learner, schema)})
    return rows


def _confusions(clicked: Mapping[str, tuple[np.ndarray, np.ndarray]], unseen: Tiles, learner: Learner,
                schema: ClassSchema) -> dict[str, dict[str, list[list[int]]]]:
    maps = {t: (truth, learner.predict(t, image)) for t, (image, truth) in unseen.items()}
    return {"clicked_tiles": tile_confusions(clicked, schema.num_classes),
            "unseen_tiles": tile_confusions(maps, schema.num_classes)}


def fitted(learner: Learner) -> Callable[[Mapping[str, PointAnnotation]], Learner]:
    """For :func:`score_learner`: ``learner`` (given its images) fitted on the clicks."""
    def fit(clicks: Mapping[str, PointAnnotation]) -> Learner:
        learner.learn(clicks)
        return learner
    return fit


def score_learner(make: Callable[[Mapping[str, PointAnnotation]], Learner],
                  clicks: Mapping[str, PointAnnotation], clicked: Tiles, unseen: Tiles, schema: ClassSchema
                  ) -> dict[str, dict[str, list[list[int]]]]:
    """Another learner on the same clicks: ``make(clicks)`` returns it trained on them (a forest
    fitted, a model fine-tuned); the confusion matrix of every clicked and unseen tile."""
    learner = make(clicks)
    maps = {t: (truth, learner.predict(t, image)) for t, (image, truth) in clicked.items()}
    return _confusions(maps, unseen, learner, schema)


def curve(rows: Sequence[Mapping[str, object]], schema: ClassSchema) -> pd.DataFrame:
    """:func:`simulate_clicks`'s rows as a curve: per click count, the mIoU over the clicked tiles
    and over the tiles never clicked (their confusion matrices summed; none where no tile is)."""
    return pd.DataFrame([{"clicks per tile": row["clicks_per_tile"],
                          **{tiles.replace("_", " "): scores_from_tiles(row[tiles], schema)["val_mean_iou"]
                             for tiles in ("clicked_tiles", "unseen_tiles") if row[tiles]}} for row in rows]
                        ).set_index("clicks per tile")


def summarize(runs: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """A study's rows (``benchmarks/simulated_person.py``) as mean and sd of the mIoU over the
    seeds, per tile set, policy, learner and click count: what
    :func:`lc_utils.viz_results.plot_click_curves` draws."""
    grouped = pd.DataFrame(runs).groupby(["tiles", "policy", "learner", "clicks_per_tile"], sort=False)
    return grouped["val_mean_iou"].agg(miou_mean="mean", miou_sd="std", runs="count").reset_index()
