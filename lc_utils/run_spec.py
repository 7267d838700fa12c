"""What a training run is: :class:`RunSpec`, its fields checked and coerced, and its file format.

A spec reads and writes TOML or JSON (:meth:`RunSpec.load`, :meth:`RunSpec.save`); a run folder
keeps one (``run.toml``), and resuming compares the whole spec with the one the checkpoint was
made with. Every field has a docstring and a group (:data:`FIELD_GROUPS`): the training command
(:mod:`lc_utils.cli`) makes one option per field from them. Fast mode's recipes
(:func:`fast_recipe`) live here too: :meth:`RunSpec.course_defaults` starts from them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import settings
from .checkpoints import Checkpoint, Checkpoints
from .models import BACKBONES
from .saved_files import write_text
from .sparse import STRATEGIES
from .synthetic import is_generated_sample
from .training import SCHEDULES, Consistency
from .transforms import CROP_SAMPLING
from .windows import DEFAULT_OVERLAP

DENSE = "dense"
"""The labels strategy that trains on the dense masks instead of points."""

LABELS = (*STRATEGIES, DENSE)
LOSS_WEIGHTS = ("none", "inverse-sqrt")
HELD_OUT = ("images", "areas")
SPEC_FILE = "run.toml"
"""The spec a run folder keeps (``python -m lc_utils.cli --config`` reads it back)."""

NONE_TEXT = "none"
"""How a missing value is written where the format has no null (TOML, the command line)."""


def is_unset(text: str) -> bool:
    """Whether ``text`` stands for a missing value (``"none"`` or empty) in a file or an option."""
    return text.strip().lower() in (NONE_TEXT, "")


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
    """The data folder, in any layout :func:`lc_utils.layouts.find_pairs` reads; None: $DATA_DIR,
    else the generated sample."""
    schema: str | None = None
    """A preset (deepglobe, loveda, potsdam, vaihingen) or a schema file; None: read from the data
    folder."""
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
    """How points are drawn (:func:`lc_utils.sparse.sample_points`), or "dense": the masks."""
    points_per_mp: float | None = 1500
    """Points per megapixel of each training image (notebook 03)."""
    points_per_image: int | None = None
    """Points per training image; when set, it replaces ``points_per_mp``."""
    annotations: str | None = None
    """A point annotation file to train on instead of sampling points (it replaces the budget); None:
    made from the strategy and the budget, as in notebook 03, and saved under the runs folder."""
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
    """DeepLabV3's backbone."""
    weights: str | None = "imagenet"
    """"imagenet", "coco", a local weights file, or None (random)."""
    # training
    crop: int = 256
    """The side of the square training crops."""
    crop_sampling: str = "labelled"
    """"labelled": crops uniform among the windows that hold a label; "class-balanced": centred on
    a class drawn uniformly among each image's labelled classes (rare classes reach the batches)."""
    color_jitter: float = 0.0
    """Brightness, contrast and saturation jitter of the training images (hue a quarter of it)."""
    batch_size: int = 8
    """The global batch: under ``torchrun`` each process takes batch_size / processes."""
    epochs: int = 20
    """Epochs of training (with self-training rounds: of all the stages together)."""
    samples_per_epoch: int | None = None
    """Training crops per epoch; None: every training image once."""
    lr: float = 1e-3
    """AdamW's learning rate after the warm-up."""
    weight_decay: float = 1e-4
    """AdamW's weight decay."""
    schedule: str | None = "cosine"
    """The learning rate after the warm-up: "cosine" or "poly" decay to zero; None: constant."""
    warmup_steps: int = 30
    """Optimiser steps of linear warm-up."""
    # loss
    loss_weights: str = "none"
    """"none" or "inverse-sqrt": class weights from the labelled pixels' counts."""
    prior_correction: bool = False
    """Logit adjustment for points whose class shares differ from the pixels' (notebook 06)."""
    label_smoothing: float = 0.0
    """Label smoothing of the partial cross-entropy."""
    dice_weight: float = 0.0
    """Weight of a soft Dice term over the labelled pixels, added to the cross-entropy (every class
    present counts alike: rare classes do not vanish)."""
    consistency_weight: float = 0.0
    """Weight of the consistency term on the unlabelled pixels: the model's confident predictions
    on a crop as targets for its predictions on a strong view of the same crop (FixMatch's rule
    per pixel, as CRGNet adds it); 0: off. It doubles each step's forward passes."""
    consistency_threshold: float = 0.95
    """Confidence from which a pixel's prediction is a target of the consistency term."""
    consistency_warmup_steps: int = 100
    """Optimiser steps over which the consistency term's weight rises linearly from 0."""
    # validation during training
    val_window: int = 512
    """Validation window size; also the window whole-image scoring slides."""
    val_overlap: float = DEFAULT_OVERLAP
    """Least share of a window that overlaps its neighbour in whole-image scoring (notebook 05)."""
    val_windows: int = 64
    """Fixed validation windows scored after every epoch; 0: no validation during training."""
    seed: int = 0
    """Seeds the points, the starting weights and the crops."""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Every field's docstring, on one line (what the training command's help shows)."""
        return _field_docs(cls)

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

        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                fail(f"{name} must be one of {[NONE_TEXT if c is None else c for c in choices]}, "
                     f"got {getattr(self, name)!r}")

        if self.strategy != DENSE and self.annotations is None and (
                self.points_per_mp is None and self.points_per_image is None):
            fail("points need a budget: points_per_mp or points_per_image (or an annotations file)")
        if not 0 <= self.color_jitter <= 1:
            fail(f"color_jitter must be between 0 and 1, got {self.color_jitter}")
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
        if not 0 < self.held_out_share < 1:
            fail(f"held_out_share must be between 0 and 1, got {self.held_out_share}")
        if self.consistency_weight < 0 or self.consistency_warmup_steps < 0:
            fail("consistency_weight and consistency_warmup_steps cannot be negative")
        if not 0 < self.consistency_threshold <= 1:
            fail(f"consistency_threshold must be in (0, 1], got {self.consistency_threshold}")
        if self.consistency_weight and self.strategy == DENSE:
            fail("the consistency term teaches unlabelled pixels; dense labels leave none")
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
        validates on 16 windows; smoke mode (``LC_SMOKE=1``) runs 2 epochs; the schema and the file
        names' endings come from :data:`DATA_VARIABLES` where set. ``changes`` on top."""
        fast = {"backbone": "mobilenet_v3_large", "crop": 128, "val_windows": 16,
                **fast_recipe(changes.get("data"))}
        mode = settings.pick({}, fast)
        data = {name: value for name, variable in DATA_VARIABLES.items()
                if (value := settings.env_value(variable)) is not None}
        return cls(**{**mode, **data, "epochs": settings.unless_smoke(cls.epochs, smoke=2), **changes})

    def consistency(self) -> Consistency | None:
        """The consistency term this spec trains with (None where its weight is 0)."""
        if not self.consistency_weight:
            return None
        return Consistency(self.consistency_weight, self.consistency_threshold, self.consistency_warmup_steps,
                           seed=self.seed)

    def checkpoints(self, run_dir: str | Path | None, every: int = 1) -> Checkpoints:
        """The checkpoint policy of a run of this spec (:class:`lc_utils.checkpoints.Checkpoints`):
        the spec is the config that resuming compares, and a field an older checkpoint lacks reads
        as its default (how runs were made before the field existed)."""
        return Checkpoints(run_dir, every, config=self.to_dict(), config_defaults=type(self)().to_dict())

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, source: str = "checkpoint") -> RunSpec:
        """The spec a checkpoint of a run of a spec records (an error naming ``source`` for a
        checkpoint of ``fit`` called without one)."""
        if "strategy" not in checkpoint.config:  # fit called without a spec records its own settings only
            raise ValueError(f"{source}: the checkpoint holds no run spec, so its run cannot be rebuilt")
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls.from_dict({k: v for k, v in checkpoint.config.items() if k in fields}, source=source)

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
        if path.suffix.lower() == ".json":
            return write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        lines = [f"{name} = {_toml_value(value)}" for name, value in self.to_dict().items()]
        return write_text(path, "\n".join(lines) + "\n")


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

CHOICES: dict[str, tuple[Any, ...]] = {
    "strategy": LABELS, "backbone": BACKBONES, "crop_sampling": CROP_SAMPLING, "schedule": SCHEDULES,
    "loss_weights": LOSS_WEIGHTS, "held_out": HELD_OUT}
"""The fields that take one of a few values, and those values (None where a field may be unset)."""

DATA_VARIABLES = {"schema": "DATA_SCHEMA", "image_suffix": "DATA_IMAGE_SUFFIX",
                  "mask_suffix": "DATA_MASK_SUFFIX"}
"""The environment variables ``make`` hands the data's schema and names' endings in, by field."""

FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "data and split": ("data", "schema", "image_suffix", "mask_suffix", "split_seed", "val_images"),
    "labels": ("strategy", "points_per_mp", "points_per_image", "annotations", "superpixel_area",
               "self_training_rounds", "pseudo_threshold", "pseudo_class_share", "held_out",
               "held_out_share", "seed"),
    "model": ("backbone", "weights"),
    "schedule": ("crop", "crop_sampling", "color_jitter", "batch_size", "epochs", "samples_per_epoch", "lr",
                 "weight_decay", "schedule", "warmup_steps"),
    "loss": ("loss_weights", "prior_correction", "label_smoothing", "dice_weight", "consistency_weight",
             "consistency_threshold", "consistency_warmup_steps"),
    "validation": ("val_window", "val_overlap", "val_windows"),
}
"""Every field of :class:`RunSpec` in the group the training command's help lists it under."""


def _field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (the string right after each field), on one
    line each, with reStructuredText roles and literals as plain text."""
    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            text = " ".join(following.value.value.split())
            text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
            docs[node.target.id] = text
    return docs


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
        return f'"{NONE_TEXT}"'
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


