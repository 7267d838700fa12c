"""The training loop: plain PyTorch, with checkpoints that survive interruptions and exact resume."""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from . import distributed
from .classes import IGNORE_INDEX, ClassSchema
from .distributed import EpochSampler
from .inference import device_of, inference_memory_format, memory_format, predict_tiled
from .losses import PartialCrossEntropyLoss
from .metrics import ConfusionMatrix
from .models import batchnorm_layers, build_deeplabv3, segmentation_logits
from .settings import autocast, dataset_tag, resolve_device

LAST, BEST = "last.pt", "best.pt"
SCHEDULES: tuple[str | None, ...] = ("poly", "cosine", None)
UNLABELLED_BATCHES_WARNING = 0.1
"""Share of an epoch's batches without a single labelled pixel above which :func:`fit` warns."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the weights were spoiled."""


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


def _make_scheduler(optimizer: torch.optim.Optimizer, schedule: str | None, total_steps: int,
                    warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, total_steps, schedule, warmup_steps)  # fails early on a bad schedule name
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, schedule, warmup_steps))


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def dataset_schema(dataset: object) -> ClassSchema | None:
    """The class schema a dataset (or the dataset a :class:`~lc_utils.datasets.WindowDataset`
    cuts) carries, or ``None``."""
    while dataset is not None:
        if isinstance(getattr(dataset, "schema", None), ClassSchema):
            return dataset.schema
        dataset = getattr(dataset, "dataset", None)
    return None


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int | None = None, *,
             device: str | torch.device | None = None, amp: bool = True,
             ignore_index: int = IGNORE_INDEX, tile_size: int = 512,
             schema: ClassSchema | None = None) -> ConfusionMatrix:
    """Predict every batch of ``loader`` and accumulate one confusion matrix.

    Batches of images up to ``tile_size`` go through the model whole; larger images (a
    2448 x 2448 DeepGlobe tile) are predicted window by window with
    :func:`lc_utils.inference.predict_tiled`, so memory stays bounded. Either way in the memory
    format :func:`lc_utils.inference.inference_memory_format` picks for the device, on the device
    the model is on. ``num_classes`` defaults to the model's ``num_classes``, else to the
    number of channels its logits have. ``schema`` (names, the class left out of headline means)
    defaults to the schema of the loader's dataset, where it has one.
    """
    device = device_of(model, device)
    schema = schema or dataset_schema(loader.dataset)

    def new_confusion(count: int) -> ConfusionMatrix:
        if schema is None:  # the matrix's own default for ``count`` classes
            return ConfusionMatrix(count, ignore_index)
        return ConfusionMatrix(count, ignore_index, schema)

    fmt = inference_memory_format(device)
    was_training = model.training
    model.eval()
    num_classes = num_classes or getattr(model, "num_classes", None)
    confusion = new_confusion(num_classes) if num_classes else None
    with memory_format(model, fmt):
        for images, labels in loader:
            if max(images.shape[-2:]) > tile_size:
                for image, label in zip(images, labels):
                    if confusion is None:  # the class count from the probabilities, once
                        prediction, probs = predict_tiled(model, image, tile_size=tile_size, amp=amp,
                                                          return_probs=True)
                        confusion = new_confusion(probs.shape[0])
                    else:
                        prediction = predict_tiled(model, image, tile_size=tile_size, amp=amp)
                    confusion.update(torch.from_numpy(prediction), label)
                continue
            with autocast(device, amp):
                logits = segmentation_logits(
                    model(images.to(device, non_blocking=True).contiguous(memory_format=fmt)),
                    tuple(images.shape[-2:]))
            confusion = confusion or new_confusion(logits.shape[1])
            confusion.update(logits.argmax(1), labels.to(device))
    model.train(was_training)
    if confusion is None and distributed.active() and num_classes:
        confusion = new_confusion(num_classes)  # this process's share was empty
    if confusion is None:
        raise ValueError("the loader yielded no batch: nothing to evaluate")
    if distributed.active():  # the counts of every process's images, summed (not averaged means)
        summed = distributed.all_reduce_sum(torch.as_tensor(confusion.matrix))
        confusion = ConfusionMatrix.from_counts(summed, ignore_index, confusion.schema)
    return confusion


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
    val_loader: DataLoader | None = None,
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
    - ``num_classes`` (for validation) defaults to the model's, else to its logits' channels.
    - Optimiser AdamW(``lr``, ``weight_decay``) unless one is given; ``schedule`` "poly",
      "cosine" or None after ``warmup_steps`` of linear warm-up (:func:`lr_factor`), stepped
      every batch.
    - Device: CUDA, then MPS, then CPU. ``amp`` (bf16 or fp16 autocast) applies on CUDA only;
      ``channels_last`` memory format for training on every device (1.3-1.4x faster on a CPU
      here); validation runs in the format :func:`lc_utils.inference.inference_memory_format`
      picks (channels-last on a CPU and on CUDA).
    - ``val_loader`` (dense labels): validation mean IoU (unknown class excluded) every epoch.
    - ``run_dir``: ``best.pt`` (model weights, epoch, config and history) at the best validation
      mIoU, or lowest training loss without validation; ``last.pt`` every ``checkpoint_every``
      epochs with the optimiser, scheduler and RNG state besides, for ``resume=True`` to continue
      exactly as if the run had not stopped (a Colab disconnect costs at most
      ``checkpoint_every`` epochs); at the end ``last.pt`` keeps the final weights only (AdamW's
      state is twice the weights, and a finished run has nothing to resume); ``history.csv``.
      Every file is written atomically. Every epoch reseeds all generators from (``seed``, epoch).
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
    device = resolve_device(device)
    progress = progress and distributed.is_main()
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    num_classes = num_classes or getattr(model, "num_classes", None)
    loss_fn = loss_fn or PartialCrossEntropyLoss()
    if isinstance(loss_fn, nn.Module):  # class weights and a logit adjustment are buffers to move
        loss_fn.to(device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    trained = model  # what the steps run: the model itself, or its DistributedDataParallel wrapper
    if distributed.active():
        device_ids = [device.index] if device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batch (dataset smaller than a batch with drop_last?)")
    scheduler = _make_scheduler(optimizer, schedule, epochs * steps_per_epoch, warmup_steps)
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    run_config = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "schedule": schedule,
                  "warmup_steps": warmup_steps, "seed": seed, "aux_weight": aux_weight,
                  "steps_per_epoch": steps_per_epoch,
                  **dict(config or {})}
    model_config = {"backbone": getattr(model, "backbone_name", None), "num_classes": num_classes}

    history: list[dict[str, float]] = []
    best = -math.inf
    start_epoch = 0
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and run_dir is not None and (run_dir / LAST).is_file():
        state = load_checkpoint(run_dir / LAST, map_location=device)
        if state["config"] != run_config:
            changed = sorted(k for k in run_config if state["config"].get(k) != run_config[k])
            raise ValueError(f"{run_dir / LAST} was trained with other settings ({', '.join(changed)}); "
                             "resume with the same settings or start a new run_dir")
        model.load_state_dict(state["model"])
        if "optimizer" in state:  # a finished run's last.pt keeps the weights only
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
        history, best, start_epoch = list(state["history"]), state["best"], state["epoch"] + 1
        if progress and start_epoch >= epochs:
            print(f"{run_dir / LAST} has finished all {epochs} epochs; nothing left to train")
        elif progress:
            print(f"Resuming from {run_dir / LAST}: epoch {start_epoch + 1} of {epochs}")

    warned = False
    for epoch in range(start_epoch, epochs):
        _seed_epoch(seed, epoch)
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        trained.train()
        started = time.perf_counter()
        loss_sum, n_images, labelled_pixels, unlabelled_batches = 0.0, 0, 0, 0
        # At most one redraw a second: every redraw of a notebook progress bar is a kernel message,
        # and a long cell that floods them loses some (nbval then waits for one that never comes).
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress,
                   mininterval=1.0)
        for step, (images, labels) in enumerate(bar):
            images = _to_device(images, device, channels_last)
            labels = labels.to(device, non_blocking=True)
            in_batch = int((labels != IGNORE_INDEX).sum())
            labelled_pixels += in_batch
            unlabelled_batches += in_batch == 0
            with autocast(device, amp):
                output = trained(images)
                loss = loss_fn(segmentation_logits(output, tuple(images.shape[-2:])).float(), labels)
                if isinstance(output, Mapping) and isinstance(output.get("aux"), torch.Tensor):
                    loss = loss + aux_weight * loss_fn(output["aux"].float(), labels)
            if distributed.active():
                loss, value = _global_batch_loss(loss, in_batch)
            else:
                value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss became {value} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {optimizer.param_groups[0]['lr']:.2e}); the weights of the last finished epoch "
                    "are in the checkpoints. Lower the learning rate or check the inputs for NaN.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += value * len(images)
            n_images += len(images)
            bar.set_postfix(loss=f"{value:.3f}", img_s=f"{n_images / (time.perf_counter() - started):.1f}",
                            refresh=False)
        seconds = time.perf_counter() - started
        if distributed.active():  # the epoch of every process together
            totals = distributed.all_reduce_sum(torch.tensor(
                [loss_sum, n_images, labelled_pixels, unlabelled_batches], dtype=torch.float64))
            loss_sum, n_images, labelled_pixels, unlabelled_batches = totals.tolist()
            unlabelled_batches = int(unlabelled_batches)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_images),
                  "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "images_per_s": n_images / seconds,
                  "labelled_px_per_batch": labelled_pixels / steps_per_epoch,
                  "batches_without_labels": unlabelled_batches}
        too_many = unlabelled_batches > steps_per_epoch * UNLABELLED_BATCHES_WARNING
        if too_many and not warned and distributed.is_main():
            warned = True
            warnings.warn(
                f"epoch {epoch + 1}: {unlabelled_batches} of {steps_per_epoch} batches held no labelled "
                "pixel and taught the model nothing. Crop with make_transforms(labelled_crops=True), "
                "use larger crops or more points per image.", stacklevel=2)
        if val_loader is not None:
            started = time.perf_counter()
            distributed.broadcast_buffers(model)  # every process scores rank 0's batch-norm statistics
            summary = evaluate(model, val_loader, num_classes, device=device, amp=amp).summary()
            record.update(val_mean_iou=summary["mean_iou"], val_pixel_accuracy=summary["pixel_accuracy"],
                          val_seconds=time.perf_counter() - started)
        history.append(record)
        score = record.get("val_mean_iou", -record["train_loss"])
        improved = score > best
        best = max(best, score)
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "lr"))
            print(f"epoch {epoch + 1}/{epochs}: {shown}{' (best)' if improved else ''}")
        if run_dir is not None and distributed.is_main():
            state = {"model": model.state_dict(), "epoch": epoch, "config": run_config,
                     "model_config": model_config, "history": history, "best": best}
            if improved:  # the weights alone: a third of the size, and all that testing needs
                save_checkpoint(state, run_dir / BEST)
            finished = epoch == epochs - 1
            if finished:  # nothing left to resume: the optimiser's state would only weigh
                save_checkpoint(state, run_dir / LAST)
            elif (epoch + 1) % checkpoint_every == 0:
                resume_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict(), "rng": _rng_state()}
                save_checkpoint({**state, **resume_state}, run_dir / LAST)
            pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
    return history


def _global_batch_loss(loss: torch.Tensor, labelled: int) -> tuple[torch.Tensor, float]:
    """This process's share of the global batch's loss, and that loss's value.

    ``loss`` averages over this process's ``labelled`` pixels. DistributedDataParallel averages
    the gradients of the processes, so the loss is scaled to ``processes x labelled / all labelled``:
    the gradient is then the one of the mean over every labelled pixel of the global batch, as in a
    single process, however the labels fall between the processes. (Exact for an unweighted loss;
    with class weights the mean is over each process's weights.)
    """
    totals = distributed.all_reduce_sum(torch.tensor([float(labelled), float(loss.detach()) * labelled],
                                                     dtype=torch.float64))
    all_labelled = max(float(totals[0]), 1.0)
    value = float(totals[1]) / all_labelled if totals[0] > 0 else float(loss.detach())
    return loss * (distributed.world_size() * labelled / all_labelled), value


def default_run_name(data_root: str | Path, prefix: str = "sparse") -> str:
    """A run folder name that keeps datasets and modes apart, e.g. ``sparse_tiles_512_fast``."""
    return f"{prefix}_{dataset_tag(data_root)}"


def load_trained_model(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild the DeepLabV3 saved in a checkpoint of :func:`fit` and load its weights (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here. Train a model first (notebook 04 writes one).")
    state = load_checkpoint(path)
    model_config = state.get("model_config") or {}
    if not model_config.get("backbone"):
        raise ValueError(f"{path}: the checkpoint does not say which model it holds")
    model = build_deeplabv3(model_config["num_classes"], model_config["backbone"])
    weights = {k: v for k, v in state["model"].items() if not k.startswith("net.aux_classifier.")}
    model.load_state_dict(weights)
    return model.to(resolve_device(device)).eval()
