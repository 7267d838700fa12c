"""The torch datasets of (image, labels) and the seeded split every notebook shares.

Finding the images and masks of a data set is :mod:`lc_utils.layouts`; the transforms are
:mod:`lc_utils.transforms`; windows over images (validation, prediction) are :mod:`lc_utils.windows`;
the sparse dataset, which turns point annotations into label maps, is
:class:`lc_utils.sparse.SparseLandCoverDataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .classes import DEEPGLOBE, ClassSchema
from .files import ImagePair, as_pairs, read_rgb, source_id
from .masks import OnInvalid, read_mask
from .transforms import normalize_image
from .user_warnings import warn

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
"""Train / validation / test shares of :func:`split_pairs`, shared by every notebook."""


def split_pairs(pairs: Sequence[tuple[Path, Path | None]], seed: int = 0,
                fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, list[ImagePair]]:
    """``{"train", "val", "test"}`` lists of pairs: the seeded split all the notebooks share.

    Tiles cut from one image (:mod:`lc_utils.tiles`) stay together in one part: neighbouring
    tiles look alike, and a test tile whose neighbour was trained on would flatter the model.
    The parts hold the pairs given, each an :class:`~lc_utils.files.ImagePair` with its id (a
    plain tuple made one).
    """
    pairs = as_pairs(pairs)
    groups: dict[str, list[ImagePair]] = {}
    for pair in pairs:
        groups.setdefault(source_id(pair.image_id), []).append(pair)
    if len(groups) < len(fractions) <= len(pairs):
        warn(f"the {len(pairs)} tiles come from {len(groups)} image(s), too few to keep each "
             "image's tiles in one part: tiles of one image are split apart")
        groups = {str(i): [pair] for i, pair in enumerate(pairs)}
    parts = split_items(list(groups), fractions, seed)
    return {name: [pair for group in part for pair in groups[group]]
            for name, part in zip(("train", "val", "test"), parts)}


def split_items(
    items: Sequence[Any],
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
) -> list[list[Any]]:
    """Shuffle ``items`` with ``seed`` and cut them into parts of the given fractions.

    Every part gets at least one item when there are enough; the last part takes the rounding.
    The same items and seed always give the same parts.
    """
    if not items:
        raise ValueError("nothing to split")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)}")
    if len(items) < len(fractions):
        raise ValueError(f"cannot split {len(items)} item(s) into {len(fractions)} parts")
    order = np.random.default_rng(seed).permutation(len(items))
    sizes = [max(1, round(f * len(items))) for f in fractions[:-1]]
    while sum(sizes) > len(items) - 1:
        sizes[int(np.argmax(sizes))] -= 1
    bounds = np.cumsum([0, *sizes, len(items) - sum(sizes)])
    return [[items[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def read_pair(
    image_path: str | Path,
    mask_path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    on_invalid: OnInvalid = "unknown",
) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its class map, checking that their sizes agree."""
    image = read_rgb(image_path, what="image")
    class_map = read_mask(mask_path, schema, on_invalid=on_invalid)
    if image.shape[:2] != class_map.shape:
        raise ValueError(f"{mask_path}: mask is {class_map.shape[1]}x{class_map.shape[0]} but "
                         f"its image {Path(image_path).name} is {image.shape[1]}x{image.shape[0]}")
    return image, class_map


class SegmentationDataset(Dataset):
    """Base for datasets that yield (normalised image tensor, label map tensor) pairs.

    Subclasses provide :meth:`label_map` (an (H, W) uint8 array for item ``index``); images are
    read and checked here, and the same ``transform`` moves image and labels together.

    ``cache_mb``: decoded images and label maps are kept in memory up to this many megabytes
    (the first ones read; each ``DataLoader`` worker keeps its own). Every random crop of a
    2448 x 2448 original otherwise decodes the whole 18 MB image again, which on a CPU takes as
    long as a training step.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path | None]],
        schema: ClassSchema = DEEPGLOBE,
        transform: Callable | None = None,
        on_invalid: OnInvalid = "unknown",
        cache_mb: float = 0,
    ) -> None:
        if not pairs:
            raise ValueError("a dataset needs at least one (image, mask) pair")
        # images without masks (points clicked on one's own imagery) have None for a mask
        self.pairs = as_pairs(pairs)
        self.image_ids = [pair.image_id for pair in self.pairs]
        self.schema = schema
        self.transform = transform
        self.on_invalid = on_invalid
        self.cache_mb = cache_mb
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def read_class_map(self, index: int) -> np.ndarray:
        """The dense ground-truth class map of item ``index``."""
        image, mask = self.pairs[index]
        if mask is None:
            raise ValueError(f"{image}: this image has no mask; score the model on held-out points "
                             "(lc_utils.point_scores) instead")
        return read_mask(mask, self.schema, on_invalid=self.on_invalid)

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """The (H, W) uint8 labels of item ``index`` whose image has ``shape``."""
        raise NotImplementedError

    def read_item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` as read from disk: the (H, W, 3) uint8 image and its (H, W) labels."""
        if index in self._cache:
            return self._cache[index]
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path, what="image")
        labels = self.label_map(index, image.shape[:2])
        if image.shape[:2] != labels.shape:
            raise ValueError(f"{mask_path}: labels are {labels.shape[1]}x{labels.shape[0]} but "
                             f"image {image_path.name} is {image.shape[1]}x{image.shape[0]}")
        size = image.nbytes + labels.nbytes
        if self._cached_bytes + size <= self.cache_mb * 2**20:
            self._cache[index] = (image, labels)
            self._cached_bytes += size
        return image, labels

    def crop_guide(self, index: int) -> np.ndarray | None:
        """The labels that choose item ``index``'s training crop, where they are not its own (None:
        its own labels do). A crop that holds a label of the guide also holds it in the labels,
        so two datasets with one guide take the same crops for the same seed."""
        return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.read_item(index)
        image_tv = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
        labels_tv = tv_tensors.Mask(torch.from_numpy(labels))
        guide = self.crop_guide(index)
        if self.transform is not None and guide is not None:
            # the first mask places the crop (LabelledRandomCrop); every mask moves with the image
            guide_tv = tv_tensors.Mask(torch.from_numpy(guide))
            image_tv, _, labels_tv = self.transform(image_tv, guide_tv, labels_tv)
        elif self.transform is not None:
            image_tv, labels_tv = self.transform(image_tv, labels_tv)
        return normalize_image(image_tv.as_subclass(torch.Tensor)), labels_tv.as_subclass(
            torch.Tensor).long()


class DenseLandCoverDataset(SegmentationDataset):
    """Images with their full (dense) class maps decoded from the RGB masks."""

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        return self.read_class_map(index)
