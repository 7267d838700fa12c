"""Scores of a model from held-out labelled points, each with an interval: no masks needed.

Someone who clicked points on their own images has no masks to score against, but points held out
of training are an unbiased sample of the pixels they were drawn from. A few hundred points are a
small sample, though, so every score here comes with an interval: Wilson intervals for the
proportions (accuracy, per-class precision and recall) and a bootstrap for the mean IoU, which
resamples whole images because the points of one image share its light, season and land use, so
their errors go together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
from torch import nn

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .files import as_pairs, read_rgb
from .inference import predict_tiled
from .metrics import ConfusionMatrix
from .sparse import PointAnnotation
from .user_warnings import warn
from .windows import DEFAULT_OVERLAP

POINT_COLUMNS = ("image_id", "row", "col", "label", "predicted")
"""Columns of :func:`predict_points`' table, one row per point."""


def wilson_interval(successes: int | np.ndarray, trials: int | np.ndarray, confidence: float = 0.95
                    ) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Wilson score interval (low, high) of the proportion ``successes / trials``, elementwise.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or all
    successes (0 of 20 gives 0 to 0.16). NaN where ``trials`` is 0; floats for scalar input.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must be between 0 and trials")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        shrink = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / shrink
        half = z / shrink * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    empty = n == 0
    low = np.where(empty, np.nan, np.clip(centre - half, 0.0, 1.0))
    high = np.where(empty, np.nan, np.clip(centre + half, 0.0, 1.0))
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def points_at(prediction: np.ndarray, annotation: PointAnnotation, source: str = "annotation",
              shape: tuple[int, int] | None = None) -> np.ndarray:
    """The predicted classes of an (H, W) integer class map at the annotation's points, in its order.

    Errors name ``source`` (e.g. the image): a map of another size than the image's ``shape``
    (when known: an upscaled map would be read at the wrong pixels), a map of floats (a
    probability map would become class 0 everywhere), a point outside the map.
    """
    prediction = np.asarray(prediction)
    if prediction.ndim != 2:
        raise ValueError(f"{source}: expected an (H, W) class map, got shape {prediction.shape}")
    if not np.issubdtype(prediction.dtype, np.integer):
        raise ValueError(f"{source}: the prediction holds {prediction.dtype} values, not integer classes "
                         "(scores or probabilities? take their argmax over the classes first)")
    if shape is not None and prediction.shape != tuple(shape):
        height, width = prediction.shape
        raise ValueError(f"{source}: the prediction is {width}x{height} but the image is "
                         f"{shape[1]}x{shape[0]}; predict at the image's own size "
                         "(lc_utils.inference.predict_tiled does)")
    annotation.check_bounds(prediction.shape, source)
    return prediction[annotation.rows, annotation.cols]


def predict_points(
    model: nn.Module,
    images: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    annotations: Mapping[str, PointAnnotation],
    *,
    tile_size: int = 512,
    overlap: float = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """One row per annotated point: ``image_id``, ``row``, ``col``, ``label`` (the truth) and
    ``predicted``, the class :func:`lc_utils.inference.predict_tiled` gives that pixel.

    ``images``: image id -> (H, W, 3) uint8 array, or (id, image) pairs (a generator reads large
    images one at a time). Every image needs an annotation; annotations of images not given are
    not scored.
    """
    pairs = images.items() if isinstance(images, Mapping) else images
    predictions, shapes = {}, {}
    for image_id, image in pairs:
        if image_id not in annotations:
            raise ValueError(f"image {image_id!r} has no point annotation")
        predictions[image_id] = predict_tiled(model, image, tile_size=tile_size, overlap=overlap,
                                              device=device)
        shapes[image_id] = np.shape(image)[:2]
    return point_table(predictions, annotations, image_shapes=shapes)


def point_table(predictions: Mapping[str, np.ndarray], annotations: Mapping[str, PointAnnotation], *,
                image_shapes: Mapping[str, tuple[int, int]] | None = None, skip_unannotated: bool = False
                ) -> pd.DataFrame:
    """One row per point of the images in ``predictions`` (image id -> predicted (H, W) integer
    class map): ``image_id``, ``row``, ``col``, ``label`` and ``predicted``, what
    :func:`score_points` reads.

    Each map must have its image's size where ``image_shapes`` (image id -> (H, W)) gives it. A
    prediction for an image without points is an error naming the images (a wrong split or the
    wrong point file, most often), unless ``skip_unannotated`` leaves them out.
    """
    unannotated = [image_id for image_id in predictions if image_id not in annotations]
    if unannotated and not skip_unannotated:
        shown = ", ".join(repr(str(i)) for i in unannotated[:5])
        raise ValueError(f"prediction(s) for image(s) without points: {shown}"
                         f"{f' and {len(unannotated) - 5} more' if len(unannotated) > 5 else ''}; score the "
                         "images that have points, or pass skip_unannotated=True to leave these out")
    shapes = image_shapes or {}
    tables = [pd.DataFrame({
        "image_id": np.full(len(annotations[image_id]), str(image_id), dtype=object),
        "row": annotations[image_id].rows, "col": annotations[image_id].cols,
        "label": annotations[image_id].labels.astype(np.int64),
        "predicted": points_at(prediction, annotations[image_id], source=f"image {str(image_id)!r}",
                               shape=shapes.get(image_id)).astype(np.int64)})
        for image_id, prediction in predictions.items() if image_id in annotations]
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype=object if name == "image_id" else np.int64)
                             for name in POINT_COLUMNS})
    return pd.concat(tables, ignore_index=True)


def _mean_iou(counts: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mean IoU over the ``keep`` classes of (..., C, C) confusion matrices, skipping classes
    absent from both truth and prediction: :meth:`ConfusionMatrix.summary`'s ``mean_iou`` for
    many matrices at once."""
    counts = counts.astype(np.float64)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    union = counts.sum(axis=-1) + counts.sum(axis=-2) - tp
    tp, union = tp[..., keep], union[..., keep]
    present = union > 0
    n_present = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou_sum = np.where(present, tp / np.where(present, union, 1.0), 0.0).sum(axis=-1)
        return np.where(n_present > 0, iou_sum / n_present, np.nan)


@dataclass(frozen=True, eq=False)
class PointScores:
    """A model's scores on held-out points, with intervals at ``confidence``
    (from :func:`score_points`).

    - ``accuracy``, ``accuracy_interval``: share of points predicted right, Wilson interval;
    - ``per_class``: per known class, ``points`` (true points), ``precision``, ``recall`` with
      Wilson intervals (``_low``, ``_high``) and ``iou``;
    - ``miou``, ``miou_interval``: mean IoU over the known classes present in the truth or the
      predictions, percentile bootstrap interval from ``n_boot`` resamples of whole ``group``
      values (or of points where ``group`` is None);
    - ``confusion``: the point confusion matrix (unknown points dropped);
    - ``miou_note``: why the mIoU has no interval where the bootstrap cannot give one (a single
      image or point, or every resample the same), else None.
    """

    n_points: int
    n_groups: int | None
    accuracy: float
    accuracy_interval: tuple[float, float]
    miou: float
    miou_interval: tuple[float, float]
    per_class: pd.DataFrame = field(repr=False)
    confusion: ConfusionMatrix = field(repr=False)
    confidence: float = 0.95
    n_boot: int = 1000
    group: str | None = "image_id"
    left_out: str | None = None
    miou_note: str | None = None

    def summary(self) -> dict[str, float | int | str | None]:
        """The headline numbers as a flat dict (e.g. a row of a results table)."""
        return {
            "n_points": self.n_points, "n_groups": self.n_groups,
            "accuracy": self.accuracy,
            "accuracy_low": self.accuracy_interval[0], "accuracy_high": self.accuracy_interval[1],
            "mean_iou": self.miou,
            "mean_iou_low": self.miou_interval[0], "mean_iou_high": self.miou_interval[1],
            "mean_iou_note": self.miou_note,
            "confidence": self.confidence, "n_boot": self.n_boot, "group": self.group,
            "left_out": self.left_out,
        }

    def table(self, digits: int = 2) -> pd.DataFrame:
        """``per_class`` as a notebook column shows it: points, precision and recall each with its
        interval in brackets, IoU."""
        def with_interval(name: str) -> pd.Series:
            rows = self.per_class
            return pd.Series([f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if pd.notna(v) else "-"
                              for v, lo, hi in zip(rows[name], rows[f"{name}_low"], rows[f"{name}_high"])],
                             index=rows.index)

        return pd.DataFrame({"points": self.per_class["points"], "precision": with_interval("precision"),
                             "recall": with_interval("recall"), "iou": self.per_class["iou"].round(digits)})

    def describe(self) -> str:
        """One sentence: both scores with their intervals, the sample, and what the mean leaves out."""
        if self.group is None:
            sample = f"{self.n_points} points (resampled one by one)"
        elif self.group == "image_id":
            sample = f"{self.n_points} points on {self.n_groups} image{'s' * (self.n_groups != 1)}"
        else:
            sample = f"{self.n_points} points in {self.n_groups} groups of {self.group!r}"
        note = f"{self.confidence:.0%} intervals"
        if self.left_out:
            note += f"; {self.left_out!r} points dropped and left out of the mean"
        a_low, a_high = self.accuracy_interval
        m_low, m_high = self.miou_interval
        if self.miou_note:
            miou = self.miou_note
        elif np.isnan(m_low):
            miou = f"no interval: n_boot={self.n_boot}"
        else:
            miou = f"{m_low:.2f}-{m_high:.2f}"
        return (f"point accuracy {self.accuracy:.2f} ({a_low:.2f}-{a_high:.2f}), "
                f"point mIoU {self.miou:.2f} ({miou}) from {sample} ({note})")

    def __str__(self) -> str:
        return self.describe()


def _check_points(points: pd.DataFrame, schema: ClassSchema, group: str | None) -> None:
    needed = ["label", "predicted"] + ([group] if group is not None else [])
    missing = [name for name in needed if name not in points.columns]
    if missing:
        raise ValueError(f"points lack the column(s) {missing} (they have {list(points.columns)})")
    c = schema.num_classes
    for name in ("label", "predicted"):
        values = points[name].to_numpy()
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"column {name!r} must hold integer classes, got {values.dtype}")
    labels, predicted = points["label"].to_numpy(), points["predicted"].to_numpy()
    bad = (labels < 0) | ((labels >= c) & (labels != IGNORE_INDEX))
    if bad.any():
        raise ValueError(f"labels outside 0..{c - 1} (and {IGNORE_INDEX}, unlabelled): "
                         f"{_where(points, labels, bad, group)}")
    bad = (predicted < 0) | (predicted >= c)
    if bad.any():
        raise ValueError(f"predicted classes outside 0..{c - 1}: {_where(points, predicted, bad, group)}")
    if group is not None and points[group].isna().any():
        raise ValueError(f"column {group!r} has missing values: every point needs its group")


def _where(points: pd.DataFrame, values: np.ndarray, bad: np.ndarray, group: str | None) -> str:
    """The wrong values and where they are, e.g. "255 on image(s) '0007' (3 points)"."""
    n = int(bad.sum())
    shown = f"{', '.join(map(str, np.unique(values[bad])[:5]))}"
    column = group if group is not None else ("image_id" if "image_id" in points.columns else None)
    if column is None:
        return f"{shown} ({n} point{'s' * (n != 1)}, the first in row {int(np.argmax(bad))})"
    where = pd.unique(points[column].to_numpy()[bad])
    names = ", ".join(repr(str(i)) for i in where[:5])
    names += f" and {len(where) - 5} more" if len(where) > 5 else ""
    kind = "image(s)" if column == "image_id" else f"{column!r} value(s)"
    return f"{shown} on {kind} {names} ({n} point{'s' * (n != 1)})"


def score_points(
    points: pd.DataFrame,
    schema: ClassSchema = DEEPGLOBE,
    *,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    group: str | None = "image_id",
) -> PointScores:
    """Accuracy, per-class precision, recall and IoU, and mean IoU of ``points`` (columns
    ``label``, ``predicted`` and ``group``, e.g. from :func:`predict_points`), with intervals.

    Points labelled with the schema's unknown class (or 255, unlabelled) are dropped, and the
    mean leaves the unknown class out, like the course's headline mIoU. Dropping them makes the
    point mIoU estimate the mIoU with unknown pixels unlabelled: the pixel headline also counts
    predictions made on unknown pixels as false positives, so it can be a little lower.

    The mIoU interval is a percentile bootstrap that resamples whole groups (images) with
    replacement: points of one image err together, and resampling points alone would give too
    narrow an interval. With ``group=None`` points are resampled one by one. A handful of
    images gives a rough interval whatever the number of points. ``seed`` makes it repeatable;
    ``n_boot=0`` skips it (NaN interval). Where the bootstrap cannot tell how far off the mIoU may
    be (one image, one point, or every resample the same) the interval is NaN, never zero wide:
    ``miou_note`` and a warning say why. Accuracy's Wilson interval treats the points as
    independent.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be 0 or more, got {n_boot}")
    _check_points(points, schema, group)
    labels = points["label"].to_numpy().astype(np.int64)
    unknown = schema.unknown_index
    kept = labels != IGNORE_INDEX
    if unknown is not None:
        kept &= labels != unknown
    if not kept.any():
        raise ValueError("no point has a known class: nothing to score")
    labels = labels[kept]
    predicted = points["predicted"].to_numpy().astype(np.int64)[kept]
    c = schema.num_classes
    cells = labels * c + predicted

    confusion = ConfusionMatrix.from_counts(np.bincount(cells, minlength=c * c).reshape(c, c), schema=schema)
    matrix = confusion.matrix
    n_points = int(matrix.sum())
    correct = int(np.trace(matrix))
    summary = confusion.summary()

    known = np.array([i for i in range(c) if i != unknown])
    tp = np.diag(matrix)[known]
    true_points = matrix.sum(axis=1)[known]
    predicted_points = matrix.sum(axis=0)[known]
    precision_low, precision_high = wilson_interval(tp, predicted_points, confidence)
    recall_low, recall_high = wilson_interval(tp, true_points, confidence)
    scores = confusion.per_class().iloc[known]
    per_class = pd.DataFrame({
        "points": true_points.astype(np.int64),
        "precision": scores["precision"].to_numpy(), "precision_low": precision_low,
        "precision_high": precision_high,
        "recall": scores["recall"].to_numpy(), "recall_low": recall_low, "recall_high": recall_high,
        "iou": scores["iou"].to_numpy(),
    }, index=scores.index)

    n_groups = None
    rng = np.random.default_rng(seed)
    if group is not None:
        codes, uniques = pd.factorize(points[group].to_numpy()[kept])
        n_groups = len(uniques)
    miou_interval, miou_note = (float("nan"), float("nan")), None
    resampled = n_points if group is None else n_groups
    if n_boot and resampled < 2:
        unit = "point" if group is None else "image" if group == "image_id" else f"group of {group!r}"
        miou_note = f"no interval from 1 {unit}: the bootstrap needs 2 or more to resample"
    elif n_boot:
        if group is None:
            # Drawing n points with replacement is drawing n times from the cells of the confusion
            # matrix in proportion to their counts: one multinomial per resample, not n indices.
            boot_counts = rng.multinomial(n_points, matrix.ravel() / n_points, size=n_boot)
        else:
            per_group = np.bincount(codes * (c * c) + cells, minlength=n_groups * c * c)
            per_group = per_group.reshape(n_groups, c * c)
            draws = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
            # float64 holds these counts exactly and lets the product run in BLAS
            boot_counts = draws.astype(np.float64) @ per_group.astype(np.float64)
        boot = _mean_iou(boot_counts.reshape(n_boot, c, c), known)
        alpha = 1 - confidence
        if not np.isnan(boot).all():
            low, high = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            if low < high:
                miou_interval = (float(low), float(high))
            else:  # a zero-width interval would claim a certainty a few points cannot give
                miou_note = ("no interval: every resample gave the same mIoU, too few points or images to "
                             "tell how far off it may be")
    if miou_note:
        warn(f"point mIoU: {miou_note}")

    accuracy_low, accuracy_high = wilson_interval(correct, n_points, confidence)
    return PointScores(
        n_points=n_points, n_groups=n_groups,
        accuracy=correct / n_points, accuracy_interval=(float(accuracy_low), float(accuracy_high)),
        miou=summary["mean_iou"], miou_interval=miou_interval,
        per_class=per_class, confusion=confusion, confidence=confidence, n_boot=n_boot, group=group,
        left_out=schema.names[unknown] if unknown is not None else None, miou_note=miou_note,
    )


def point_validator(pairs: Sequence[tuple[str | Path, str | Path | None]],
                    annotations: Mapping[str, PointAnnotation], schema: ClassSchema = DEEPGLOBE, *,
                    tile_size: int = 512, overlap: float = DEFAULT_OVERLAP
                    ) -> Callable[[nn.Module], dict[str, float]]:
    """The validation :func:`lc_utils.training.fit` calls after every epoch where there are no
    masks: the model scored on the held-out points of the validation ``pairs`` (those with points
    in ``annotations``; a mask, where there is one, is not read), as ``{"val_mean_iou",
    "val_pixel_accuracy"}``: point mIoU and point accuracy (no intervals: they choose the best
    epoch; :func:`score_points` gives them)."""
    pairs = as_pairs(pairs)
    arrays = {pair.image_id: read_rgb(pair.image, what="image") for pair in pairs
              if pair.image_id in annotations}
    if not arrays:
        raise ValueError("no held-out point on any validation image: nothing to validate on")

    def validate(model: nn.Module) -> dict[str, float]:
        points = predict_points(model, arrays, annotations, tile_size=tile_size, overlap=overlap)
        scores = score_points(points, schema, n_boot=0)
        return {"val_mean_iou": scores.miou, "val_pixel_accuracy": scores.accuracy}

    return validate


def point_sampling_error(class_maps: Iterable[tuple[np.ndarray, np.ndarray]], n_points: Sequence[int],
                         schema: ClassSchema = DEEPGLOBE, *, repeats: int = 200, tolerance: float = 0.03,
                         confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """How far a point mIoU strays from the pixel mIoU of the same predictions when only ``n``
    uniform points are scored, for every ``n`` of ``n_points``: how many held-out points a score
    needs. ``class_maps`` yields (true class map, predicted class map) pairs of the validation
    images; pixels of the unknown class are left out, as :func:`score_points` leaves its points out.

    Columns: ``n_points``, ``pixel_miou`` (all scored pixels), ``error_low`` and ``error_high``
    (the central ``confidence`` range of point mIoU minus pixel mIoU over ``repeats`` draws),
    ``error_sd`` and ``within`` (share of draws within ``tolerance`` of the pixel mIoU)."""
    c = schema.num_classes
    cells = []
    for truth, predicted in class_maps:
        if truth.shape != predicted.shape:
            raise ValueError(f"true {truth.shape} and predicted {predicted.shape} class maps differ in size")
        scored = truth != (IGNORE_INDEX if schema.unknown_index is None else schema.unknown_index)
        cells.append(truth[scored].astype(np.int64) * c + predicted[scored].astype(np.int64))
    cells = np.concatenate(cells) if cells else np.zeros(0, np.int64)
    if not len(cells):
        raise ValueError("no scored pixel: every pixel is of the unknown class")
    known = np.array([k for k in range(c) if k != schema.unknown_index])
    pixel_miou = float(_mean_iou(np.bincount(cells, minlength=c * c).reshape(c, c), known))
    rng = np.random.default_rng(seed)
    rows = []
    for n in n_points:
        drawn = cells[rng.integers(0, len(cells), (repeats, n))]
        counts = np.zeros((repeats, c * c), np.int64)
        np.add.at(counts, (np.repeat(np.arange(repeats), n), drawn.ravel()), 1)
        errors = _mean_iou(counts.reshape(repeats, c, c), known) - pixel_miou
        low, high = np.percentile(errors, [50 * (1 - confidence), 50 * (1 + confidence)])
        rows.append({"n_points": int(n), "pixel_miou": pixel_miou, "error_low": float(low),
                     "error_high": float(high), "error_sd": float(errors.std(ddof=1)),
                     "within": float(np.mean(np.abs(errors) <= tolerance))})
    return pd.DataFrame(rows)


def points_needed(sampling: pd.DataFrame, share: float = 0.95) -> int | None:
    """The fewest held-out points whose point mIoU fell within the tolerance in ``share`` of the
    draws of :func:`point_sampling_error` (None: more than it tried)."""
    enough = sampling.loc[sampling["within"] >= share, "n_points"]
    return int(enough.min()) if len(enough) else None
