"""A streaming confusion matrix and the per-class scores drawn from it.

Scores come from one confusion matrix accumulated over the whole test set, never from averaging
per-image scores (which would weigh a nearly empty image like a full one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .masks import read_mask
from .statistics import class_statistics

_DEFAULT = object()


class ConfusionMatrix:
    """Counts of (true class, predicted class) over every labelled pixel seen.

    ``schema`` names the classes and says which one is "unknown"; by default it is
    :data:`DEEPGLOBE` when ``num_classes`` is 7, so means leave out "unknown" as the DeepGlobe
    challenge did. Pixels whose truth is ``ignore_index`` are not counted. Rows are the truth,
    columns the prediction. Accepts torch tensors (on any device) and NumPy arrays.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 schema: ClassSchema | None | object = _DEFAULT) -> None:
        if schema is _DEFAULT:
            schema = DEEPGLOBE if num_classes == DEEPGLOBE.num_classes else None
        if schema is not None and schema.num_classes != num_classes:  # type: ignore[union-attr]
            raise ValueError(f"schema has {schema.num_classes} classes, not {num_classes}")  # type: ignore[union-attr]
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.schema: ClassSchema | None = schema  # type: ignore[assignment]
        self._counts: torch.Tensor | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.schema.names) if self.schema else [f"class {i}" for i in range(self.num_classes)]

    @property
    def default_exclude(self) -> tuple[int, ...]:
        """Classes left out of the means by default: the schema's unknown class, if any."""
        unknown = self.schema.unknown_index if self.schema else None
        return () if unknown is None else (unknown,)

    def reset(self) -> None:
        self._counts = None

    @classmethod
    def from_counts(cls, counts: torch.Tensor | np.ndarray, ignore_index: int = IGNORE_INDEX,
                    schema: ClassSchema | None | object = _DEFAULT) -> ConfusionMatrix:
        """A confusion matrix holding ``counts`` (C, C), rows = truth, columns = prediction."""
        counts = torch.as_tensor(np.asarray(counts), dtype=torch.int64)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"counts must be a square (C, C) matrix, got {tuple(counts.shape)}")
        confusion = cls(counts.shape[0], ignore_index, schema)
        confusion._counts = counts.clone()
        return confusion

    def update(self, prediction: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch: class maps of the same shape (any number of dimensions)."""
        prediction = torch.as_tensor(prediction)
        target = torch.as_tensor(target, device=prediction.device)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        prediction, target = prediction.reshape(-1).long(), target.reshape(-1).long()
        keep = target != self.ignore_index
        prediction, target = prediction[keep], target[keep]
        c = self.num_classes
        if target.numel() and (target.min() < 0 or target.max() >= c):
            raise ValueError(f"target holds labels outside 0..{c - 1} and {self.ignore_index}")
        if prediction.numel() and (prediction.min() < 0 or prediction.max() >= c):
            raise ValueError(f"prediction holds classes outside 0..{c - 1}")
        counts = torch.bincount(target * c + prediction, minlength=c * c).reshape(c, c)
        self._counts = counts if self._counts is None else self._counts + counts.to(self._counts.device)

    def update_many(self, pairs: Iterable[tuple[torch.Tensor | np.ndarray, ...]]) -> None:
        """Add each (prediction, target) pair in turn."""
        for prediction, target in pairs:
            self.update(prediction, target)

    @property
    def matrix(self) -> np.ndarray:
        """(C, C) int64 counts, rows = truth, columns = prediction."""
        if self._counts is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self._counts.cpu().numpy().astype(np.int64)

    def per_class(self) -> pd.DataFrame:
        """IoU, precision, recall, F1 and support (true pixels) per class.

        A score whose denominator is zero is NaN, not 0 or 1: a class absent from both truth and
        prediction has NaN IoU and F1; a class never predicted has NaN precision; a class absent
        from the truth has NaN recall. Means skip NaN.
        """
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        fp = m.sum(axis=0) - tp
        fn = m.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            table = pd.DataFrame({
                "iou": tp / (tp + fp + fn),
                "precision": tp / (tp + fp),
                "recall": tp / (tp + fn),
                "f1": 2 * tp / (2 * tp + fp + fn),
                "support": (tp + fn).astype(np.int64),
            }, index=pd.Index(self.class_names, name="class"))
        return table

    def summary(self, exclude: Iterable[int] | None = None) -> dict[str, float]:
        """Overall pixel accuracy (all labelled pixels), mean IoU and macro F1 over the classes
        not in ``exclude`` (default: :attr:`default_exclude`), skipping NaN classes."""
        exclude = set(self.default_exclude if exclude is None else exclude)
        keep = [i for i in range(self.num_classes) if i not in exclude]
        table = self.per_class().iloc[keep]
        m = self.matrix
        total = m.sum()
        return {
            "pixel_accuracy": float(np.trace(m) / total) if total else float("nan"),
            "mean_iou": float(np.nanmean(table["iou"])) if table["iou"].notna().any() else float("nan"),
            "macro_f1": float(np.nanmean(table["f1"])) if table["f1"].notna().any() else float("nan"),
            "labelled_pixels": int(total),
        }

    def summary_table(self) -> pd.DataFrame:
        """:meth:`summary` twice, as rows: the headline (the unknown class left out, where the
        schema has one) and over every class."""
        unknown = self.default_exclude
        headline = f"headline ({self.class_names[unknown[0]]} left out)" if unknown else "headline"
        return pd.DataFrame({headline: self.summary(),
                             f"all {self.num_classes} classes": self.summary(exclude=())}).T

    def normalized(self) -> np.ndarray:
        """Rows divided by their sums (the recall view); rows with no pixels are NaN."""
        m = self.matrix.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return m / m.sum(axis=1, keepdims=True)


def majority_baseline(train_pairs: Sequence[tuple[Path, Path]],
                      val: Sequence[tuple[Path, Path]] | Dataset,
                      schema: ClassSchema = DEEPGLOBE) -> dict[str, float]:
    """Scores of predicting the training set's most frequent class everywhere: the bar to beat.

    ``val`` is a list of (image, mask) pairs, scored whole, or a dataset of (image, labels), e.g.
    the fixed validation windows (:class:`lc_utils.windows.WindowDataset`) that training scores."""
    majority = int(class_statistics(train_pairs, schema)["pixels"].to_numpy().argmax())
    confusion = ConfusionMatrix(schema.num_classes, schema=schema)
    if isinstance(val, Dataset):
        truths = (np.asarray(val[i][1]) for i in range(len(val)))  # type: ignore[arg-type]
    else:
        truths = (read_mask(mask, schema) for _, mask in val)
    for truth in truths:
        confusion.update(np.full_like(truth, majority), truth)
    return {"class": schema.names[majority], **confusion.summary()}
