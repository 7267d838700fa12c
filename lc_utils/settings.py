"""Fast mode, device choice and seeding: the few settings every notebook shares."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (where ``data/`` and ``runs/`` live) for an editable install."""


def fast_mode() -> bool:
    """True when ``LC_FAST`` is set to 1/true/yes: every notebook shrinks its parameters."""
    return os.environ.get("LC_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, fast: T) -> T:
    """``fast`` in fast mode, ``full`` otherwise: how a parameters cell shrinks itself."""
    return fast if fast_mode() else full


def default_device() -> torch.device:
    """CUDA when available, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` or ``"auto"`` picks :func:`default_device`."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries still draw from the legacy global RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.use_deterministic_algorithms(True, warn_only=True)


def data_dir(default: str | Path | None = None) -> Path:
    """Where the data lives: ``$DATA_DIR`` when set, else ``default`` (the generated sample)."""
    chosen = os.environ.get("DATA_DIR") or default or PROJECT_ROOT / "data" / "sample"
    return Path(chosen).expanduser()
