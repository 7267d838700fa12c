"""Fast mode, device choice and seeding: the few settings every notebook shares."""

from __future__ import annotations

import os
import random
import sys
import warnings
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (where ``data/`` and ``runs/`` live) for an editable install."""

REPO_URL = "https://github.com/landcover-course/sparse-label-segmentation"
"""Where the course lives; the Colab cell of every notebook and the README use this same URL."""


def _workspace() -> Path:
    """The checkout when lc_utils runs from one, else the current folder."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()


def fast_mode() -> bool:
    """True when ``LC_FAST`` is set to 1/true/yes: every notebook shrinks its parameters."""
    return os.environ.get("LC_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, fast: T) -> T:
    """``fast`` in fast mode, ``full`` otherwise: how a parameters cell shrinks itself."""
    return fast if fast_mode() else full


def smoke_mode() -> bool:
    """True when ``LC_SMOKE`` is set to 1/true/yes: the notebooks keep their mode's shapes and model
    (full mode: ResNet-50, 256 x 256 crops in batches of 8, 512 x 512 images) but run a few steps
    on a few images, so that CI executes every full-mode line on a CPU in minutes."""
    return os.environ.get("LC_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}


def capped(value: T, smoke: T) -> T:
    """``value``, or ``smoke`` in smoke mode (:func:`smoke_mode`): how a parameters cell caps its
    epochs and seeds for CI without changing what they feed."""
    return smoke if smoke_mode() else value


def mode_name() -> str:
    """``"fast"`` or ``"full"``, with ``"_smoke"`` appended in smoke mode."""
    return ("fast" if fast_mode() else "full") + ("_smoke" if smoke_mode() else "")


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


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (bfloat16 where the GPU has it, else float16); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


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


def sample_dir() -> Path:
    """Where the generated sample dataset is written (``data/sample/``, ignored by git)."""
    return _workspace() / "data" / "sample"


def runs_dir(folder: str | Path | None = None) -> Path:
    """Where checkpoints, annotations and results go: ``folder`` if given, else ``runs/``.

    On Colab a ``folder`` under ``/content/drive`` mounts Google Drive first, so that runs
    outlive the virtual machine; by default nothing is mounted.
    """
    path = Path(folder).expanduser() if folder else _workspace() / "runs"
    if str(path).startswith("/content/drive") and not Path("/content/drive/MyDrive").exists():
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount("/content/drive")
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset_tag(data_root: str | Path) -> str:
    """The data folder's name and the mode (:func:`mode_name`), e.g. ``tiles_512_fast``: run and
    annotation folders carry it, so switching ``DATA_DIR`` or the mode never collides with earlier
    files (nor does a smoke run resume a real one)."""
    return f"{Path(data_root).resolve().name}_{mode_name()}"


def describe_device() -> str:
    """One line on the device training will use, with how to get a GPU where there is none."""
    device = default_device()
    if device.type == "cuda":
        return f"Using the GPU: {torch.cuda.get_device_name(0)}"
    if device.type == "mps":
        return "Using Apple's GPU (MPS)"
    hint = (" On Colab: Runtime > Change runtime type > GPU, then run the notebook again."
            if _on_colab() else "")
    return f"No GPU found: training runs on the CPU ({torch.get_num_threads()} threads), slowly.{hint}"


def _on_colab() -> bool:
    return "google.colab" in sys.modules
