"""Self-training as the field runs it, against its control at equal extra compute.

The protocol of ST++ (Yang et al., CVPR 2022) and CRGNet (Xu and Ghamisi, TIP 2022), on points: a **teacher**
trained fully on the points alone (the label-density study's run: its whole schedule, its
checkpoint kept) labels the training images; its class-balanced confident pixels (CBST's rule, Zou
et al. 2018: :func:`lc_utils.propagation.pseudo_label_thresholds`) join the points, never over
them. The **student** starts from the teacher's weights and trains ``epochs`` further epochs on
points + pseudo-labels, with strong augmentation (colour jitter besides the flips and 90-degree
rotations every crop gets). The **control** is the same teacher trained the same further epochs on
its points alone, with the same augmentation, in the same crops for the same seed (both arms'
crops are placed by the points: :meth:`lc_utils.runs.Run.train_on`'s ``crop_guides``). The gain is
what the pseudo-labels add, at equal extra compute. A third arm trains the same further epochs on
the points with the consistency term on the unlabelled pixels (:class:`lc_utils.training.
Consistency`, the term CRGNet adds and FixMatch and UniMatch build on), against the same control.

Naive self-training (the density study's ``self_training_rounds``) splits one schedule between a
half-trained teacher and its student and compares with a run that had all the steps: it measures
a weaker teacher as much as the method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from .checkpoints import Checkpoints
from .inference import validator
from .propagation import label_quality
from .runs import Run, load_run
from .training import Schedule, TrainingStep, fit
from .transforms import make_transforms

Arm = Literal["points", "pseudo-labels", "consistency"]
ARMS: tuple[str, ...] = get_args(Arm)


@dataclass(frozen=True)
class ExtraTraining:
    """The second stage of the protocol, the same for the student and the control."""

    epochs: int
    """Further epochs from the teacher's weights (of the teacher's spec's crops per epoch)."""
    color_jitter: float = 0.4
    """Strong augmentation: brightness, contrast and saturation jitter of the further crops."""
    seed_offset: int = 2000
    """The further epochs' crops are seeded with the teacher's seed plus this (other crops than
    the teacher's, the same for every arm)."""
    consistency_weight: float = 1.0
    """The "consistency" arm's weight of the consistency term on the unlabelled pixels
    (:func:`lc_utils.losses.consistency_loss`; the spec's threshold and warm-up)."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.color_jitter <= 1:
            raise ValueError(f"color_jitter must be between 0 and 1, got {self.color_jitter}")


def from_teacher(checkpoint: str | Path, arm: Arm, extra: ExtraTraining, *,
                 runs_dir: str | Path | None = None) -> tuple[Run, dict[str, np.ndarray]]:
    """The teacher's run (its split, points and trained weights, from its ``checkpoint``) set up
    to train ``extra``'s further epochs on the arm's labels: the points alone (``"points"``, the
    control), the points with the teacher's pseudo-labels (``"pseudo-labels"``, the student), or
    the points with the consistency term on every other pixel (``"consistency"``). Returns the run,
    ready to :func:`train_further`, and the label map of every training image it will train on."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {list(ARMS)}, got {arm!r}")
    run = load_run(checkpoint, runs_dir=runs_dir)
    spec = run.spec
    if arm == "pseudo-labels":
        maps, points = run.pseudo_label_maps()
    else:
        maps = points = run.first_labels()
    if arm == "consistency":
        run.spec = spec.replace(consistency_weight=extra.consistency_weight)
    transform = make_transforms(spec.crop, crop_sampling=spec.crop_sampling, color_jitter=extra.color_jitter)
    run.train_on(maps, transform=transform, crop_guides=points)
    return run, maps


def train_further(run: Run, arm: Arm, extra: ExtraTraining, run_dir: str | Path | None = None, *,
                  progress: bool = False) -> list[dict[str, float]]:
    """Train a run of :func:`from_teacher` its further epochs, validating on its fixed windows, with
    the teacher's rate and schedule started again (a new optimiser, as a fine-tune is); with
    ``run_dir`` resumable, its config the teacher's spec with the arm and the extra stage."""
    spec = run.spec
    step = TrainingStep(run.model, run.loss_fn, lr=spec.lr, weight_decay=spec.weight_decay,
                        schedule=Schedule(spec.schedule, spec.warmup_steps), consistency=spec.consistency())
    config = {**spec.to_dict(), "arm": arm, **{f"extra_{k}": v for k, v in asdict(extra).items()}}
    return fit(step, run.train_loader, epochs=extra.epochs,
               validate=None if run.val_loader is None else validator(run.val_loader),
               checkpoints=Checkpoints(run_dir, config=config), resume=True,
               seed=spec.seed + extra.seed_offset, progress=progress)


def pseudo_label_quality(run: Run, maps: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per class, the precision and coverage of the labels ``maps`` hold beyond nothing, against the
    training images' masks (:func:`lc_utils.propagation.label_quality`): what the student is
    taught, and how much of each class it is taught."""
    base = run.base_train_set
    truths = {image_id: base.read_class_map(index) for index, image_id in enumerate(base.image_ids)}
    return label_quality(((maps[i], truths[i]) for i in base.image_ids), run.schema)
