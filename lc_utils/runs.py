"""One run, one description: :func:`build_run` assembles the run a :class:`~lc_utils.run_spec.RunSpec`
describes (data split, annotations at their one path, datasets, loaders, model, loss) the same way
for notebook 04, the training command, the studies and every later chapter; :class:`Run` trains it
(:meth:`Run.train`, with self-training rounds) and :func:`load_run` rebuilds a trained one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed, settings
from .checkpoints import LAST, Checkpoint
from .classes import ClassSchema
from .datasets import DenseLandCoverDataset, SegmentationDataset
from .files import ImagePair, image_shapes
from .inference import predict_tiled, validator
from .losses import PartialCrossEntropyLoss, class_weights_from_counts, prior_correction
from .models import build_deeplabv3, model_from_checkpoint
from .point_scores import point_validator
from .propagation import (
    LabelMapDataset,
    Propagation,
    ensure_propagated,
    pseudo_label_thresholds,
    pseudo_labels,
)
from .run_data import load_data
from .run_labels import annotation_file, points_without_masks, propagated_dir, training_points
from .run_spec import SPEC_FILE, RunSpec
from .sparse import PointAnnotation, SparseLandCoverDataset, labelled_fraction, point_counts
from .statistics import class_statistics
from .training import Schedule, TrainingStep, fit, make_loader
from .transforms import make_transforms
from .windows import WindowDataset

CACHE_MB = 2048
"""Decoded training images each run keeps in memory by default (a speed-up only)."""


def make_loss(spec: RunSpec, annotations: dict[str, PointAnnotation] | None, train: list[tuple[Path, Path]],
              schema: ClassSchema) -> PartialCrossEntropyLoss:
    """The spec's loss: the partial cross-entropy with its class weights, prior correction (from the
    training images' point and pixel counts), label smoothing and Dice term."""
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
    split: dict[str, list[ImagePair]]
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
            validate = point_validator(self.split["val"], self.val_points,
                                       self.schema, tile_size=spec.val_window, overlap=spec.val_overlap)
        rounds = spec.self_training_rounds
        history: list[dict[str, float]] = []
        for stage in range(rounds + 1):
            stage_dir = run_dir if run_dir is None or stage == 0 else Path(run_dir) / f"round{stage}"
            if stage > 0:
                self.add_pseudo_labels()
            # each stage a new optimiser, its warm-up and schedule started again
            step = TrainingStep(self.model, self.loss_fn, lr=spec.lr, weight_decay=spec.weight_decay,
                                schedule=Schedule(spec.schedule, spec.warmup_steps), device=device, amp=amp,
                                consistency=spec.consistency())
            # each round its own crops: the same seed would replay the first training's
            stage_history = fit(step, self.train_loader, epochs=spec.epochs // (rounds + 1),
                                validate=validate, checkpoints=spec.checkpoints(stage_dir, checkpoint_every),
                                resume=resume, seed=spec.seed + 1000 * stage, progress=progress)
            history += [{**row, "round": stage} for row in stage_history] if rounds else stage_history
        return history

    def confident_predictions(self) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
        """The training images predicted whole with the model so far: image id -> (predicted classes,
        confidence as float16), and image id -> the first labels (points, or propagated points)
        with 255 unlabelled. What pseudo-labels are made from."""
        spec, base_set = self.spec, self.base_train_set
        predictions, bases = {}, {}
        for index, image_id in enumerate(base_set.image_ids):
            image, bases[image_id] = base_set.read_item(index)
            predicted, probs = predict_tiled(self.model, image, tile_size=spec.val_window,
                                             overlap=spec.val_overlap, return_probs=True)
            predictions[image_id] = (predicted, probs.max(axis=0).astype(np.float16))
        return predictions, bases

    def first_labels(self) -> dict[str, np.ndarray]:
        """Every training image's first labels (points, or propagated points; 255 unlabelled), as
        the run was built: what pseudo-labels are added to."""
        base_set = self.base_train_set
        return {image_id: base_set.read_item(index)[1] for index, image_id in enumerate(base_set.image_ids)}

    def pseudo_label_maps(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The model's confident pixels added to the first labels (points or propagated points,
        never overwritten), the spec's class-balanced thresholds deciding which: every training
        image's new label map, and its first labels (each image id -> (H, W), 255 unlabelled)."""
        spec = self.spec
        predictions, bases = self.confident_predictions()
        thresholds = pseudo_label_thresholds(predictions.values(), self.schema.num_classes,
                                             spec.pseudo_threshold, spec.pseudo_class_share)
        maps = {image_id: pseudo_labels(*predictions[image_id], bases[image_id], thresholds,
                                        self.schema.unknown_index) for image_id in bases}
        return maps, bases

    def add_pseudo_labels(self) -> dict[str, np.ndarray]:
        """Predict the training images with the model so far and train on from its confident
        pixels added to the first labels (:meth:`pseudo_label_maps`): the step between
        self-training rounds. Returns the new label maps (image id -> (H, W))."""
        label_maps, _ = self.pseudo_label_maps()
        self.train_on(label_maps)
        return label_maps

    def train_on(self, label_maps: Mapping[str, np.ndarray], *, transform: Callable | None = None,
                 crop_guides: Mapping[str, np.ndarray] | None = None) -> None:
        """Train from here on with ``label_maps`` (image id -> (H, W) class map, 255 unlabelled)
        for every training image, with the same transform (or ``transform``) and batches as the
        first labels: how self-training swaps in pseudo-labels, and how an experiment tries other
        labels under one spec. The crops hold a label of the maps, or of ``crop_guides`` where
        given (:class:`~lc_utils.propagation.LabelMapDataset`)."""
        base_set = self.base_train_set
        self.train_set = LabelMapDataset(self.split["train"], label_maps, self.schema,
                                         transform or base_set.transform, cache_mb=base_set.cache_mb,
                                         crop_guides=crop_guides)
        self.train_loader = make_loader(self.train_set, self.spec.batch_size, shuffle=True,
                                        num_workers=self.train_loader.num_workers,
                                        samples_per_epoch=self.spec.samples_per_epoch, seed=self.spec.seed)

    def on_points(self, pairs: list[ImagePair], annotations: Mapping[str, PointAnnotation], *,
                  epochs: int) -> Run:
        """A copy of this run that trains its current model on other images' points for ``epochs``
        (``pairs`` and their ``annotations``: a person's clicks on tiles it never trained on), with
        its own transform, batches and loss and no validation: a full fine-tune from the clicks."""
        train_set = SparseLandCoverDataset(pairs, annotations, self.schema, self.base_train_set.transform)
        loader = make_loader(train_set, self.spec.batch_size, shuffle=True,
                             samples_per_epoch=self.spec.samples_per_epoch, seed=self.spec.seed)
        return dataclasses.replace(self, spec=self.spec.replace(epochs=epochs, self_training_rounds=0),
                                   split={**self.split, "train": list(pairs)}, annotations=dict(annotations),
                                   train_set=train_set, train_loader=loader, val_set=None, val_loader=None,
                                   val_points=None)


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
        annotations = None if path is None else training_points(spec, path, data)
    elif path is None or spec.prior_correction:
        missing = "no dense labels" if path is None else "no true class prior"
        raise ValueError(f"{data.root}: no masks, so {missing} to train with; train on the annotation "
                         "file's points")
    else:
        data, annotations, val_points = points_without_masks(spec, path, data)
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
    loss_fn = make_loss(spec, annotations, split["train"], schema)
    settings.seed_everything(spec.seed)
    model = build_deeplabv3(schema.num_classes, spec.backbone, spec.weights)
    return Run(spec, root, schema, split, annotations, path, train_set, train_loader, val_set, val_loader,
               model, loss_fn, val_points)


def load_run(checkpoint: str | Path, *, runs_dir: str | Path | None = None,
             device: str | torch.device | None = None) -> Run:
    """The run a checkpoint of :meth:`Run.train` or notebook 04 comes from: rebuilt from the spec
    saved in it (the same split, points and training set), with the trained model (eval mode)."""
    checkpoint = Path(checkpoint)
    saved = Checkpoint.read(checkpoint)
    spec = RunSpec.from_checkpoint(saved, source=str(checkpoint))
    # the trained weights replace the starting ones: no download for them
    run = dataclasses.replace(build_run(spec.replace(weights=None), runs_dir=runs_dir), spec=spec)
    run.model = model_from_checkpoint(saved, checkpoint, device)
    return run
