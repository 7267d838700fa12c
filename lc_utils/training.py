"""Training: plain PyTorch in small pieces, with checkpoints that survive interruptions and exact resume.

:func:`fit` is the loop; what it calls each has a name of its own, so that a benchmark, a study or
a new chapter can use one piece without the rest: :class:`TrainingStep` (one optimiser step on
one batch: forward, partial loss, backward, update), :func:`train_epoch` (the steps of one epoch,
with their progress bar and totals), :class:`Checkpoints` (``best.pt``, ``last.pt``,
``history.csv`` and resume). Validation is a function ``fit`` is given
(:func:`lc_utils.inference.validator`); several processes (:mod:`lc_utils.distributed`) are
handled by the pieces, not by branches in the loop.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from . import distributed
from .classes import IGNORE_INDEX
from .devices import autocast, device_of, resolve_device
from .distributed import EpochSampler
from .losses import PartialCrossEntropyLoss
from .models import batchnorm_layers, build_deeplabv3, segmentation_logits
from .user_warnings import warn

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.csv"
SCHEDULES: tuple[str | None, ...] = ("poly", "cosine", None)
UNLABELLED_BATCHES_WARNING = 0.1
"""Share of an epoch's batches without a single labelled pixel above which :func:`fit` warns."""

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


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` atomically: a temporary file, then a rename.

    An interruption mid-write (a Colab disconnect, a full disk) leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    return torch.load(path, map_location=map_location, weights_only=True)


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002 - saving the global RNG on purpose
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restoring the global RNG on purpose
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str | None, total_steps: int,
                   warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of :func:`lr_factor`, stepped once per optimiser step."""
    lr_factor(0, total_steps, schedule, warmup_steps)  # fails early on a bad schedule name
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, schedule, warmup_steps))


class StepResult(NamedTuple):
    """What one training step did: the batch's loss and its labelled pixels (over every process
    under ``torchrun``: the loss; this process's share: the pixels)."""

    loss: float
    labelled_pixels: int


class TrainingStep:
    """One optimiser step on one batch: forward (mixed precision on CUDA), the partial loss (and the
    aux head's, weighted by ``aux_weight``, for a model that returns one), backward, update, and
    the learning-rate schedule. Call it with a batch of (images, labels).

    Building it prepares ``model`` for training where it will run: moved to ``device`` (the best
    there is by default), in channels-last memory format (``channels_last``: 1.3-1.4x faster on a
    CPU here), wrapped in DistributedDataParallel under ``torchrun``. A NaN or infinite loss raises
    :class:`NonFiniteLossError` before the weights change.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, *,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 device: str | torch.device | None = None, amp: bool = True, channels_last: bool = True,
                 aux_weight: float = 0.4) -> None:
        self.device = resolve_device(device)
        if isinstance(loss_fn, nn.Module):  # class weights and a logit adjustment are buffers to move
            loss_fn.to(self.device)
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.trained = distributed.wrap(model, self.device)  # what the steps run
        self.loss_fn, self.optimizer, self.scheduler = loss_fn, optimizer, scheduler
        self.amp, self.channels_last, self.aux_weight = amp, channels_last, aux_weight
        use_scaler = amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

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
            loss = self.loss_fn(segmentation_logits(output, tuple(images.shape[-2:])).float(), labels)
            if isinstance(output, Mapping) and isinstance(output.get("aux"), torch.Tensor):
                loss = loss + self.aux_weight * self.loss_fn(output["aux"].float(), labels)
        loss, value = distributed.global_batch_loss(loss, labelled)
        if not math.isfinite(value):
            raise NonFiniteLossError(value, self.lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return StepResult(value, labelled)

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs besides the weights: optimiser, schedule, loss scaler."""
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


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


_CONFIG_DEFAULTS: dict[str, Any] = {}


def register_config_defaults(defaults: Mapping[str, Any]) -> None:
    """What a key missing from an older checkpoint's config stands for: a field added to the run
    description since (:class:`lc_utils.runs.RunSpec` registers its defaults), whose default is how
    the run was made before it existed. Resuming compares with these filled in."""
    _CONFIG_DEFAULTS.update(defaults)


@dataclass
class Checkpoints:
    """A run folder's files and when they are written.

    ``best.pt`` (model weights, epoch, config and history) at every new best score; ``last.pt``
    every ``every`` epochs with the optimiser, schedule, loss scaler and RNG state besides, so that
    :meth:`resume` continues exactly as if the run had not stopped (a Colab disconnect costs at
    most ``every`` epochs); at the end ``last.pt`` keeps the final weights only (AdamW's state is
    twice the weights, and a finished run has nothing to resume); ``history.csv`` every epoch.
    Every file is written atomically, by rank 0 only. Without ``run_dir`` nothing is written.
    """

    run_dir: Path | None
    every: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    """What the run is (settings, data, labels): resuming with other values is an error."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """What :func:`load_trained_model` needs to rebuild the model."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {self.every}")
        self.run_dir = Path(self.run_dir) if self.run_dir is not None else None

    def resume(self, model: nn.Module, step: TrainingStep, epochs: int, progress: bool = True
               ) -> tuple[list[dict[str, float]], float, int]:
        """Load ``last.pt`` into ``model`` and ``step`` where there is one; return the history so far,
        the best score and the first epoch left to train (an empty history, -inf and 0 otherwise)."""
        if self.run_dir is None or not (self.run_dir / LAST).is_file():
            return [], -math.inf, 0
        path = self.run_dir / LAST
        state = load_checkpoint(path, map_location=step.device)
        added_since = {k: _CONFIG_DEFAULTS[k] for k in self.config
                       if k not in state["config"] and k in _CONFIG_DEFAULTS}
        saved = {**added_since, **state["config"]}
        if saved != self.config:
            changed = sorted(k for k in {*self.config, *saved} if saved.get(k) != self.config.get(k))
            what = "other settings"
            if "train_images" in changed:
                changed.remove("train_images")
                what = "other images (another data folder or split)"
                what += " and other settings" if changed else ""
            detail = f" ({', '.join(changed)})" if changed else ""
            raise ValueError(f"{path} was trained on {what}{detail}; resume with the same data and settings "
                             "or start a new run_dir")
        model.load_state_dict(state["model"])
        if "optimizer" in state:  # a finished run's last.pt keeps the weights only
            step.load_state_dict(state)
            _set_rng_state(state["rng"])
        start = state["epoch"] + 1
        if progress and start >= epochs:
            print(f"{path} has finished all {epochs} epochs; nothing left to train")
        elif progress:
            print(f"Resuming from {path}: epoch {start + 1} of {epochs}")
        return list(state["history"]), state["best"], start

    def save(self, model: nn.Module, step: TrainingStep, history: list[dict[str, float]], best: float,
             improved: bool, epochs: int) -> None:
        """Write the files due after the last epoch of ``history``."""
        if self.run_dir is None or not distributed.is_main():
            return
        epoch = len(history) - 1
        state = {"model": model.state_dict(), "epoch": epoch, "config": self.config,
                 "model_config": self.model_config, "history": history, "best": best}
        if improved:  # the weights alone: a third of the size, and all that testing needs
            save_checkpoint(state, self.run_dir / BEST)
        if epoch == epochs - 1:  # nothing left to resume: the optimiser's state would only weigh
            save_checkpoint(state, self.run_dir / LAST)
        elif (epoch + 1) % self.every == 0:
            save_checkpoint({**state, **step.state_dict(), "rng": _rng_state()}, self.run_dir / LAST)
        pd.DataFrame(history).to_csv(self.run_dir / HISTORY, index=False)


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
    model: nn.Module,
    train_loader: DataLoader,
    *,
    epochs: int,
    validate: Validate | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    schedule: str | None = "poly",
    warmup_steps: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    channels_last: bool = True,
    run_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    aux_weight: float = 0.4,
    num_classes: int | None = None,
    config: Mapping[str, Any] | None = None,
    checkpoint_every: int = 1,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` and return the history, one dict per epoch.

    - ``model``: any module returning logits at its input's size, or torchvision's segmentation
      models as they come (:func:`lc_utils.models.segmentation_logits`); it is moved to ``device``.
    - ``loss_fn`` defaults to :class:`PartialCrossEntropyLoss` (labels 255 are unlabelled);
      a model that returns ``{"out", "aux"}`` adds ``aux_weight`` times the aux head's loss.
    - Optimiser AdamW(``lr``, ``weight_decay``) unless one is given; ``schedule`` "poly",
      "cosine" or None after ``warmup_steps`` of linear warm-up (:func:`lr_factor`), stepped
      every batch.
    - Device: CUDA, then MPS, then CPU. ``amp`` (bf16 or fp16 autocast) applies on CUDA only;
      ``channels_last`` memory format for training on every device (:class:`TrainingStep`).
    - ``validate`` (e.g. :func:`lc_utils.inference.validator` of a loader with dense labels)
      scores the model after every epoch; its ``val_mean_iou`` picks the best epoch.
    - ``run_dir``: checkpoints and history (:class:`Checkpoints`), at the best validation mIoU
      (lowest training loss without validation) and every ``checkpoint_every`` epochs;
      ``resume=True`` continues from ``last.pt`` exactly as if the run had not stopped, and
      refuses a run made with another ``config`` (what the run is: its data, labels and settings;
      :class:`lc_utils.runs.RunSpec` gives one), other training settings, or other training
      images (the full paths the loader's dataset reads: another data folder or split). Every
      epoch prints one line (loss, validation mIoU, seconds) and reseeds all
      generators from (``seed``, epoch). ``num_classes`` (default: the model's) is saved for
      :func:`load_trained_model`.
    - The history records the training loss, learning rate, seconds (training and validation
      apart), labelled pixels per batch and batches without any label; ``fit`` warns once when
      more than :data:`UNLABELLED_BATCHES_WARNING` of an epoch's batches held no label.
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
    checkpoints = Checkpoints(
        run_dir, checkpoint_every,
        config={"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "schedule": schedule,
                "warmup_steps": warmup_steps, "seed": seed, "aux_weight": aux_weight,
                "steps_per_epoch": steps_per_epoch, **_training_images(train_loader),
                **dict(config or {})},
        model_config={"backbone": getattr(model, "backbone_name", None),
                      "num_classes": num_classes or getattr(model, "num_classes", None)})
    optimizer = optimizer or make_optimizer(model, lr, weight_decay)
    step = TrainingStep(model, loss_fn or PartialCrossEntropyLoss(), optimizer,
                        scheduler=make_scheduler(optimizer, schedule, epochs * steps_per_epoch, warmup_steps),
                        device=device, amp=amp, channels_last=channels_last, aux_weight=aux_weight)
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


def load_trained_model(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild the DeepLabV3 saved in a checkpoint of :func:`fit` and load its weights (eval mode).
    ``crop_size`` on the model is the training crop the checkpoint's run spec names (None where it
    names none): the window it predicts best in (notebook 05)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here. Train a model first (notebook 04 writes one).")
    return model_from_checkpoint(load_checkpoint(path), path, device)


def model_from_checkpoint(state: Mapping[str, Any], source: str | Path,
                          device: str | torch.device | None = None) -> nn.Module:
    """The trained model of a checkpoint already read (:func:`load_trained_model` without reading
    the file); ``source`` names it in errors."""
    model_config = state.get("model_config") or {}
    if not model_config.get("backbone"):
        raise ValueError(f"{source}: the checkpoint does not say which model it holds")
    model = build_deeplabv3(model_config["num_classes"], model_config["backbone"])
    weights = {k: v for k, v in state["model"].items() if not k.startswith("net.aux_classifier.")}
    model.load_state_dict(weights)
    model.crop_size = (state.get("config") or {}).get("crop")
    return model.to(resolve_device(device)).eval()
