"""Training: plain PyTorch in small pieces, resumed exactly from its checkpoints.

:func:`fit` is the loop, and it is given its pieces, each with a name of its own so that a
benchmark, a study or a new chapter can use one without the rest: :class:`TrainingStep` (one
optimiser step on one batch: forward, partial loss, backward, update, the learning rate's
:class:`Schedule`), :class:`lc_utils.checkpoints.Checkpoints` (which files a run folder gets and
when, and resume), a validation function (:func:`lc_utils.inference.validator`); :func:`train_epoch`
runs the steps of one epoch. Several processes (:mod:`lc_utils.distributed`) are handled by the
pieces, not by branches in the loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from . import distributed
from .checkpoints import Checkpoints
from .classes import IGNORE_INDEX
from .devices import autocast, device_of, resolve_device
from .distributed import EpochSampler
from .losses import PartialCrossEntropyLoss, consistency_loss
from .models import batchnorm_layers, segmentation_logits
from .transforms import strong_view
from .user_warnings import warn

ScheduleKind = Literal["poly", "cosine"] | None
SCHEDULES: tuple[str | None, ...] = (*get_args(Literal["poly", "cosine"]), None)
UNLABELLED_BATCHES_WARNING = 0.1
"""Share of an epoch's batches without a single labelled pixel above which :func:`fit` warns."""

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Logits (N, C, H, W) and labels (N, H, W; 255 unlabelled) in, a scalar loss out."""

Validate = Callable[[nn.Module], Mapping[str, float]]
"""What :func:`fit` calls after every epoch: the model in, scores named ``val_*`` out
(:func:`lc_utils.inference.validator`); ``val_mean_iou``, where present, picks the best epoch."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the weights were spoiled."""

    def __init__(self, value: float, lr: float, where: str = "") -> None:
        self.value, self.lr = value, lr
        at = f" at {where}" if where else ""
        super().__init__(f"loss became {value}{at} (lr {lr:.2e}); the weights of the last finished epoch "
                         "are in the checkpoints. Lower the learning rate or check the inputs for NaN.")


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, num_workers: int = 0,
                drop_last: bool | None = None, samples_per_epoch: int | None = None,
                seed: int = 0) -> DataLoader:
    """A DataLoader with sensible defaults for segmentation.

    ``drop_last`` defaults to ``shuffle`` (when there is more than one batch): a last batch of a
    single image would break batch normalisation in DeepLabV3's pooling branch.
    ``samples_per_epoch`` (with ``shuffle``) makes an epoch that many random crops: every image
    once per pass, in a new order each pass. On a small dataset (the sample's 45 training images
    make 5 batches) an epoch of a few passes keeps validation and checkpoints from dominating.

    Under ``torchrun`` (several processes, :mod:`lc_utils.distributed`) a training loader's
    ``batch_size`` is the global batch: each process loads ``batch_size / processes`` (an error
    if that does not divide) of an epoch shared out by
    :class:`~lc_utils.distributed.EpochSampler` (``seed`` orders it), so a step holds the same
    images whatever the number of processes. Without ``shuffle`` (validation) each process takes
    every n-th item, none twice, in batches of ``batch_size``; :func:`evaluate` sums the
    processes' confusion matrices.
    """
    size = samples_per_epoch or len(dataset)  # type: ignore[arg-type]
    if samples_per_epoch is not None and not shuffle:
        raise ValueError("samples_per_epoch needs shuffle=True")
    if drop_last is None:
        drop_last = shuffle and size > batch_size
    sampler = None
    if distributed.active():
        batch_size = distributed.per_rank_batch(batch_size) if shuffle else batch_size
        sampler, shuffle = EpochSampler(len(dataset), samples_per_epoch, shuffle=shuffle, seed=seed), False
    elif samples_per_epoch is not None:
        sampler, shuffle = RandomSampler(dataset, num_samples=samples_per_epoch), False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                      num_workers=num_workers, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      persistent_workers=num_workers > 0)


def _seed_epoch(seed: int, epoch: int) -> None:
    """Reseed every generator from (seed, epoch, and the process's rank under ``torchrun``): an
    epoch's shuffling, augmentation and dropout are then the same whether the run went straight
    through or was resumed, and differ between processes."""
    entropy = [seed, epoch] + ([distributed.rank()] if distributed.rank() else [])
    value = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)  # noqa: NPY002 - data pipelines still draw from the legacy global RNG
    torch.manual_seed(value)


def first_batch(loader: DataLoader, seed: int = 0) -> Any:
    """The first batch :func:`fit` trains on with ``seed``: every generator seeded as for epoch 0.
    Drawing it changes no later epoch (each one reseeds), so it is safe before training."""
    _seed_epoch(seed, 0)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(0)
    return next(iter(loader))


def lr_factor(step: int, total_steps: int, schedule: str | None = "poly", warmup_steps: int = 0) -> float:
    """The learning-rate multiplier at optimiser ``step`` (0-based) of ``total_steps``.

    A linear warm-up over ``warmup_steps`` (from 1/warmup to 1), then "poly" (``(1 - t) ** 0.9``),
    "cosine" (half a cosine from 1 to 0) or None (constant), with ``t`` the share of the steps after
    the warm-up. A warm-up lets a randomly initialised model take a high learning rate without the
    first large gradients throwing it off.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "poly":
        return (1 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """AdamW over every parameter of ``model``: what :func:`fit` uses unless it is given another."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


@dataclass(frozen=True)
class Schedule:
    """The learning rate over a run, as a multiple of the optimiser's: a linear warm-up over
    ``warmup_steps``, then ``kind`` (:func:`lr_factor`) over the rest of the steps. The number of
    steps is the run's, which :func:`fit` knows: it plans the schedule when it starts."""

    kind: ScheduleKind = "poly"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps cannot be negative, got {self.warmup_steps}")

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
        """The schedule of a run of ``total_steps`` optimiser steps, stepped once per step."""
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total_steps, self.kind, self.warmup_steps))


@dataclass(frozen=True)
class Consistency:
    """The consistency term on unlabelled pixels (:func:`lc_utils.losses.consistency_loss`): the
    model's confident predictions on a crop as targets for its predictions on a strong view of the
    same crop (:func:`lc_utils.transforms.strong_view`), added with ``weight`` after a linear
    warm-up over ``warmup_steps`` (early predictions are mostly wrong: targets from them would
    teach the errors)."""

    weight: float = 1.0
    threshold: float = 0.95
    warmup_steps: int = 100
    strength: float = 0.5
    seed: int = 0
    """Seeds the strong views, apart from the crops: a run with the term takes the same crops as
    one without it."""

    def __post_init__(self) -> None:
        if self.weight < 0 or self.warmup_steps < 0 or self.strength < 0:
            raise ValueError("consistency weight, warmup_steps and strength cannot be negative")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"consistency threshold must be in (0, 1], got {self.threshold}")

    def ramp(self, step: int) -> float:
        """The multiple of ``weight`` at optimiser ``step`` (0-based)."""
        return self.weight * min(1.0, step / self.warmup_steps) if self.warmup_steps else self.weight


class StepResult(NamedTuple):
    """What one training step did: the batch's loss and its labelled pixels (over every process
    under ``torchrun``: the loss; this process's share: the pixels)."""

    loss: float
    labelled_pixels: int


class TrainingStep:
    """One optimiser step on one batch: forward (mixed precision on CUDA), the partial loss (and the
    aux head's, weighted by ``aux_weight``, for a model that returns one), backward, update, and
    the learning-rate schedule. Call it with a batch of (images, labels).

    - ``loss_fn`` defaults to :class:`PartialCrossEntropyLoss` (labels 255 are unlabelled).
    - ``optimizer`` defaults to AdamW(``lr``, ``weight_decay``) over every parameter
      (:func:`make_optimizer`); ``schedule`` (None: a constant rate) is planned for the run's
      number of steps by :meth:`plan`, which :func:`fit` calls.
    - Building it prepares ``model`` for training where it will run: moved to ``device`` (the best
      there is by default: CUDA, then MPS, then CPU), in channels-last memory format
      (``channels_last``: 1.3-1.4x faster on a CPU here), wrapped in DistributedDataParallel under
      ``torchrun``. ``amp`` (bf16 or fp16 autocast) applies on CUDA only.

    A NaN or infinite loss raises :class:`NonFiniteLossError` before the weights change.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFunction | None = None,
                 optimizer: torch.optim.Optimizer | None = None, *, lr: float = 1e-3,
                 weight_decay: float = 1e-4, schedule: Schedule | None = Schedule(),
                 device: str | torch.device | None = None, amp: bool = True, channels_last: bool = True,
                 aux_weight: float = 0.4, consistency: Consistency | None = None) -> None:
        self.device = resolve_device(device)
        loss_fn = loss_fn or PartialCrossEntropyLoss()
        if isinstance(loss_fn, nn.Module):  # class weights and a logit adjustment are buffers to move
            loss_fn.to(self.device)
        self.optimizer = optimizer or make_optimizer(model, lr, weight_decay)
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.trained = distributed.wrap(model, self.device)  # what the steps run
        self.loss_fn, self.schedule = loss_fn, schedule
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.total_steps: int | None = None
        self.amp, self.channels_last, self.aux_weight = amp, channels_last, aux_weight
        self.consistency, self.steps_taken = consistency, 0
        use_scaler = amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    def plan(self, total_steps: int) -> None:
        """Set the schedule up for a run of ``total_steps`` optimiser steps (the rate of step 0)."""
        self.total_steps = total_steps
        if self.schedule is not None:
            self.scheduler = self.schedule.scheduler(self.optimizer, total_steps)

    def settings(self) -> dict[str, Any]:
        """What the step trains with, as a run's checkpoint records it (resuming compares them)."""
        defaults = self.optimizer.defaults
        schedule = self.schedule or Schedule(None)
        return {"lr": defaults.get("lr"), "weight_decay": defaults.get("weight_decay"),
                "schedule": schedule.kind, "warmup_steps": schedule.warmup_steps,
                "aux_weight": self.aux_weight,
                **({} if self.consistency is None else {"consistency": dataclasses.asdict(self.consistency)})}

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.optimizer.param_groups[0]["lr"]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> StepResult:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        labelled = int((labels != IGNORE_INDEX).sum())
        with autocast(self.device, self.amp):
            output = self.trained(images)
            logits = segmentation_logits(output, tuple(images.shape[-2:])).float()
            loss = self.loss_fn(logits, labels)
            if isinstance(output, Mapping) and isinstance(output.get("aux"), torch.Tensor):
                loss = loss + self.aux_weight * self.loss_fn(output["aux"].float(), labels)
            if self.consistency is not None and self.consistency.weight:
                loss = loss + self._consistency_term(images, logits, labels)
        loss, value = distributed.global_batch_loss(loss, labelled)
        if not math.isfinite(value):
            raise NonFiniteLossError(value, self.lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps_taken += 1
        return StepResult(value, labelled)

    def _consistency_term(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
                          ) -> torch.Tensor:
        """The consistency loss of this step's strong views against ``logits``, ramped up."""
        term = self.consistency
        views = torch.Generator(images.device).manual_seed(term.seed * 1_000_003 + self.steps_taken)
        strong = segmentation_logits(self.trained(strong_view(images, term.strength, views)),
                                     tuple(images.shape[-2:]))
        return term.ramp(self.steps_taken) * consistency_loss(strong, logits, labels, term.threshold)

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs besides the weights: optimiser, schedule, loss scaler."""
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.consistency is not None:  # where the warm-up of the term stands
            state["steps_taken"] = self.steps_taken
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.steps_taken = int(state.get("steps_taken", 0))


def train_epoch(step: TrainingStep, loader: DataLoader, epoch: int, epochs: int,
                progress: bool = True) -> dict[str, float]:
    """Run ``step`` over one epoch of ``loader`` (0-based ``epoch`` of ``epochs``, for the progress
    bar and error messages) and return its record: mean training loss, learning rate, seconds,
    images per second, labelled pixels per batch and batches without any label (summed over the
    processes under ``torchrun``)."""
    step.trained.train()
    started = time.perf_counter()
    loss_sum, n_images, labelled_pixels, unlabelled_batches = 0.0, 0, 0, 0
    # At most one redraw a second: every redraw of a notebook progress bar is a kernel message,
    # and a long cell that floods them loses some (nbval then waits for one that never comes).
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress, mininterval=1.0)
    for index, (images, labels) in enumerate(bar):
        try:
            loss, in_batch = step(images, labels)
        except NonFiniteLossError as error:
            raise NonFiniteLossError(error.value, error.lr, f"epoch {epoch + 1}, step {index + 1}") from None
        labelled_pixels += in_batch
        unlabelled_batches += in_batch == 0
        loss_sum += loss * len(images)
        n_images += len(images)
        bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{n_images / (time.perf_counter() - started):.1f}",
                        refresh=False)
    seconds = time.perf_counter() - started
    loss_sum, n_images, labelled_pixels, unlabelled_batches = distributed.sum_over_processes(
        loss_sum, n_images, labelled_pixels, unlabelled_batches)
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_images), "lr": step.lr,
            "seconds": seconds, "images_per_s": n_images / seconds,
            "labelled_px_per_batch": labelled_pixels / len(loader),
            "batches_without_labels": int(unlabelled_batches)}


def _training_images(loader: DataLoader) -> dict[str, str]:
    """``{"train_images": digest}`` of the full paths of the images a loader's dataset reads (none
    for a dataset without image files): a run resumed on another data folder or split is refused."""
    pairs = getattr(loader.dataset, "pairs", None)
    if not pairs:
        return {}
    paths = "\n".join(sorted(str(Path(image).resolve()) for image, _ in pairs))
    return {"train_images": hashlib.sha1(paths.encode()).hexdigest()[:16]}


def _warn_unlabelled(record: Mapping[str, float], steps_per_epoch: int) -> bool:
    """Warn (rank 0) when too many of an epoch's batches held no label; True if it warned."""
    unlabelled = record["batches_without_labels"]
    if unlabelled <= steps_per_epoch * UNLABELLED_BATCHES_WARNING or not distributed.is_main():
        return False
    warn(
        f"epoch {record['epoch']}: {unlabelled} of {steps_per_epoch} batches held no labelled "
        "pixel and taught the model nothing. Crop with make_transforms(labelled_crops=True), "
        "use larger crops or more points per image.")
    return True


def _epoch_line(record: Mapping[str, float], epochs: int, improved: bool) -> str:
    """One short line per epoch (the whole record is in the history): loss, validation mIoU, time."""
    parts = [f"loss {record['train_loss']:.3f}"]
    if "val_mean_iou" in record:
        parts.append(f"val mIoU {record['val_mean_iou']:.3f}")
    parts.append(f"{record['seconds'] + record.get('val_seconds', 0.0):.1f} s")
    return f"epoch {record['epoch']}/{epochs}: {', '.join(parts)}{' (best)' if improved else ''}"


def _validated(model: nn.Module, validate: Validate) -> dict[str, float]:
    started = time.perf_counter()
    distributed.broadcast_buffers(model)  # every process scores rank 0's batch-norm statistics
    return {**validate(model), "val_seconds": time.perf_counter() - started}


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, loader: DataLoader, batches: int = 20, *,
                         device: str | torch.device | None = None) -> nn.Module:
    """Recompute every batch-norm layer's running mean and variance from ``batches`` training
    batches with the weights as they are now (a plain average, no momentum); returns ``model``.

    Eval mode normalises with these running statistics. If they lag the weights (a short run with
    a small momentum) the eval-mode model scores far below the one that trained; comparing the
    validation score before and after this pass tells whether that happened.
    """
    device = device_of(model, device)
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    model.train()
    for step, (images, _) in enumerate(loader):
        if step >= batches:
            break
        model(images.to(device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.train(was_training)
    return model


def fit(
    step: TrainingStep | nn.Module,
    train_loader: DataLoader,
    *,
    epochs: int,
    validate: Validate | None = None,
    checkpoints: Checkpoints | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train for ``epochs`` and return the history, one dict per epoch.

    - ``step``: a :class:`TrainingStep` (the model, loss, optimiser, schedule, device), or a bare
      model, which gets the default one (partial cross-entropy, AdamW 1e-3, "poly"). The model
      is any module returning logits at its input's size, or torchvision's segmentation models as
      they come (:func:`lc_utils.models.segmentation_logits`). The step's schedule is planned for
      ``epochs`` times the loader's batches.
    - ``validate`` (e.g. :func:`lc_utils.inference.validator` of a loader with dense labels)
      scores the model after every epoch; its ``val_mean_iou`` picks the best epoch.
    - ``checkpoints`` (:class:`lc_utils.checkpoints.Checkpoints`): the run folder's files, at the
      best validation mIoU (lowest training loss without validation) and every ``every`` epochs;
      ``resume=True`` continues from ``last.pt`` exactly as if the run had not stopped, and
      refuses a run made with another config (what the run is: :class:`lc_utils.run_spec.RunSpec`
      gives one), other training settings, or other training images (the full paths the loader's
      dataset reads: another data folder or split).
    - Every epoch prints one line (loss, validation mIoU, seconds) and reseeds all generators
      from (``seed``, epoch). The history records the training loss, learning rate, seconds
      (training and validation apart), labelled pixels per batch and batches without any label;
      ``fit`` warns once when more than :data:`UNLABELLED_BATCHES_WARNING` of an epoch's batches
      held no label.
    - A NaN or infinite loss stops training with :class:`NonFiniteLossError`; checkpoints keep
      the last good epoch.

    Under ``torchrun`` (a process group of :mod:`lc_utils.distributed`, joined before calling
    ``fit``) the model trains as DistributedDataParallel: the loss of each step is the mean over the
    labelled pixels of the whole global batch, as in one process; validation sums every process's
    confusion matrix; only rank 0 prints and writes files; loaders from :func:`make_loader` share
    each epoch out (their sampler's ``set_epoch`` is called). A run resumes with another number
    of processes as long as the global batch stays the same.

    ``pd.DataFrame(history)`` turns the result into a table.
    """
    progress = progress and distributed.is_main()
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batch (dataset smaller than a batch with drop_last?)")
    step = step if isinstance(step, TrainingStep) else TrainingStep(step)
    model = step.model
    step.plan(epochs * steps_per_epoch)
    checkpoints = (checkpoints or Checkpoints(None)).including(
        config={"epochs": epochs, **step.settings(), "seed": seed, "steps_per_epoch": steps_per_epoch,
                **_training_images(train_loader)},
        model_config={"backbone": getattr(model, "backbone_name", None),
                      "num_classes": getattr(model, "num_classes", None)})
    history, best, start_epoch = [], -math.inf, 0
    if resume:
        history, best, start_epoch = checkpoints.resume(model, step, epochs, progress)
    warned = False
    for epoch in range(start_epoch, epochs):
        _seed_epoch(seed, epoch)
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        record = train_epoch(step, train_loader, epoch, epochs, progress)
        warned = warned or _warn_unlabelled(record, steps_per_epoch)
        if validate is not None:
            record.update(_validated(model, validate))
        history.append(record)
        score = record.get("val_mean_iou", -record["train_loss"])
        improved = score > best
        best = max(best, score)
        if progress:
            print(_epoch_line(record, epochs, improved))
        checkpoints.save(model, step, history, best, improved, epochs)
    return history
