"""Sparse point annotations: sampling strategies and budgets, label maps with 255 elsewhere, points
held out by area, and the dataset that trains on them. Their files on disk are
:mod:`lc_utils.point_files`.

An annotation is drawn **once** per image, seeded by the image id, and saved. Every epoch then
sees the same points. Drawing new points per batch would, over the epochs, label almost every
pixel: sparse supervision would quietly become dense supervision.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .datasets import SegmentationDataset

Strategy = Literal["uniform", "stratified", "grid"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True)
class PointAnnotation:
    """Labelled points of one image: parallel arrays of rows, columns and class labels, and
    optionally each point's provenance. Two annotations are equal when their points and labels
    are; provenance does not change what a model learns."""

    rows: np.ndarray
    cols: np.ndarray
    labels: np.ndarray
    sources: np.ndarray | None = None
    """Who or what placed each point: ``"person"`` for a click, a strategy for sampled points."""
    rounds: np.ndarray | None = None
    """The labelling round that added each point (0: the first points)."""
    extras: Mapping[str, np.ndarray] | None = None
    """Columns of an annotation file that the course does not read (a person's own, such as
    ``checked_by``): column name -> one text per point, kept so that saving the points again
    keeps them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", np.asarray(self.rows, dtype=np.int64))
        object.__setattr__(self, "cols", np.asarray(self.cols, dtype=np.int64))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.uint8))
        if self.sources is not None:
            object.__setattr__(self, "sources", np.asarray(self.sources, dtype=object))
        if self.rounds is not None:
            object.__setattr__(self, "rounds", np.asarray(self.rounds, dtype=np.int64))
        if self.extras is not None:
            object.__setattr__(self, "extras", {str(name): np.asarray(values, dtype=object)
                                                for name, values in self.extras.items()})
        arrays = (self.rows, self.cols, self.labels, self.sources, self.rounds, *(self.extras or {}).values())
        if len({len(a) for a in arrays if a is not None}) > 1:
            raise ValueError("rows, cols, labels (and sources, rounds, extras) must have the same length")

    def __len__(self) -> int:
        return len(self.rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PointAnnotation):
            return NotImplemented
        return all(np.array_equal(a, b) for a, b in zip(
            (self.rows, self.cols, self.labels), (other.rows, other.cols, other.labels)))

    __hash__ = None  # type: ignore[assignment]

    def extend(self, other: PointAnnotation) -> PointAnnotation:
        """These points followed by ``other``'s, with provenance and extra columns where either
        records them (an unrecorded source or extra column is "", an unrecorded round 0)."""
        names = list(dict.fromkeys([*(self.extras or {}), *(other.extras or {})]))
        extras = {name: np.concatenate([np.full(len(a), "", dtype=object) if name not in (a.extras or {})
                                        else a.extras[name] for a in (self, other)])
                  for name in names}
        return PointAnnotation(*(np.concatenate([getattr(self, f), getattr(other, f)])
                                 for f in ("rows", "cols", "labels")),
                               sources=_joined(self, other, "sources", ""),
                               rounds=_joined(self, other, "rounds", 0), extras=extras or None)

    def subset(self, keep: np.ndarray) -> PointAnnotation:
        """The points ``keep`` selects (a boolean mask or indices), with their provenance and
        extra columns."""
        return PointAnnotation(*(None if a is None else a[keep] for a in
                                 (self.rows, self.cols, self.labels, self.sources, self.rounds)),
                               extras=None if self.extras is None
                               else {name: values[keep] for name, values in self.extras.items()})

    def check_bounds(self, shape: tuple[int, int], source: str = "annotation") -> None:
        """Raise ``ValueError`` naming ``source`` if a point lies outside an image of ``shape``."""
        outside = (self.rows < 0) | (self.rows >= shape[0]) | (self.cols < 0) | (self.cols >= shape[1])
        if outside.any():
            i = int(np.argmax(outside))
            raise ValueError(f"{source}: {int(outside.sum())} point(s) outside the {shape[1]}x{shape[0]} "
                             f"image, e.g. row {self.rows[i]}, col {self.cols[i]}")


def _joined(first: PointAnnotation, second: PointAnnotation, field: str, missing: object
            ) -> np.ndarray | None:
    """A provenance field of two annotations end to end (None where neither records it)."""
    values = [getattr(first, field), getattr(second, field)]
    if all(v is None for v in values):
        return None
    return np.concatenate([np.full(len(a), missing, dtype=object) if v is None else v
                           for a, v in zip((first, second), values)])


def points_for_density(points_per_mp: float, shape: tuple[int, int]) -> int:
    """Points for an image of ``shape`` at ``points_per_mp`` labelled points per megapixel (at
    least one). A density means the same on a 256 x 256 sample image (1,500 per megapixel: 98
    points) and on a 2448 x 2448 DeepGlobe tile (8,989 points); a count per image does not."""
    if points_per_mp <= 0:
        raise ValueError(f"points_per_mp must be positive, got {points_per_mp}")
    return max(1, round(points_per_mp * shape[0] * shape[1] / 1e6))


def _check_amount(n_points: int | None, fraction: float | None, available: int,
                  points_per_mp: float | None = None, shape: tuple[int, int] = (0, 0)) -> int:
    if sum(amount is not None for amount in (n_points, fraction, points_per_mp)) != 1:
        raise ValueError("give exactly one of n_points, fraction and points_per_mp")
    if points_per_mp is not None:
        n_points = points_for_density(points_per_mp, shape)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n_points = max(1, round(fraction * available))
    assert n_points is not None
    if n_points < 1:
        raise ValueError(f"n_points must be at least 1, got {n_points}")
    if n_points > available:
        raise ValueError(f"asked for {n_points} points but only {available} labelled pixels exist")
    return int(n_points)


def _uniform(rng: np.random.Generator, eligible: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(eligible, size=n, replace=False)


def _stratified(rng: np.random.Generator, flat: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    """An equal share per class present; a class too small for its share gives the rest away."""
    classes, counts = np.unique(flat[eligible], return_counts=True)
    order = np.argsort(counts)  # smallest first, so their leftovers go to the larger classes
    quota = np.zeros(len(classes), dtype=np.int64)
    remaining = n
    for position, k in enumerate(order):
        share = remaining // (len(order) - position)
        quota[k] = min(share, counts[k])
        remaining -= quota[k]
    # The rounding remainder goes, one point each, to classes that still have pixels to spare.
    spare = [k for k in rng.permutation(len(classes)) if quota[k] < counts[k]]
    for k in spare[:remaining]:
        quota[k] += 1
    chosen = [rng.choice(eligible[flat[eligible] == c], size=q, replace=False)
              for c, q in zip(classes, quota) if q]
    return np.concatenate(chosen)


def _grid(rng: np.random.Generator, shape: tuple[int, int], valid: np.ndarray, n: int,
          jitter: float) -> np.ndarray:
    """A lattice of about ``n`` cells, one point per cell moved at random within ``jitter`` of it."""
    height, width = shape
    n_rows = max(1, min(height, round(np.sqrt(n * height / width))))
    n_cols = max(1, min(width, int(np.ceil(n / n_rows))))
    cell_h, cell_w = height / n_rows, width / n_cols
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    rows = (r.ravel() + 0.5 + jitter * rng.uniform(-0.5, 0.5, r.size)) * cell_h
    cols = (c.ravel() + 0.5 + jitter * rng.uniform(-0.5, 0.5, c.size)) * cell_w
    flat = np.unique(np.clip(rows.astype(int), 0, height - 1) * width
                     + np.clip(cols.astype(int), 0, width - 1))
    flat = flat[valid[flat]]
    return rng.choice(flat, size=n, replace=False) if len(flat) > n else flat


def sample_points(
    class_map: np.ndarray,
    *,
    n_points: int | None = None,
    fraction: float | None = None,
    points_per_mp: float | None = None,
    strategy: Strategy = "uniform",
    seed: int | Sequence[int] = 0,
    grid_jitter: float = 0.8,
) -> PointAnnotation:
    """Pick labelled points from a dense (H, W) class map: exactly one of ``n_points`` (per
    image), ``fraction`` (of the labelled pixels) and ``points_per_mp`` (per megapixel of image,
    :func:`points_for_density`).

    - ``uniform``: pixels drawn at random without replacement;
    - ``stratified``: an equal share of the points for every class present (rare classes get
      points, as an annotator who clicks each class would);
    - ``grid``: a regular lattice with random jitter (at most ``n_points``: lattice points that
      land on unlabelled pixels are dropped).

    Pixels labelled 255 in ``class_map`` are never chosen. The same map and seed give the same
    points; points are returned sorted by position.
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"expected an (H, W) class map, got shape {class_map.shape}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    flat_map = class_map.ravel()
    valid = flat_map != IGNORE_INDEX
    eligible = np.flatnonzero(valid)
    n = _check_amount(n_points, fraction, len(eligible), points_per_mp, class_map.shape)
    rng = np.random.default_rng(seed)
    if strategy == "uniform":
        chosen = _uniform(rng, eligible, n)
    elif strategy == "stratified":
        chosen = _stratified(rng, flat_map, eligible, n)
    else:
        chosen = _grid(rng, class_map.shape, valid, n, grid_jitter)
    chosen = np.sort(chosen)
    rows, cols = np.divmod(chosen, class_map.shape[1])
    return PointAnnotation(rows, cols, flat_map[chosen])


def points_to_label_map(annotation: PointAnnotation, shape: tuple[int, int],
                        source: str = "annotation") -> np.ndarray:
    """(H, W) uint8 map holding each point's label and 255 (unlabelled) everywhere else.

    A point outside ``shape`` raises a ``ValueError`` naming ``source``."""
    annotation.check_bounds(shape, source)
    label_map = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    label_map[annotation.rows, annotation.cols] = annotation.labels
    return label_map


def image_seed(seed: int, image_id: str) -> list[int]:
    """Seed for one image: stable across runs and machines, different for every image id."""
    return [int(seed), zlib.crc32(image_id.encode("utf-8"))]


def sample_annotations(
    class_maps: Iterable[tuple[str, np.ndarray]],
    *,
    n_points: int | None = None,
    fraction: float | None = None,
    points_per_mp: float | None = None,
    strategy: Strategy = "uniform",
    seed: int = 0,
) -> dict[str, PointAnnotation]:
    """One annotation per (image id, class map), seeded by ``seed`` and the id (:func:`image_seed`).

    ``class_maps`` may be a generator, so that large images are read one at a time.
    """
    return {image_id: sample_points(class_map, n_points=n_points, fraction=fraction,
                                    points_per_mp=points_per_mp, strategy=strategy,
                                    seed=image_seed(seed, image_id))
            for image_id, class_map in class_maps}


def annotatable(class_map: np.ndarray, schema: ClassSchema = DEEPGLOBE, label_unknown: bool = False
                ) -> np.ndarray:
    """``class_map`` with the schema's unknown class marked unlabelled (255), so that no point lands
    on it (unless ``label_unknown``): what every strategy samples from."""
    if label_unknown or schema.unknown_index is None:
        return class_map
    return np.where(class_map == schema.unknown_index, IGNORE_INDEX, class_map).astype(class_map.dtype)


def hold_out_areas(annotations: Mapping[str, PointAnnotation], image_shapes: Mapping[str, tuple[int, int]],
                   share: float = 0.2, block: int = 64, seed: int = 0
                   ) -> tuple[dict[str, PointAnnotation], dict[str, PointAnnotation]]:
    """Split every image's points by area: the image (its (H, W) in ``image_shapes``) is cut into
    ``block`` x ``block`` squares, ``share`` of them, drawn for ``seed`` and the image alone, are
    held out, and the points inside them validate while the others train. Returns (training
    points, held-out points), with their provenance; a new point never moves another one.

    Points held out by area are scored where the model saw no label nearby, unlike points drawn
    at random among the clicked ones, whose neighbours trained the model."""
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    if block < 1:
        raise ValueError(f"block must be at least 1 pixel, got {block}")
    kept, held = {}, {}
    for image_id, annotation in annotations.items():
        if image_id not in image_shapes:
            raise ValueError(f"image {image_id!r} has points but no size in image_shapes")
        height, width = image_shapes[image_id]
        rng = np.random.default_rng(image_seed(seed, image_id))
        chosen = rng.random((-(-height // block), -(-width // block))) < share
        annotation.check_bounds((height, width), f"image {image_id!r}")
        held_out = chosen[annotation.rows // block, annotation.cols // block]
        kept[image_id], held[image_id] = annotation.subset(~held_out), annotation.subset(held_out)
    return ({i: a for i, a in kept.items() if len(a)}, {i: a for i, a in held.items() if len(a)})


def point_counts(annotations: Mapping[str, PointAnnotation], num_classes: int) -> np.ndarray:
    """Labelled points per class over all images of an annotation."""
    labels = [a.labels for a in annotations.values()]
    flat = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    return np.bincount(flat.astype(np.int64), minlength=num_classes)[:num_classes]


def labelled_fraction(annotations: Mapping[str, PointAnnotation],
                      image_shapes: Mapping[str, tuple[int, int]]) -> float:
    """Share of the pixels of the images in ``image_shapes`` (id -> (height, width)) that carry a
    label; points of other images (an annotation of the whole data set, a training split's shapes)
    do not count."""
    total = sum(h * w for h, w in image_shapes.values())
    points = sum(len(annotations[i]) for i in image_shapes if i in annotations)
    return points / total if total else 0.0


def pixels_labelled_by_redrawing(shape: tuple[int, int], n_points: int, n_draws: int, seed: int = 0,
                                 until: float = 1.0) -> np.ndarray:
    """Share of distinct pixels labelled after each of ``n_draws`` fresh uniform draws of
    ``n_points`` (stopping early once the share reaches ``until``).

    What a scheme that draws new points every batch effectively labels: it grows towards 1 (in
    expectation ``1 - (1 - f) ** draws`` for a labelled fraction ``f`` per draw), which is why
    annotations here are drawn once and kept.
    """
    rng = np.random.default_rng(seed)
    seen = np.zeros(shape[0] * shape[1], dtype=bool)
    shares = []
    labelled = 0
    for _ in range(n_draws):
        chosen = rng.choice(seen.size, size=n_points, replace=False)
        labelled += int(np.count_nonzero(~seen[chosen]))
        seen[chosen] = True
        shares.append(labelled / seen.size)
        if shares[-1] >= until:
            break
    return np.array(shares)


class SparseLandCoverDataset(SegmentationDataset):
    """Images with fixed sparse point labels: 255 everywhere but the annotated points.

    The points come from ``annotations`` (image id -> :class:`PointAnnotation`, made once and
    saved, see :func:`lc_utils.point_files.ensure_annotations`), never redrawn. The paired transforms
    crop, flip and rotate the label map with the image, which moves the points with their pixels;
    nothing is resized, so no point is lost or duplicated.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path]],
        annotations: Mapping[str, PointAnnotation],
        schema: ClassSchema = DEEPGLOBE,
        transform: Callable | None = None,
        cache_mb: float = 0,
    ) -> None:
        super().__init__(pairs, schema, transform, cache_mb=cache_mb)
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError("image ids repeat across the pairs; annotations are keyed by id")
        missing = [i for i in self.image_ids if i not in annotations]
        if missing:
            raise ValueError(f"{len(missing)} image(s) have no annotation, e.g. {missing[:3]}; "
                             "make annotations for this dataset first")
        self.annotations = {i: annotations[i] for i in self.image_ids}

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        image_id = self.image_ids[index]
        return points_to_label_map(self.annotations[image_id], shape, f"annotation of image {image_id!r}")
