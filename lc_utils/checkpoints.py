"""Checkpoints: the one file format of a trained run, and when a run writes it.

:class:`Checkpoint` is what ``best.pt`` and ``last.pt`` hold (weights, the last finished epoch,
what the run is, how to rebuild its model, its history and best score, and, while a run can still
resume, the optimiser's, schedule's, loss scaler's and random generators' state). Every reader of
a checkpoint (resuming, :func:`lc_utils.models.load_trained_model`, :func:`lc_utils.runs.load_run`,
notebook 04) goes through it. :class:`Checkpoints` is the policy :func:`lc_utils.training.fit` is
given: which files a run folder gets, when, and the refusal to resume a run made otherwise.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import distributed
from .saved_files import atomic_write

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.csv"
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "steps_taken")
"""What a resumable ``last.pt`` holds besides the weights (a finished run's file drops them)."""


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` atomically (:func:`lc_utils.saved_files.atomic_write`):
    an interruption mid-write (a Colab disconnect, a full disk) leaves the previous file intact."""
    path = Path(path)
    with atomic_write(path, "wb") as file:
        torch.save(dict(state), file)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw dictionary of a checkpoint file (tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    return torch.load(path, map_location=map_location, weights_only=True)


@dataclass
class Checkpoint:
    """What a checkpoint of :func:`lc_utils.training.fit` holds, read or to be written."""

    weights: dict[str, torch.Tensor]
    """The model's state dict."""
    epoch: int
    """The last finished epoch, 0-based."""
    config: dict[str, Any] = field(default_factory=dict)
    """What the run is: the training settings and, from a run spec, every field of it."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """What rebuilding the model needs (``backbone``, ``num_classes``)."""
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = -math.inf
    """The best score so far (validation mIoU, or minus the training loss without validation)."""
    resume_state: dict[str, Any] | None = None
    """The optimiser's, schedule's, loss scaler's and generators' state (:data:`RESUME_KEYS`);
    None in ``best.pt`` and in a finished run's ``last.pt``."""

    @classmethod
    def from_state(cls, state: Mapping[str, Any], source: str | Path = "checkpoint") -> Checkpoint:
        """The checkpoint in a dictionary read from a file; ``source`` names it in errors."""
        if not isinstance(state, Mapping) or not isinstance(state.get("model"), Mapping):
            raise ValueError(f"{source}: not a checkpoint of lc_utils (no model weights in it)")
        resume = {key: state[key] for key in RESUME_KEYS if key in state}
        return cls(dict(state["model"]), int(state.get("epoch", -1)), dict(state.get("config") or {}),
                   dict(state.get("model_config") or {}), list(state.get("history") or []),
                   float(state.get("best", -math.inf)), resume or None)

    @classmethod
    def read(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read ``path`` (an error naming it where there is no file or no checkpoint in it)."""
        return cls.from_state(load_checkpoint(path, map_location), path)

    def to_state(self) -> dict[str, Any]:
        """The dictionary the file holds (the keys every earlier checkpoint used)."""
        state = {"model": self.weights, "epoch": self.epoch, "config": self.config,
                 "model_config": self.model_config, "history": self.history, "best": self.best}
        return {**state, **(self.resume_state or {})}

    def write(self, path: str | Path) -> Path:
        """Write the checkpoint to ``path`` atomically."""
        return save_checkpoint(self.to_state(), path)

    @property
    def epochs(self) -> int | None:
        """The epochs the run was planned for (None where the config does not say)."""
        return self.config.get("epochs")

    @property
    def finished(self) -> bool:
        """Whether the run trained all its epochs."""
        return self.epochs is not None and self.epoch + 1 >= self.epochs


def weights_in(state: Any) -> Any:
    """The model weights of a loaded file: a checkpoint's ``model`` entry, else the file as it is
    (a plain state dict); how a weights file and a checkpoint are told apart."""
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        return state["model"]
    return state


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A short digest of weights (a state dict, or any part of one): equal for equal names and
    values, whatever device or memory format they are in."""
    digest = hashlib.sha1()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def rng_state() -> dict[str, Any]:
    """Every random generator's state (Python, NumPy's global, torch, CUDA), in tensors and plain
    values that ``torch.load(weights_only=True)`` reads back."""
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


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restoring the global RNG on purpose
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Resumable(Protocol):
    """What a checkpoint saves and restores of a training step besides the weights."""

    device: torch.device

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass
class Checkpoints:
    """A run folder's files and when they are written: the policy :func:`lc_utils.training.fit`
    is given.

    ``best.pt`` (weights, epoch, config and history) at every new best score; ``last.pt`` every
    ``every`` epochs with the optimiser, schedule, loss scaler and generators' state besides, so
    that :meth:`resume` continues exactly as if the run had not stopped (a Colab disconnect costs
    at most ``every`` epochs); at the end ``last.pt`` keeps the final weights only (AdamW's state
    is twice the weights, and a finished run has nothing to resume); ``history.csv`` every epoch.
    Every file is written atomically, by rank 0 only. Without ``run_dir`` nothing is written.
    """

    run_dir: str | Path | None
    every: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    """What the run is (settings, data, labels): resuming with other values is an error."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """What :func:`lc_utils.models.load_trained_model` needs to rebuild the model."""
    config_defaults: dict[str, Any] = field(default_factory=dict)
    """What a key missing from an older checkpoint's config stands for: a setting added since,
    whose default is how runs were made before it existed (a run spec's defaults). Resuming
    compares with these filled in."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {self.every}")
        self.run_dir = Path(self.run_dir) if self.run_dir is not None else None

    def including(self, config: Mapping[str, Any], model_config: Mapping[str, Any]) -> Checkpoints:
        """A copy whose config and model config also hold ``config`` and ``model_config`` (what the
        training loop knows of the run), the values given here first winning."""
        return replace(self, config={**config, **self.config},
                       model_config={**model_config, **{k: v for k, v in self.model_config.items()
                                                        if v is not None}})

    def resume(self, model: nn.Module, step: Resumable, epochs: int, progress: bool = True
               ) -> tuple[list[dict[str, float]], float, int]:
        """Load ``last.pt`` into ``model`` and ``step`` where there is one; return the history so far,
        the best score and the first epoch left to train (an empty history, -inf and 0 otherwise)."""
        if self.run_dir is None or not (self.run_dir / LAST).is_file():
            return [], -math.inf, 0
        path = self.run_dir / LAST
        saved = Checkpoint.read(path, map_location=step.device)
        added_since = {k: self.config_defaults[k] for k in self.config
                       if k not in saved.config and k in self.config_defaults}
        self._refuse_other_run(path, {**added_since, **saved.config})
        model.load_state_dict(saved.weights)
        if saved.resume_state is not None:  # a finished run's last.pt keeps the weights only
            step.load_state_dict(saved.resume_state)
            set_rng_state(saved.resume_state["rng"])
        start = saved.epoch + 1
        if progress and start >= epochs:
            print(f"{path} has finished all {epochs} epochs; nothing left to train")
        elif progress:
            print(f"Resuming from {path}: epoch {start + 1} of {epochs}")
        return list(saved.history), saved.best, start

    def _refuse_other_run(self, path: Path, saved: Mapping[str, Any]) -> None:
        if saved == self.config:
            return
        changed = sorted(k for k in {*self.config, *saved} if saved.get(k) != self.config.get(k))
        what = "other settings"
        if "train_images" in changed:
            changed.remove("train_images")
            what = "other images (another data folder or split)" + (" and other settings" if changed else "")
        detail = f" ({', '.join(changed)})" if changed else ""
        raise ValueError(f"{path} was trained on {what}{detail}; resume with the same data and settings "
                         "or start a new run_dir")

    def save(self, model: nn.Module, step: Resumable, history: list[dict[str, float]], best: float,
             improved: bool, epochs: int) -> None:
        """Write the files due after the last epoch of ``history``."""
        if self.run_dir is None or not distributed.is_main():
            return
        epoch = len(history) - 1
        checkpoint = Checkpoint(model.state_dict(), epoch, self.config, self.model_config, history, best)
        if improved:  # the weights alone: a third of the size, and all that testing needs
            checkpoint.write(self.run_dir / BEST)
        if epoch == epochs - 1:  # nothing left to resume: the optimiser's state would only weigh
            checkpoint.write(self.run_dir / LAST)
        elif (epoch + 1) % self.every == 0:
            resumable = replace(checkpoint, resume_state={**step.state_dict(), "rng": rng_state()})
            resumable.write(self.run_dir / LAST)
        with atomic_write(self.run_dir / HISTORY, newline="") as file:
            pd.DataFrame(history).to_csv(file, index=False)
