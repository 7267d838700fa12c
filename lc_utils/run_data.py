"""The data a run spec describes: its folder, class schema, (image, mask) pairs and the split.

The one place a run's split is made (:func:`load_data`), so notebook 04, the training command,
the studies and every later chapter train and validate on the same images for the same spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from . import settings
from .classes import ClassSchema
from .datasets import split_items, split_pairs
from .files import ImagePair, as_pairs
from .layouts import find_pairs, find_unlabelled_images, load_schema
from .run_spec import RunSpec


class RunData(NamedTuple):
    """The data a spec describes: its folder, class schema, every (image, mask) pair and the split.
    Images without masks (``has_masks`` False) have None for a mask. Every pair is an
    :class:`~lc_utils.files.ImagePair`, its image's id with it."""

    root: Path
    schema: ClassSchema
    pairs: list[ImagePair]
    split: dict[str, list[ImagePair]]

    @property
    def has_masks(self) -> bool:
        """Whether the images come with masks (else points clicked on them are all there is)."""
        return all(mask is not None for _, mask in self.pairs)


def load_data(spec: RunSpec) -> RunData:
    """The data folder, its class schema, its pairs and the split a spec describes. A folder of
    images without masks is data too when the spec names an annotation file: every image, with
    None for its mask (``held_out="areas"`` then trains and validates on every image)."""
    root = settings.prepare_data(spec.data)
    schema = load_schema(root, spec.schema)
    try:
        pairs = find_pairs(root, image_suffix=spec.image_suffix, mask_suffix=spec.mask_suffix)
    except FileNotFoundError as error:
        images = find_unlabelled_images(root, image_suffix=spec.image_suffix, mask_suffix=spec.mask_suffix)
        if not images:
            raise
        if spec.annotations is None:
            raise FileNotFoundError(f"{error}; to train from points clicked on these images, give their "
                                    "annotation file (annotations=..., --annotations FILE)") from None
        pairs = as_pairs((image, None) for image in images)
        if spec.held_out == "areas":
            return RunData(root, schema, pairs, {"train": pairs, "val": pairs, "test": []})
    return RunData(root, schema, pairs, _split(spec, root, pairs))


def _split(spec: RunSpec, root: Path, pairs: list[ImagePair]) -> dict[str, list[ImagePair]]:
    """The course's seeded split, or ``val_images`` validation images and the rest to train on
    (the same images for the same seed whether the masks are there or set aside)."""
    if spec.val_images is None:
        return split_pairs(pairs, seed=spec.split_seed)
    if spec.val_images >= len(pairs):
        raise ValueError(f"{root}: val_images={spec.val_images} leaves nothing to train on ({len(pairs)} "
                         "images)")
    share = spec.val_images / len(pairs)
    train, val = split_items(pairs, (1 - share, share), seed=spec.split_seed)
    return {"train": train, "val": val}
