"""The labels a run spec trains and validates on: its annotation file at its one path (made once,
or the spec's own file), the training images' points, and for images without masks the points
held out to validate on; each checked against the images when the run is built, not when an image
is first read."""

from __future__ import annotations

from pathlib import Path

import torch

from . import distributed, settings
from .files import image_id_of, image_shapes
from .layouts import find_unlabelled_images
from .point_files import annotation_filename, ensure_annotations, load_annotations
from .run_data import RunData
from .run_spec import DENSE, RunSpec
from .sparse import PointAnnotation, hold_out_areas
from .user_warnings import warn

HELD_OUT_BLOCK = 64
"""The side in pixels of the squares whose points validate a run with ``held_out="areas"``."""


def annotation_file(spec: RunSpec, root: str | Path, runs_dir: str | Path | None = None) -> Path | None:
    """Where a spec's point annotation lives: its ``annotations`` file, else the one path
    (:func:`lc_utils.settings.annotation_path`) of the file its strategy, budget and seed make;
    None for dense labels."""
    if spec.strategy == DENSE:
        return None
    if spec.annotations is not None:
        return Path(spec.annotations)
    name = annotation_filename(spec.strategy, n_points=spec.points_per_image,
                               points_per_mp=spec.points_per_mp, seed=spec.seed)
    return settings.annotation_path(root, name, runs_dir)


def propagated_dir(annotation: Path, root: str | Path, runs_dir: str | Path | None = None) -> Path:
    """Where the propagated label maps of an annotation file are cached: beside the course's
    annotations (never beside a file of the user's), in a folder named after the file."""
    return settings.annotation_path(root, f"propagated_{annotation.stem}", runs_dir)


def training_points(spec: RunSpec, path: Path, data: RunData) -> dict[str, PointAnnotation]:
    """The points of the training images: from the spec's file, or from the annotation of every
    image of the data set at ``path`` (made once; each image's points depend on the seed and the
    image alone, so one file serves every split). Every point is checked against its image's size
    and every image id against the data folder now."""
    shapes = image_shapes(data.pairs)
    if spec.annotations is not None:
        annotations = _load_checked(spec, path, data, shapes)
    else:
        if distributed.is_main():  # one process writes the file, the others read it
            annotations = ensure_annotations(path, data.pairs, n_points=spec.points_per_image,
                                             points_per_mp=spec.points_per_mp, strategy=spec.strategy,
                                             seed=spec.seed, schema=data.schema)
        if distributed.active():
            torch.distributed.barrier()
        if not distributed.is_main():
            annotations = _load_checked(spec, path, data, shapes)
    train_ids = [pair.image_id for pair in data.split["train"]]
    missing = [i for i in train_ids if i not in annotations]
    if missing:
        raise ValueError(f"{path}: no points for {len(missing)} training images (e.g. {missing[:3]})")
    return {i: annotations[i] for i in train_ids}


def _load_checked(spec: RunSpec, path: Path, data: RunData, shapes: dict[str, tuple[int, int]]
                  ) -> dict[str, PointAnnotation]:
    """The file's points, every image id among the data's images and every point inside its image;
    points on images of the folder that have no mask are named as such."""
    without_masks = find_unlabelled_images(data.root, image_suffix=spec.image_suffix,
                                           mask_suffix=spec.mask_suffix)
    return load_annotations(path, data.schema, shapes,
                            images_without_masks={image_id_of(image) for image in without_masks})


def points_without_masks(spec: RunSpec, path: Path, data: RunData
                         ) -> tuple[RunData, dict[str, PointAnnotation], dict[str, PointAnnotation]]:
    """For images without masks: the training and the held-out points of the spec's annotation
    file, and the split narrowed to the images that have some (a person clicks on some images
    before others). Points that would be neither trained on nor scored (on the split's test
    images) are named in a warning; held-out points that no score counts (all on the unknown
    class) are an error now rather than after the first epoch."""
    annotations = load_annotations(path, data.schema, image_shapes(data.pairs))
    if spec.held_out == "areas":
        train, held = hold_out_areas(annotations, image_shapes(data.pairs), spec.held_out_share,
                                     HELD_OUT_BLOCK, seed=spec.split_seed)
    else:
        ids = {part: {pair.image_id for pair in pairs} for part, pairs in data.split.items()}
        train = {i: a for i, a in annotations.items() if i in ids["train"]}
        held = {i: a for i, a in annotations.items() if i in ids["val"]}
        unused = {i: a for i, a in annotations.items() if i in ids.get("test", ())}
        if unused:
            warn(f"{path}: {sum(map(len, unused.values()))} of the {sum(map(len, annotations.values()))} "
                 f"points lie on {len(unused)} test image(s) of the split (e.g. {sorted(unused)[:3]}): "
                 "they are neither trained on nor validated on. Give val_images=N to split the images "
                 "into training and validation only, or held_out='areas'.")
    where = "in the held-out areas" if spec.held_out == "areas" else "on the validation images"
    if not train:
        raise ValueError(f"{path}: no point to train on (held_out={spec.held_out!r})")
    if not held:
        raise ValueError(f"{path}: no point {where} to validate on; click some there, or use "
                         f"held_out={'images' if spec.held_out == 'areas' else 'areas'!r}")
    unknown = data.schema.unknown_index
    if unknown is not None and all((a.labels == unknown).all() for a in held.values()):
        raise ValueError(f"{path}: every point {where} is {data.schema.names[unknown]!r}, a class no score "
                         "counts, so there is nothing to validate on; click other classes there")
    split = {"train": [p for p in data.split["train"] if p.image_id in train],
             "val": [p for p in data.split["val"] if p.image_id in held],
             "test": data.split.get("test", [])}
    return data._replace(split=split), train, held
