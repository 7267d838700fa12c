"""More labels from the same points: superpixel propagation and self-training pseudo-labels.

A point says what one pixel is. Its neighbours of the same colour and texture are very likely
the same class: SLIC superpixels group them, and each point's class is spread over its
superpixel. The rules are those of a careful annotator: a superpixel that holds points of two
classes is not guessed (left unlabelled, or split between its points), an oversized superpixel
does not spread, no-data pixels and the unknown class are never spread, and the original points
are never overwritten. The result is a sparse label map in the course's convention (255 =
unlabelled), so the partial loss trains on it unchanged.

Self-training does the same with a trained model's confident predictions (:func:`pseudo_labels`);
this module takes their probabilities as arrays and knows no model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image
from skimage.segmentation import slic

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .datasets import SegmentationDataset
from .files import as_pairs, read_rgb
from .masks import read_mask
from .saved_files import atomic_write
from .sparse import PointAnnotation, annotatable, points_to_label_map, sample_annotations

Mixed = Literal["skip", "nearest"]


@dataclass(frozen=True)
class Propagation:
    """How points are spread over superpixels.

    - ``superpixel_area``: the mean superpixel size in pixels (SLIC is asked for
      ``height * width / superpixel_area`` segments), so that a superpixel covers the same ground
      on a 512² tile and on a 2448² original.
    - ``compactness``: SLIC's trade-off between colour and shape (higher: squarer segments).
    - ``max_area``: superpixels larger than this many pixels do not spread (None: no cap).
    - ``mixed``: a superpixel holding points of two classes is left to its points (``"skip"``) or
      split, each pixel taking the class of the nearest point in it (``"nearest"``).
    - ``nodata_rgb``: an image colour that means "no data" (e.g. ``(0, 0, 0)`` for black
      borders): such pixels belong to no superpixel and are never labelled by spreading.
    """

    superpixel_area: float = 900.0
    compactness: float = 10.0
    max_area: int | None = None
    mixed: Mixed = "skip"
    nodata_rgb: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.superpixel_area < 4:
            raise ValueError(f"superpixel_area must be at least 4 pixels, got {self.superpixel_area}")
        if self.compactness <= 0:
            raise ValueError(f"compactness must be positive, got {self.compactness}")
        if self.max_area is not None and self.max_area < 1:
            raise ValueError(f"max_area must be at least 1 pixel, got {self.max_area}")
        if self.mixed not in ("skip", "nearest"):
            raise ValueError(f"mixed must be 'skip' or 'nearest', got {self.mixed!r}")
        if self.nodata_rgb is not None:
            object.__setattr__(self, "nodata_rgb", tuple(int(v) for v in self.nodata_rgb))
            if len(self.nodata_rgb) != 3:
                raise ValueError(f"nodata_rgb must be an RGB triple, got {self.nodata_rgb}")

    def to_dict(self) -> dict[str, object]:
        """The settings as plain values (for records and cache keys)."""
        settings = asdict(self)
        if self.nodata_rgb is not None:
            settings["nodata_rgb"] = list(self.nodata_rgb)
        return settings


def superpixels(image: np.ndarray, superpixel_area: float = 900.0, compactness: float = 10.0,
                valid: np.ndarray | None = None) -> np.ndarray:
    """SLIC superpixels of an (H, W, 3) image: an (H, W) int32 map of segment ids from 1, with 0
    for the pixels outside ``valid`` (a boolean mask of usable pixels; None: all)."""
    height, width = image.shape[:2]
    n_segments = max(1, round(height * width / superpixel_area))
    if valid is None:
        segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=1)
    elif not valid.any():
        return np.zeros((height, width), dtype=np.int32)
    else:
        segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=1, mask=valid)
    return segments.astype(np.int32)


def nodata_mask(image: np.ndarray, nodata_rgb: tuple[int, int, int] | None) -> np.ndarray | None:
    """The usable pixels of ``image``: those not of colour ``nodata_rgb`` (None when no colour
    is given or no pixel has it)."""
    if nodata_rgb is None:
        return None
    valid = ~np.all(image[..., :3] == np.asarray(nodata_rgb, dtype=image.dtype), axis=-1)
    return None if valid.all() else valid


def spread_points(annotation: PointAnnotation, segments: np.ndarray, *, max_area: int | None = None,
                  mixed: Mixed = "skip", unknown_index: int | None = None) -> np.ndarray:
    """Each point's class spread over its segment of ``segments`` (0 = no segment), as an (H, W)
    uint8 label map with 255 where nothing is known.

    A segment whose points disagree (the unknown class counts as a class here: a no-data point
    makes its segment doubtful) is left to its points, or split between them with ``mixed=
    "nearest"``. Segments over ``max_area`` pixels, segment 0 and points of ``unknown_index``
    do not spread. Every original point keeps its own label.
    """
    shape = segments.shape
    point_map = points_to_label_map(annotation, shape)
    if len(annotation) == 0:
        return point_map
    n_segments = int(segments.max()) + 1
    point_segments = segments[annotation.rows, annotation.cols]
    labels = annotation.labels.astype(np.int64)
    spreadable = point_segments > 0
    if unknown_index is not None:
        spreadable &= labels != unknown_index
    # the classes each segment's points name, unknown included, decide whether it is mixed
    pairs = np.unique(np.stack([point_segments, labels]), axis=1)
    classes_per_segment = np.bincount(pairs[0], minlength=n_segments)
    pure = classes_per_segment == 1
    if max_area is not None:
        pure &= np.bincount(segments.ravel(), minlength=n_segments) <= max_area
    pure[0] = False
    lookup = np.full(n_segments, IGNORE_INDEX, dtype=np.uint8)
    chosen = spreadable & pure[point_segments]
    lookup[point_segments[chosen]] = labels[chosen]
    label_map = lookup[segments]
    if mixed == "nearest":
        _split_mixed(label_map, segments, annotation, point_segments, spreadable,
                     classes_per_segment > 1, max_area)
    label_map[annotation.rows, annotation.cols] = annotation.labels
    return label_map


def _split_mixed(label_map: np.ndarray, segments: np.ndarray, annotation: PointAnnotation,
                 point_segments: np.ndarray, spreadable: np.ndarray, mixed: np.ndarray,
                 max_area: int | None) -> None:
    """Give each pixel of a mixed segment the class of its nearest point in that segment (points
    of the unknown class take part, so that their side stays unlabelled)."""
    for segment in np.flatnonzero(mixed):
        if segment == 0:
            continue
        rows, cols = np.nonzero(segments == segment)
        if max_area is not None and len(rows) > max_area:
            continue
        inside = np.flatnonzero(point_segments == segment)
        distance = ((rows[:, None] - annotation.rows[inside][None, :]) ** 2
                    + (cols[:, None] - annotation.cols[inside][None, :]) ** 2)
        nearest = inside[np.argmin(distance, axis=1)]
        label_map[rows, cols] = np.where(spreadable[nearest], annotation.labels[nearest], IGNORE_INDEX)


def propagate(image: np.ndarray, annotation: PointAnnotation, settings: Propagation = Propagation(),
              unknown_index: int | None = DEEPGLOBE.unknown_index) -> np.ndarray:
    """The label map of ``image`` after spreading ``annotation``'s points over its superpixels."""
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"image of shape {image.shape} is not (H, W, 3)")
    annotation.check_bounds(image.shape[:2])
    segments = superpixels(image, settings.superpixel_area, settings.compactness,
                           nodata_mask(image, settings.nodata_rgb))
    return spread_points(annotation, segments, max_area=settings.max_area, mixed=settings.mixed,
                         unknown_index=unknown_index)


def majority_labels(segments: np.ndarray, class_map: np.ndarray) -> np.ndarray:
    """Every superpixel given the most common class of its labelled pixels in ``class_map`` (255
    for unlabelled, e.g. the unknown class): what spreading would give with a correct point in every
    superpixel, the limit of propagation at these superpixels. A superpixel with no labelled
    pixel stays 255."""
    if segments.shape != class_map.shape:
        raise ValueError(f"segments {segments.shape} and class map {class_map.shape} differ in size")
    labelled = class_map != IGNORE_INDEX
    counts = np.zeros((int(segments.max()) + 1, 256), np.int64)
    np.add.at(counts, (segments[labelled], class_map[labelled].astype(np.int64)), 1)
    majority = np.where(counts.any(axis=1), counts.argmax(axis=1), IGNORE_INDEX).astype(np.uint8)
    return majority[segments]


def label_quality(label_maps: Iterable[tuple[np.ndarray, np.ndarray]], schema: ClassSchema = DEEPGLOBE
                  ) -> pd.DataFrame:
    """How good spread labels are against the true class maps: per class and for all classes.

    ``label_maps`` yields (label map with 255 = unlabelled, true class map) pairs. Pixels whose
    truth is the schema's unknown class are not scored. Columns: ``true_pixels``, ``labelled``
    (pixels given the class), ``correct``, ``precision`` (share of the pixels given the class that
    are it), ``coverage`` (share of the class's true pixels that got any label) and
    ``correct_coverage`` (share that got the right one). The ``all`` row pools every scored class.
    """
    n = schema.num_classes
    true_pixels = np.zeros(n, dtype=np.int64)
    labelled = np.zeros(n, dtype=np.int64)
    correct = np.zeros(n, dtype=np.int64)
    covered = np.zeros(n, dtype=np.int64)
    for label_map, truth in label_maps:
        if label_map.shape != truth.shape:
            raise ValueError(f"label map {label_map.shape} and class map {truth.shape} differ in size")
        scored = np.ones(truth.shape, bool) if schema.unknown_index is None else truth != schema.unknown_index
        truth_scored = truth[scored].astype(np.int64)
        given = label_map[scored].astype(np.int64)
        has_label = given != IGNORE_INDEX
        true_pixels += np.bincount(truth_scored, minlength=n)[:n]
        labelled += np.bincount(given[has_label], minlength=n)[:n]
        correct += np.bincount(given[has_label & (given == truth_scored)], minlength=n)[:n]
        covered += np.bincount(truth_scored[has_label], minlength=n)[:n]
    classes = schema.known_indices()
    rows = {schema.names[c]: (true_pixels[c], labelled[c], correct[c], covered[c]) for c in classes}
    rows["all"] = tuple(int(v[classes].sum()) for v in (true_pixels, labelled, correct, covered))
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["true_pixels", "labelled", "correct", "covered"])
    with np.errstate(divide="ignore", invalid="ignore"):
        table["precision"] = table["correct"] / table["labelled"].where(table["labelled"] > 0)
        table["coverage"] = table["covered"] / table["true_pixels"].where(table["true_pixels"] > 0)
        table["correct_coverage"] = table["correct"] / table["true_pixels"].where(table["true_pixels"] > 0)
    return table.drop(columns="covered")


def quality_grid(pairs: Sequence[tuple[str | Path, str | Path]], points_per_mp: Sequence[float],
                 superpixel_areas: Sequence[float], seed: int = 0, schema: ClassSchema = DEEPGLOBE,
                 settings: Propagation = Propagation()) -> pd.DataFrame:
    """Label quality of uniform points spread over superpixels, for every density and superpixel
    size, pooled over the images of ``pairs``: a row per (points per MP, superpixel area) with the
    points' share of the pixels, the share labelled after spreading (``coverage``), the
    ``precision`` of the spread labels and how many times more pixels they label than the points.
    The points are those :func:`lc_utils.sparse.sample_annotations` draws for ``seed``."""
    images = [(pair.image_id, read_rgb(pair.image, what="image"), read_mask(pair.mask, schema))
              for pair in as_pairs(pairs)]
    annotations = {density: sample_annotations(((i, annotatable(truth, schema)) for i, _, truth in images),
                                     points_per_mp=density, seed=seed)
                   for density in points_per_mp}
    rows = []
    for area in superpixel_areas:  # the superpixels of an image do not depend on its points
        segments = [superpixels(image, area, settings.compactness, nodata_mask(image, settings.nodata_rgb))
                    for _, image, _ in images]
        for density in points_per_mp:
            spread = [spread_points(annotations[density][i], image_segments, max_area=settings.max_area,
                                    mixed=settings.mixed, unknown_index=schema.unknown_index)
                      for (i, _, _), image_segments in zip(images, segments)]
            quality = label_quality(zip(spread, (truth for _, _, truth in images)), schema).loc["all"]
            points_share = sum(len(a) for a in annotations[density].values()) / quality["true_pixels"]
            rows.append({"points_per_mp": density, "superpixel_area": area, "points": points_share,
                         "coverage": quality["coverage"], "precision": quality["precision"],
                         "times_more": quality["coverage"] / points_share})
    rows.sort(key=lambda row: (row["points_per_mp"], row["superpixel_area"]))
    return pd.DataFrame(rows)


def _cache_key(annotation: PointAnnotation, image_path: Path, settings: Propagation,
               unknown_index: int | None) -> str:
    """A digest of everything a propagated label map depends on: the points, the image file and
    the settings."""
    digest = hashlib.sha256()
    for array in (annotation.rows, annotation.cols, annotation.labels):
        digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    stat = image_path.stat()
    digest.update(json.dumps([settings.to_dict(), unknown_index, str(image_path.resolve()), stat.st_size,
                              stat.st_mtime_ns], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def ensure_propagated(
    pairs: Sequence[tuple[str | Path, str | Path]],
    annotations: Mapping[str, PointAnnotation],
    cache_dir: str | Path,
    settings: Propagation = Propagation(),
    schema: ClassSchema = DEEPGLOBE,
) -> dict[str, Path]:
    """Image id -> a PNG of its propagated label map under ``cache_dir``, made once per set of
    points, image file and settings.

    Each file's name carries a digest of what made it, so that changed points (an annotation
    edited by hand), a changed image or other settings make a new file and never reuse a stale one.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for pair in as_pairs(pairs):
        image_path, image_id = pair.image, pair.image_id
        if image_id not in annotations:
            raise ValueError(f"{image_path}: no points to propagate for image {image_id!r}")
        annotation = annotations[image_id]
        key = _cache_key(annotation, image_path, settings, schema.unknown_index)
        path = cache_dir / f"{image_id}_{key}.png"
        if not path.is_file():
            image = read_rgb(image_path, what="image")
            annotation.check_bounds(image.shape[:2], f"points of image {image_id!r}")
            save_label_map(propagate(image, annotation, settings, schema.unknown_index), path)
        paths[image_id] = path
    return paths


def read_label_map(path: str | Path) -> np.ndarray:
    """A label map saved by :func:`ensure_propagated` (or :func:`save_label_map`)."""
    with Image.open(path) as opened:
        if opened.mode != "L":
            raise ValueError(f"{path}: a label map must be a single-channel (L) PNG, got mode {opened.mode}")
        return np.asarray(opened).copy()


def save_label_map(label_map: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W) uint8 label map as a single-channel PNG, atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as file:
        Image.fromarray(np.asarray(label_map, dtype=np.uint8), mode="L").save(file, format="PNG")
    return path


class LabelMapDataset(SegmentationDataset):
    """Images with label maps (255 = unlabelled): propagated points or pseudo-labels.
    ``label_maps`` maps each image id to a PNG file (:func:`save_label_map`) or an array.
    ``crop_guides`` (image id -> (H, W) labels, e.g. the points the maps grew from) choose the
    training crops instead of the maps themselves: then a model trained on the maps and one
    trained on the guides alone see the same crops for the same seed."""

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path]],
        label_maps: Mapping[str, str | Path | np.ndarray],
        schema: ClassSchema = DEEPGLOBE,
        transform: Callable | None = None,
        cache_mb: float = 0,
        crop_guides: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(pairs, schema, transform, cache_mb=cache_mb)
        for what, maps in (("label map", label_maps), ("crop guide", crop_guides or {})):
            missing = [i for i in self.image_ids if i not in maps]
            if missing and (what == "label map" or crop_guides is not None):
                raise ValueError(f"{len(missing)} image(s) have no {what}, e.g. {missing[:3]}")
        self.label_maps = {i: label_maps[i] if isinstance(label_maps[i], np.ndarray) else Path(label_maps[i])
                           for i in self.image_ids}
        self.crop_guides = None if crop_guides is None else {i: crop_guides[i] for i in self.image_ids}

    def crop_guide(self, index: int) -> np.ndarray | None:
        return None if self.crop_guides is None else self.crop_guides[self.image_ids[index]]

    def _read(self, source: Path | np.ndarray) -> np.ndarray:
        return source if isinstance(source, np.ndarray) else read_label_map(source)

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        source = self.label_maps[self.image_ids[index]]
        label_map = self._read(source)
        path = source if isinstance(source, Path) else f"label map of image {self.image_ids[index]!r}"
        if label_map.shape != shape:
            raise ValueError(f"{path}: label map is {label_map.shape[1]}x{label_map.shape[0]} but its image "
                             f"is {shape[1]}x{shape[0]}")
        bad = (label_map != IGNORE_INDEX) & (label_map >= self.schema.num_classes)
        if bad.any():
            raise ValueError(f"{path}: label {int(label_map[bad][0])} is not a class "
                             f"(0..{self.schema.num_classes - 1} or {IGNORE_INDEX})")
        return label_map

    def labelled_fraction(self) -> float:
        """Share of all the images' pixels that carry a label."""
        labelled = total = 0
        for source in self.label_maps.values():
            label_map = self._read(source)
            labelled += int(np.count_nonzero(label_map != IGNORE_INDEX))
            total += label_map.size
        return labelled / total


def pseudo_label_thresholds(predictions: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int,
                            threshold: float = 0.9, class_share: float | None = 0.2,
                            bins: int = 1000) -> np.ndarray:
    """One confidence threshold per class for :func:`pseudo_labels`, over all images at once.

    A pixel predicted as class c is kept when its confidence reaches ``threshold``, or when it is
    among the ``class_share`` most confident of all pixels predicted c (class-balanced
    self-training): rare classes are predicted with less confidence, and a single threshold
    would drown them in the common ones. ``predictions`` yields (predicted class map, confidence
    map) pairs: a model's argmax and its softmax probability.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if class_share is not None and not 0 < class_share <= 1:
        raise ValueError(f"class_share must be in (0, 1], got {class_share}")
    histogram = np.zeros((num_classes, bins), dtype=np.int64)
    for predicted, confidence in predictions:
        index = np.minimum((np.asarray(confidence, np.float64) * bins).astype(np.int64), bins - 1)
        np.add.at(histogram, (predicted.ravel().astype(np.int64), index.ravel()), 1)
    thresholds = np.full(num_classes, float(threshold))
    if class_share is None:
        return thresholds
    for c, counts in enumerate(histogram):
        total = counts.sum()
        if total == 0:
            continue
        # the lowest bin edge that keeps at least class_share of the class's pixels above it
        from_top = np.cumsum(counts[::-1])
        keep_bins = int(np.searchsorted(from_top, class_share * total)) + 1
        thresholds[c] = min(threshold, (bins - keep_bins) / bins)
    return thresholds


def pseudo_labels(predicted: np.ndarray, confidence: np.ndarray, base_labels: np.ndarray,
                  thresholds: np.ndarray | float,
                  unknown_index: int | None = DEEPGLOBE.unknown_index) -> np.ndarray:
    """A model's confident predictions added to ``base_labels`` (points or propagated labels,
    255 = unlabelled) where those hold no label: the base labels are never overwritten, and the
    unknown class is never pseudo-labelled.

    ``predicted`` and ``confidence``: the model's (H, W) argmax and its probability;
    ``thresholds``: one per class (see :func:`pseudo_label_thresholds`) or one for all.
    """
    if predicted.shape != base_labels.shape or confidence.shape != base_labels.shape:
        raise ValueError(f"predictions {predicted.shape} / {confidence.shape} and labels {base_labels.shape} "
                         "differ in size")
    per_class = np.asarray(thresholds, dtype=np.float64)
    if per_class.ndim == 0:
        per_class = np.full(int(predicted.max(initial=0)) + 1, float(per_class))
    keep = (confidence >= per_class[predicted]) & (base_labels == IGNORE_INDEX)
    if unknown_index is not None:
        keep &= predicted != unknown_index
    return np.where(keep, predicted, base_labels).astype(np.uint8)
