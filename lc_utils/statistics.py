"""What a data set holds: images per split and their sizes, class shares, colour statistics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .classes import DEEPGLOBE, ClassSchema
from .datasets import read_pair
from .layouts import Sample
from .masks import OnInvalid, read_mask


def dataset_summary(samples: Sequence[Sample]) -> pd.DataFrame:
    """Per split: how many images, how many with masks, and the image sizes found."""
    rows = {}
    for split in sorted({s.split for s in samples}):
        chosen = [s for s in samples if s.split == split]
        sizes = set()
        for sample in chosen[:50]:  # headers only; 50 are enough to see the sizes
            with Image.open(sample.image) as image:
                sizes.add(f"{image.size[0]}x{image.size[1]}")
        labelled = sum(s.mask is not None for s in chosen)
        rows[split or "(flat)"] = {"images": len(chosen), "with masks": labelled,
                                   "sizes": ", ".join(sorted(sizes))}
    return pd.DataFrame.from_dict(rows, orient="index")


def class_statistics(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                     on_invalid: OnInvalid = "unknown") -> pd.DataFrame:
    """Per class: pixel count and share, and how many images (and what share) contain it."""
    pixels = np.zeros(schema.num_classes, dtype=np.int64)
    images = np.zeros(schema.num_classes, dtype=np.int64)
    for _, mask in pairs:
        class_map = read_mask(mask, schema, on_invalid=on_invalid)
        counts = np.bincount(class_map.ravel(), minlength=256)[: schema.num_classes]
        pixels += counts
        images += counts > 0
    return pd.DataFrame({"pixels": pixels, "pixel_share": pixels / max(1, pixels.sum()),
                         "images": images, "image_share": images / max(1, len(pairs))},
                        index=pd.Index(schema.names, name="class"))


def channel_statistics(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                       on_invalid: OnInvalid = "unknown") -> pd.DataFrame:
    """Mean and standard deviation of each RGB channel, over all pixels and per class."""
    sums = np.zeros((schema.num_classes, 3))
    squares = np.zeros((schema.num_classes, 3))
    counts = np.zeros(schema.num_classes)
    for image_path, mask_path in pairs:
        image, class_map = read_pair(image_path, mask_path, schema, on_invalid)
        flat, labels = image.reshape(-1, 3).astype(np.float64), class_map.ravel()
        for k in np.unique(labels[labels < schema.num_classes]):
            values = flat[labels == k]
            sums[k] += values.sum(0)
            squares[k] += (values ** 2).sum(0)
            counts[k] += len(values)
    rows = {"all pixels": (sums.sum(0), squares.sum(0), counts.sum())}
    rows.update({name: (sums[k], squares[k], counts[k]) for k, name in enumerate(schema.names)})
    records = {}
    for name, (s, q, n) in rows.items():
        mean = s / n if n else np.full(3, np.nan)
        std = np.sqrt(np.maximum(q / n - mean ** 2, 0)) if n else np.full(3, np.nan)
        records[name] = {"mean R": mean[0], "mean G": mean[1], "mean B": mean[2],
                         "std R": std[0], "std G": std[1], "std B": std[2]}
    return pd.DataFrame.from_dict(records, orient="index").round(1)
