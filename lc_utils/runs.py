"""One run, one description: :class:`RunSpec` says everything a training run is, and
:func:`build_run` assembles it (data split, annotations at their one path, datasets, loaders,
model, loss) the same way for notebook 04, the training command, the studies and every later
chapter.

A spec reads and writes TOML or JSON (:meth:`RunSpec.load`, :meth:`RunSpec.save`); the run folder
keeps one (``run.toml``), and resuming compares the whole spec with the one the checkpoint was
made with. ``python -m lc_utils.cli`` has one option per field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed, settings
from .classes import ClassSchema
from .datasets import DenseLandCoverDataset, SegmentationDataset, split_items, split_pairs
from .files import image_id_of, image_shapes
from .inference import predict_tiled, validator
from .layouts import find_pairs, find_unlabelled_images, load_schema
from .losses import PartialCrossEntropyLoss, class_weights_from_counts, prior_correction
from .models import BACKBONES, build_deeplabv3
from .point_scores import point_validator
from .propagation import (
    LabelMapDataset,
    Propagation,
    ensure_propagated,
    pseudo_label_thresholds,
    pseudo_labels,
)
from .sparse import (
    STRATEGIES,
    PointAnnotation,
    SparseLandCoverDataset,
    annotation_filename,
    ensure_annotations,
    hold_out_areas,
    labelled_fraction,
    load_annotations,
    point_counts,
)
from .statistics import class_statistics
from .synthetic import is_generated_sample
from .training import (
    LAST,
    SCHEDULES,
    fit,
    load_checkpoint,
    make_loader,
    model_from_checkpoint,
    register_config_defaults,
)
from .transforms import CROP_SAMPLING, make_transforms
from .windows import DEFAULT_OVERLAP, WindowDataset

DENSE = "dense"
"""The labels strategy that trains on the dense masks instead of points."""

LABELS = (*STRATEGIES, DENSE)
LOSS_WEIGHTS = ("none", "inverse-sqrt")
SPEC_FILE = "run.toml"
"""The spec a run folder keeps (``python -m lc_utils.cli --config`` reads it back)."""
HELD_OUT = ("images", "areas")
HELD_OUT_BLOCK = 64
"""The side in pixels of the squares whose points validate a run with ``held_out="areas"``."""

CACHE_MB = 2048
"""Decoded training images each run keeps in memory by default (a speed-up only)."""

_NONE = "none"
"""How a missing value is written where the format has no null (TOML, the command line)."""


def is_unset(text: str) -> bool:
    """Whether ``text`` stands for a missing value (``"none"`` or empty) in a file or an option."""
    return text.strip().lower() in (_NONE, "")


@dataclass(frozen=True)
class RunSpec:
    """Everything a training run is: data, labels, model, schedule, loss and validation.

    The defaults are full mode's (a Colab GPU); :meth:`course_defaults` gives the current mode's.
    Fields with ``None`` mean "not set": ``data`` (the course's data folder, :func:`lc_utils.
    settings.prepare_data`), ``schema`` (read from the data folder), ``val_images`` (the course's
    70/15/15 split), ``samples_per_epoch`` (every training image once per epoch), ``weights``
    (random initialisation), ``schedule`` (a constant rate after the warm-up).
    """

    # data and split
    data: str | None = None
    """The data folder (any layout :func:`lc_utils.layouts.find_pairs` reads)."""
    schema: str | None = None
    """A preset name or a schema file; None: read from the data folder."""
    image_suffix: str | None = None
    """The ending of image names beyond the id (``"_naip_rgb"``); None: the layout's own."""
    mask_suffix: str | None = None
    """The ending of mask names beyond the id (``"_lc"``); None: the layout's own."""
    split_seed: int = 0
    """Seeds the train / validation / test split and the fixed validation windows."""
    val_images: int | None = None
    """None: the course's 70/15/15 split (:func:`lc_utils.datasets.split_pairs`); a number: that
    many images held out for validation and the rest trained on (a study's split, no test part)."""
    # labels
    strategy: str = "uniform"
    """"uniform", "stratified" or "grid" points (:func:`lc_utils.sparse.sample_points`), or "dense"."""
    points_per_mp: float | None = 1500
    """Points per megapixel of each training image (notebook 03)."""
    points_per_image: int | None = None
    """Points per training image; when set, it replaces ``points_per_mp``."""
    annotations: str | None = None
    """An annotation file to train on instead of sampling points (it replaces the budget)."""
    superpixel_area: float | None = None
    """Spread each point's class over its SLIC superpixel of about this many pixels
    (:mod:`lc_utils.propagation`, notebook 07); None: train on the points alone."""
    self_training_rounds: int = 0
    """Rounds of self-training (notebook 07). The epochs are shared evenly between the first
    training and the rounds; each round predicts the training images with the model so far, adds
    its confident pixels to the labels (never over them) and fine-tunes on them, its warm-up and
    schedule started again."""
    pseudo_threshold: float = 0.9
    """Confidence from which a predicted pixel becomes a pseudo-label."""
    pseudo_class_share: float | None = 0.2
    """Also keep this share of each class's most confident pixels, so that rare classes, predicted
    with less confidence, are not drowned (class-balanced self-training); None: the threshold alone."""
    held_out: str = "images"
    """Images without masks (points clicked on one's own imagery, notebook 08): which points
    validate the run. "images": those of the split's validation images; "areas": those in
    ``held_out_share`` of every image's area (:func:`lc_utils.sparse.hold_out_areas`), every image
    training on the rest. With masks the run validates on them and this is not used."""
    held_out_share: float = 0.2
    """The share of every image's area whose points validate, with ``held_out="areas"``."""
    # model
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    """"imagenet", "coco", a local weights file, or None (random)."""
    # training
    crop: int = 256
    crop_sampling: str = "labelled"
    """"labelled": crops uniform among the windows that hold a label; "class-balanced": centred on
    a class drawn uniformly among each image's labelled classes (rare classes reach the batches)."""
    color_jitter: float = 0.0
    """Brightness, contrast and saturation jitter of the training images (hue a quarter of it)."""
    batch_size: int = 8
    """The global batch: under ``torchrun`` each process takes batch_size / processes."""
    epochs: int = 20
    samples_per_epoch: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str | None = "cosine"
    warmup_steps: int = 30
    # loss
    loss_weights: str = "none"
    """"none" or "inverse-sqrt": class weights from the labelled pixels' counts."""
    prior_correction: bool = False
    """Logit adjustment for points whose class shares differ from the pixels' (notebook 06)."""
    label_smoothing: float = 0.0
    dice_weight: float = 0.0
    """Weight of a soft Dice term over the labelled pixels, added to the cross-entropy (every class
    present counts alike: rare classes do not vanish)."""
    # validation during training
    val_window: int = 512
    """Validation window size; also the window whole-image scoring slides."""
    val_overlap: float = DEFAULT_OVERLAP
    """Least share of a window that overlaps its neighbour in whole-image scoring (notebook 05)."""
    val_windows: int = 64
    """Fixed validation windows scored after every epoch; 0: no validation during training."""
    seed: int = 0
    """Seeds the points, the starting weights and the crops."""

    def __post_init__(self) -> None:
        for name, value in self.to_dict().items():
            object.__setattr__(self, name, _coerce(name, value, _HINTS[name], "RunSpec"))
        if self.annotations is not None or self.strategy == DENSE:
            object.__setattr__(self, "points_per_mp", None)
            object.__setattr__(self, "points_per_image", None)
        elif self.points_per_image is not None:
            object.__setattr__(self, "points_per_mp", None)
        self._check()

    def _check(self) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"RunSpec: {message}")

        if self.strategy not in LABELS:
            fail(f"strategy must be one of {list(LABELS)}, got {self.strategy!r}")
        if self.strategy != DENSE and self.annotations is None and (
                self.points_per_mp is None and self.points_per_image is None):
            fail("points need a budget: points_per_mp or points_per_image (or an annotations file)")
        if self.backbone not in BACKBONES:
            fail(f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}")
        if self.schedule not in SCHEDULES:
            fail(f"schedule must be one of {[s or _NONE for s in SCHEDULES]}, got {self.schedule!r}")
        if self.crop_sampling not in CROP_SAMPLING:
            fail(f"crop_sampling must be one of {list(CROP_SAMPLING)}, got {self.crop_sampling!r}")
        if not 0 <= self.color_jitter <= 1:
            fail(f"color_jitter must be between 0 and 1, got {self.color_jitter}")
        if self.loss_weights not in LOSS_WEIGHTS:
            fail(f"loss_weights must be one of {list(LOSS_WEIGHTS)}, got {self.loss_weights!r}")
        if self.superpixel_area is not None and self.strategy == DENSE:
            fail("superpixel_area spreads points; dense labels have none to spread")
        if self.self_training_rounds and self.strategy == DENSE:
            fail("self-training adds labels to points; dense labels leave no pixel to add")
        if self.self_training_rounds < 0 or self.epochs % (self.self_training_rounds + 1):
            fail(f"epochs ({self.epochs}) must be shared evenly between the first training and "
                 f"{self.self_training_rounds} self-training round(s)")
        if not 0 < self.pseudo_threshold <= 1:
            fail(f"pseudo_threshold must be in (0, 1], got {self.pseudo_threshold}")
        if self.pseudo_class_share is not None and not 0 < self.pseudo_class_share <= 1:
            fail(f"pseudo_class_share must be in (0, 1], got {self.pseudo_class_share}")
        if self.superpixel_area is not None and self.superpixel_area < 4:
            fail(f"superpixel_area must be at least 4 pixels, got {self.superpixel_area}")
        if self.held_out not in HELD_OUT:
            fail(f"held_out must be one of {list(HELD_OUT)}, got {self.held_out!r}")
        if not 0 < self.held_out_share < 1:
            fail(f"held_out_share must be between 0 and 1, got {self.held_out_share}")
        if self.prior_correction and self.strategy == DENSE:
            fail("prior_correction corrects the class shares of points; dense labels have none to correct")
        for name in ("crop", "batch_size", "epochs", "val_window"):
            if getattr(self, name) < 1:
                fail(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("samples_per_epoch", "val_images", "points_per_image", "points_per_mp"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                fail(f"{name} must be positive, got {value}")
        if not 0 <= self.val_overlap < 1:
            fail(f"val_overlap must be in [0, 1), got {self.val_overlap}")
        if self.val_windows < 0 or self.warmup_steps < 0 or self.dice_weight < 0:
            fail("val_windows, warmup_steps and dice_weight cannot be negative")

    @classmethod
    def course_defaults(cls, **changes: Any) -> RunSpec:
        """The spec notebook 04 and ``python -m lc_utils.cli`` start from in the current mode:
        fast mode (``LC_FAST=1``) trains MobileNetV3 on 128 x 128 crops with :func:`fast_recipe`'s
        rate, loss and crops per epoch for the data (``changes["data"]``, else ``$DATA_DIR``) and
        validates on 16 windows; smoke mode (``LC_SMOKE=1``) runs 2 epochs. ``changes`` on top."""
        fast = {"backbone": "mobilenet_v3_large", "crop": 128, "val_windows": 16,
                **fast_recipe(changes.get("data"))}
        mode = settings.pick({}, fast)
        return cls(**{**mode, "epochs": settings.unless_smoke(cls.epochs, smoke=2), **changes})

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with ``changes`` (checked like any spec)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (what checkpoints record and resume compares)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "spec") -> RunSpec:
        """A spec from ``values`` (field names, with ``_`` or ``-``; missing fields keep their
        defaults; ``"none"`` for a field that may be unset). An unknown key or a value of the wrong
        type is an error naming ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ValueError(f"{source}: unknown field {key!r}; the fields are {sorted(known)}")
            fields[name] = _coerce(name, value, _HINTS[name], source)
        try:
            return cls(**fields)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> RunSpec:
        """Read a spec from a TOML or JSON file (by its suffix; TOML otherwise)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no run spec here")
        return cls.from_dict(read_table(path), str(path))

    def save(self, path: str | Path) -> Path:
        """Write the spec as TOML, or JSON for a ``.json`` path; unset fields as ``"none"`` in TOML."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        else:
            lines = [f"{name} = {_toml_value(value)}" for name, value in self.to_dict().items()]
            path.write_text("\n".join(lines) + "\n")
        return path


REAL_IMAGERY_RECIPE = {"lr": 3e-4, "dice_weight": 1.0, "samples_per_epoch": 480}
"""Fast mode on real imagery (random weights, a CPU): AdamW at 3e-4 with a soft Dice term beside the
partial cross-entropy, 1,200 steps of 8 crops over 20 epochs. Chosen on the real DeepGlobe tiles'
validation split (``benchmarks/results/real_tile_recipe.json``): at 2e-3 with the cross-entropy
alone, as on the sample, the model learned urban and agriculture only (water and barren IoU 0)."""

SAMPLE_RECIPE = {"lr": 2e-3, "dice_weight": 0.0, "samples_per_epoch": 160}
"""Fast mode on the generated sample: its scenes learn in 400 steps at 2e-3 (at 3e-4 with the Dice
term they do not: best validation mIoU 0.26 against 0.55)."""


def fast_recipe(data: str | Path | None = None) -> dict[str, float]:
    """Fast mode's learning rate, Dice weight and crops per epoch for ``data`` (else ``$DATA_DIR``):
    :data:`SAMPLE_RECIPE` for the generated sample (none given, or a folder that
    :func:`lc_utils.synthetic.is_generated_sample` recognises), :data:`REAL_IMAGERY_RECIPE` for any
    other folder."""
    chosen = data or os.environ.get("DATA_DIR")
    return dict(REAL_IMAGERY_RECIPE if chosen and not is_generated_sample(chosen) else SAMPLE_RECIPE)


_HINTS = typing.get_type_hints(RunSpec)


def read_table(path: Path) -> dict[str, Any]:
    """The key / value table of a TOML or JSON file (by suffix), or an error naming the file."""
    text = path.read_text(encoding="utf-8")
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    try:
        values = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except ValueError as error:
        raise ValueError(f"{path}: not a readable {kind} file ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of fields")
    return values


def _toml_value(value: Any) -> str:
    if value is None:
        return f'"{_NONE}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """``value`` as the type ``hint`` names (``int``, ``float | None``, ...), or a clear error."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in args
    kind = next(t for t in args if t is not type(None))
    if value is None or (optional and isinstance(value, str) and is_unset(value)):
        if optional:
            return None
        raise ValueError(f"{source}: {name} needs a value")
    if isinstance(value, Path):
        value = str(value)
    wrong = ValueError(f"{source}: {name} must be {kind.__name__}{' or none' if optional else ''}, "
                       f"got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise wrong
    if isinstance(value, bool):
        raise wrong
    try:
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise wrong
            return int(number)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise wrong from None
    if not isinstance(value, str):
        raise wrong
    return value


register_config_defaults(RunSpec().to_dict())  # a checkpoint made before a field existed resumes


class RunData(NamedTuple):
    """The data a spec describes: its folder, class schema, every (image, mask) pair and the split.
    Images without masks (``has_masks`` False) have None for a mask."""

    root: Path
    schema: ClassSchema
    pairs: list[tuple[Path, Path | None]]
    split: dict[str, list[tuple[Path, Path | None]]]

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
        pairs = [(image, None) for image in images]
        if spec.held_out == "areas":
            return RunData(root, schema, pairs, {"train": pairs, "val": pairs, "test": []})
    return RunData(root, schema, pairs, _split(spec, root, pairs))


def _split(spec: RunSpec, root: Path, pairs: list[tuple[Path, Path | None]]) -> dict[str, list]:
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


def _training_points(spec: RunSpec, path: Path, data: RunData) -> dict[str, PointAnnotation]:
    """The points of the training images: from the spec's file, or from the annotation of every
    image of the data set at ``path`` (made once; each image's points depend on the seed and the
    image alone, so one file serves every split)."""
    shapes = image_shapes(data.pairs)
    if spec.annotations is not None:
        annotations = load_annotations(path, data.schema, shapes)
    else:
        if distributed.is_main():  # one process writes the file, the others read it
            annotations = ensure_annotations(path, data.pairs, n_points=spec.points_per_image,
                                             points_per_mp=spec.points_per_mp, strategy=spec.strategy,
                                             seed=spec.seed, schema=data.schema)
        if distributed.active():
            torch.distributed.barrier()
        if not distributed.is_main():
            annotations = load_annotations(path, data.schema, shapes)
    train_ids = [image_id_of(image) for image, _ in data.split["train"]]
    missing = [i for i in train_ids if i not in annotations]
    if missing:
        raise ValueError(f"{path}: no points for {len(missing)} training images (e.g. {missing[:3]})")
    return {i: annotations[i] for i in train_ids}


def _points_without_masks(spec: RunSpec, path: Path, data: RunData
                          ) -> tuple[RunData, dict[str, PointAnnotation], dict[str, PointAnnotation]]:
    """For images without masks: the training and the held-out points of the spec's annotation
    file, and the split narrowed to the images that have some (a person clicks on some images
    before others)."""
    annotations = load_annotations(path, data.schema, image_shapes(data.pairs))
    if spec.held_out == "areas":
        train, held = hold_out_areas(annotations, image_shapes(data.pairs), spec.held_out_share,
                                     HELD_OUT_BLOCK, seed=spec.split_seed)
    else:
        ids = {part: {image_id_of(image) for image, _ in pairs} for part, pairs in data.split.items()}
        train = {i: a for i, a in annotations.items() if i in ids["train"]}
        held = {i: a for i, a in annotations.items() if i in ids["val"]}
    where = "in the held-out areas" if spec.held_out == "areas" else "on the validation images"
    if not train:
        raise ValueError(f"{path}: no point to train on (held_out={spec.held_out!r})")
    if not held:
        raise ValueError(f"{path}: no point {where} to validate on; click some there, or use "
                         f"held_out={'images' if spec.held_out == 'areas' else 'areas'!r}")
    split = {"train": [p for p in data.split["train"] if image_id_of(p[0]) in train],
             "val": [p for p in data.split["val"] if image_id_of(p[0]) in held],
             "test": data.split.get("test", [])}
    return data._replace(split=split), train, held


def _loss(spec: RunSpec, annotations: dict[str, PointAnnotation] | None, train: list[tuple[Path, Path]],
          schema: ClassSchema) -> PartialCrossEntropyLoss:
    weight = adjustment = None
    if spec.loss_weights != "none" or spec.prior_correction:
        pixels = class_statistics(train, schema)["pixels"].to_numpy()
        labelled = pixels if annotations is None else point_counts(annotations, schema.num_classes)
        if spec.loss_weights == "inverse-sqrt":
            weight = class_weights_from_counts(torch.as_tensor(labelled))
        if spec.prior_correction:
            adjustment = prior_correction(labelled, pixels)
    return PartialCrossEntropyLoss(weight=weight, label_smoothing=spec.label_smoothing,
                                   logit_adjustment=adjustment, dice_weight=spec.dice_weight)


@dataclass
class Run:
    """A spec assembled by :func:`build_run`: everything notebook 04 builds step by step."""

    spec: RunSpec
    root: Path
    schema: ClassSchema
    split: dict[str, list[tuple[Path, Path]]]
    annotations: dict[str, PointAnnotation] | None
    """The training images' points (None: dense labels)."""
    annotation_path: Path | None
    train_set: SegmentationDataset
    train_loader: DataLoader
    val_set: WindowDataset | None
    """The fixed validation windows (None with ``val_windows=0``)."""
    val_loader: DataLoader | None
    model: nn.Module
    loss_fn: PartialCrossEntropyLoss
    val_points: dict[str, PointAnnotation] | None = None
    """Images without masks: the held-out points the run validates on (None with masks)."""

    def __post_init__(self) -> None:
        self.base_train_set = self.train_set
        """The training set before any pseudo-label: what each self-training round adds to."""

    @functools.cached_property
    def labelled_fraction(self) -> float:
        """Share of the training pixels that carry a label."""
        if self.annotations is None:
            return 1.0
        return labelled_fraction(self.annotations, image_shapes(self.split["train"]))

    @property
    def trained_fraction(self) -> float:
        """Share of the training pixels the training set labels now: the points, or the points
        spread over superpixels, or those with the last self-training round's pseudo-labels."""
        if isinstance(self.train_set, LabelMapDataset):
            return self.train_set.labelled_fraction()
        return self.labelled_fraction

    @property
    def points_per_image(self) -> float:
        """Mean points per training image (NaN for dense labels)."""
        if self.annotations is None:
            return float("nan")
        return float(np.mean([len(a) for a in self.annotations.values()]))

    @property
    def steps(self) -> int:
        """Optimiser steps the whole run takes."""
        return self.spec.epochs * len(self.train_loader)

    def train(self, run_dir: str | Path | None = None, *, resume: bool = True, checkpoint_every: int = 1,
            device: str | torch.device | None = None, amp: bool = True,
            progress: bool = True) -> list[dict[str, float]]:
        """Train with :func:`lc_utils.training.fit` as the spec says, validating on the fixed
        windows. With ``run_dir`` the folder gets the checkpoints and the spec (``run.toml``,
        unless an existing checkpoint is resumed, whose spec must then be this one).

        With self-training rounds the epochs are shared between the first training and the
        rounds (each in ``run_dir/round<k>``, resumed alike); every history row then says its
        ``round``."""
        spec = self.spec
        resuming = run_dir is not None and resume and (Path(run_dir) / LAST).is_file()
        if run_dir is not None and distributed.is_main() and not resuming:
            spec.save(Path(run_dir) / SPEC_FILE)
        validate = None
        if self.val_loader is not None:
            validate = validator(self.val_loader, amp=amp)
        elif self.val_points:
            validate = point_validator([image for image, _ in self.split["val"]], self.val_points,
                                       self.schema, tile_size=spec.val_window, overlap=spec.val_overlap)
        rounds = spec.self_training_rounds
        history: list[dict[str, float]] = []
        for stage in range(rounds + 1):
            stage_dir = run_dir if run_dir is None or stage == 0 else Path(run_dir) / f"round{stage}"
            if stage > 0:
                self.add_pseudo_labels()
            stage_history = fit(
                self.model, self.train_loader, epochs=spec.epochs // (rounds + 1), validate=validate,
                loss_fn=self.loss_fn, lr=spec.lr, weight_decay=spec.weight_decay, schedule=spec.schedule,
                # each round its own crops: the same seed would replay the first training's
                warmup_steps=spec.warmup_steps, seed=spec.seed + 1000 * stage, run_dir=stage_dir,
                resume=resume, checkpoint_every=checkpoint_every, device=device, amp=amp,
                num_classes=self.schema.num_classes, config=spec.to_dict(), progress=progress)
            history += [{**row, "round": stage} for row in stage_history] if rounds else stage_history
        return history

    def add_pseudo_labels(self) -> dict[str, np.ndarray]:
        """Predict the training images with the model so far and train on from its confident
        pixels added to the first labels (points or propagated points, never overwritten): the
        step between self-training rounds. Returns the new label maps (image id -> (H, W))."""
        spec = self.spec
        base_set = self.base_train_set
        predictions, bases = {}, {}
        for index, image_id in enumerate(base_set.image_ids):
            image, bases[image_id] = base_set.read_item(index)
            predicted, probs = predict_tiled(self.model, image, tile_size=spec.val_window,
                                             overlap=spec.val_overlap, return_probs=True)
            predictions[image_id] = (predicted, probs.max(axis=0).astype(np.float16))
        thresholds = pseudo_label_thresholds(predictions.values(), self.schema.num_classes,
                                             spec.pseudo_threshold, spec.pseudo_class_share)
        label_maps = {image_id: pseudo_labels(*predictions[image_id], bases[image_id], thresholds,
                                              self.schema.unknown_index)
                      for image_id in base_set.image_ids}
        self.train_on(label_maps)
        return label_maps

    def train_on(self, label_maps: Mapping[str, np.ndarray]) -> None:
        """Train from here on with ``label_maps`` (image id -> (H, W) class map, 255 unlabelled)
        for every training image, in the same crops, augmentations and batches as the first
        labels: how self-training swaps in pseudo-labels, and how an experiment tries other labels
        under one spec."""
        base_set = self.base_train_set
        self.train_set = LabelMapDataset(self.split["train"], label_maps, self.schema, base_set.transform,
                                         cache_mb=base_set.cache_mb)
        self.train_loader = make_loader(self.train_set, self.spec.batch_size, shuffle=True,
                                        num_workers=self.train_loader.num_workers,
                                        samples_per_epoch=self.spec.samples_per_epoch, seed=self.spec.seed)


def build_run(spec: RunSpec, *, runs_dir: str | Path | None = None, num_workers: int = 0,
              cache_mb: float = CACHE_MB) -> Run:
    """Assemble the run ``spec`` describes, in notebook 04's order: the split, the annotation (of
    every image, made once at its one path under ``runs_dir``, or the spec's file), the training dataset
    (crops that hold a label, flips, rotations) and loader, the fixed validation windows, the loss
    and, seeded with ``spec.seed`` just before it is built, the model. ``num_workers`` and
    ``cache_mb`` change the speed only, never the numbers."""
    data = load_data(spec)
    path = annotation_file(spec, data.root, runs_dir)
    val_points = None
    if data.has_masks:
        annotations = None if path is None else _training_points(spec, path, data)
    elif path is None or spec.prior_correction:
        missing = "no dense labels" if path is None else "no true class prior"
        raise ValueError(f"{data.root}: no masks, so {missing} to train with; train on the annotation "
                         "file's points")
    else:
        data, annotations, val_points = _points_without_masks(spec, path, data)
    root, schema, split = data.root, data.schema, data.split
    # every crop holds at least one labelled point
    transform = make_transforms(spec.crop, crop_sampling=spec.crop_sampling, color_jitter=spec.color_jitter)
    if annotations is None:
        train_set = DenseLandCoverDataset(split["train"], schema, transform, cache_mb=cache_mb)
    elif spec.superpixel_area is not None:
        label_maps = ensure_propagated(split["train"], annotations, propagated_dir(path, root, runs_dir),
                                       Propagation(superpixel_area=spec.superpixel_area), schema)
        train_set = LabelMapDataset(split["train"], label_maps, schema, transform, cache_mb=cache_mb)
    else:
        train_set = SparseLandCoverDataset(split["train"], annotations, schema, transform, cache_mb=cache_mb)
    train_loader = make_loader(train_set, spec.batch_size, shuffle=True, num_workers=num_workers,
                               samples_per_epoch=spec.samples_per_epoch, seed=spec.seed)
    val_set = val_loader = None
    if spec.val_windows and data.has_masks:
        val_images = DenseLandCoverDataset(split["val"], schema)
        val_set = WindowDataset(val_images, spec.val_window, spec.val_windows, seed=spec.split_seed)
        val_loader = make_loader(val_set, 1, shuffle=False)
    loss_fn = _loss(spec, annotations, split["train"], schema)
    settings.seed_everything(spec.seed)
    model = build_deeplabv3(schema.num_classes, spec.backbone, spec.weights)
    return Run(spec, root, schema, split, annotations, path, train_set, train_loader, val_set, val_loader,
               model, loss_fn, val_points)


def load_run(checkpoint: str | Path, *, runs_dir: str | Path | None = None,
             device: str | torch.device | None = None) -> Run:
    """The run a checkpoint of :meth:`Run.train` or notebook 04 comes from: rebuilt from the spec
    saved in it (the same split, points and training set), with the trained model (eval mode)."""
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    config = state.get("config") or {}
    if "strategy" not in config:  # fit called without a spec records its own settings only
        raise ValueError(f"{checkpoint}: the checkpoint holds no run spec, so its run cannot be rebuilt")
    fields = {field.name for field in dataclasses.fields(RunSpec)}
    spec = RunSpec.from_dict({k: v for k, v in config.items() if k in fields}, source=str(checkpoint))
    # the trained weights replace the starting ones: no download for them
    run = dataclasses.replace(build_run(spec.replace(weights=None), runs_dir=runs_dir), spec=spec)
    run.model = model_from_checkpoint(state, checkpoint, device)
    return run
