"""The course's settings: fast and smoke mode, seeding, the data folder (``DATA_DIR`` or the
generated sample) and where runs, annotations and results go."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import warnings
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .synthetic import SAMPLE_SIZES, SMOKE_IMAGES, ensure_sample_dataset
from .user_warnings import warn

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (where ``data/`` and ``runs/`` live) for an editable install."""

REPO_URL = "https://github.com/landcover-course/sparse-label-segmentation"
"""Where the course lives; the Colab cell of every notebook and the README use this same URL."""


def _workspace() -> Path:
    """The checkout when lc_utils runs from one, else the current folder."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
"""What switches an environment flag on (any case); anything else, or nothing, leaves it off."""


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to 1, true, yes or on (any case)."""
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


def env_value(name: str) -> str | None:
    """The environment variable ``name``, or None where it is unset or empty: how ``make`` hands the
    data folder's schema and file-name endings (``DATA_SCHEMA``, ``DATA_IMAGE_SUFFIX``,
    ``DATA_MASK_SUFFIX``) to the notebooks and the training command. The data layer never reads
    the environment itself; the parameters cells and the command pass these on."""
    value = os.environ.get(name, "").strip()
    return value or None


def fast_mode() -> bool:
    """True when ``LC_FAST`` is set to 1/true/yes: every notebook shrinks its parameters."""
    return env_flag("LC_FAST")


def pick(full: T, fast: T) -> T:
    """``fast`` in fast mode, ``full`` otherwise: how a parameters cell shrinks itself."""
    return fast if fast_mode() else full


def smoke_mode() -> bool:
    """True when ``LC_SMOKE`` is set to 1/true/yes: the notebooks keep their mode's shapes and model
    (full mode: ResNet-50, 256 x 256 crops in batches of 8, 512 x 512 images) but run a few steps
    on a few images, so that CI executes every full-mode line on a CPU in minutes."""
    return env_flag("LC_SMOKE")


def unless_smoke(value: T, smoke: T) -> T:
    """``value``, or ``smoke`` in smoke mode (:func:`smoke_mode`): how a parameters cell caps its
    epochs and seeds for CI without changing what they feed."""
    return smoke if smoke_mode() else value


def mode_name() -> str:
    """``"fast"`` or ``"full"``, with ``"_smoke"`` appended in smoke mode."""
    return ("fast" if fast_mode() else "full") + ("_smoke" if smoke_mode() else "")


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


DRIVE = Path("/content/drive")
"""Where Colab mounts Google Drive."""

COLAB_RUNS = DRIVE / "MyDrive" / "lc-runs"
"""Where runs go on Colab by default (:func:`runs_dir`): a folder of the learner's Google Drive."""

_colab_runs: Path | None = None  # the folder chosen on Colab, once per process (one mount, one warning)


def on_colab() -> bool:
    """Whether this runs on Colab (its ``google.colab`` module is loaded)."""
    return "google.colab" in sys.modules


def _mount_drive() -> None:
    """Mount Google Drive at :data:`DRIVE` unless it is mounted (Colab asks the learner)."""
    if not (DRIVE / "MyDrive").exists():
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(DRIVE))


def _colab_default() -> Path:
    """:data:`COLAB_RUNS` with Drive mounted; where mounting fails or is declined, ``runs/`` in the
    project, with one warning that its checkpoints go when the runtime does."""
    global _colab_runs
    if _colab_runs is None:
        try:
            _mount_drive()
            COLAB_RUNS.mkdir(parents=True, exist_ok=True)
            _colab_runs = COLAB_RUNS
        except Exception as error:  # noqa: BLE001 - declined, no Drive, a failed mount: all alike here
            _colab_runs = _workspace() / "runs"
            warn(f"Google Drive could not be mounted ({error}): runs go to {_colab_runs} on this "
                 "runtime, and their checkpoints and annotations will be lost when the runtime "
                 "disconnects. Run the cell again to retry, or set RUNS_DIR to another folder.")
    return _colab_runs


def runs_dir(folder: str | Path | None = None) -> Path:
    """Where checkpoints, annotations and results go: ``folder`` if given, else ``runs/`` in the
    project, and on Colab :data:`COLAB_RUNS` on Google Drive, so that runs outlive the runtime.

    On Colab, Drive is mounted first (the learner is asked once) for the default and for a
    ``folder`` under ``/content/drive``. Where the default cannot be mounted (declined, or no
    Drive), runs go to ``runs/`` in the project, with one warning that they go with the runtime.
    """
    if folder:
        path = Path(folder).expanduser()
        if on_colab() and path.is_relative_to(DRIVE):
            _mount_drive()  # asked for Drive: a failed mount is an error
    else:
        path = _colab_default() if on_colab() else _workspace() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset_tag(data_root: str | Path) -> str:
    """The data folder's name, a short digest of its full path and the mode (:func:`mode_name`),
    e.g. ``tiles_512-3f9a1c_fast``: run and annotation folders carry it, so switching ``DATA_DIR``
    or the mode never collides with earlier files, not even between two folders of one name (two
    ``full_2448`` folders of other originals), nor does a smoke run resume a real one."""
    root = Path(data_root).resolve()
    return f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:6]}_{mode_name()}"


def prepare_data(data_dir: str | Path | None = None) -> Path:
    """The dataset folder to use: ``data_dir``, else ``$DATA_DIR``, else the generated sample.

    The sample (``data/sample/``) is generated on first use, sized for the current mode
    (:data:`lc_utils.synthetic.SAMPLE_SIZES`; :data:`~lc_utils.synthetic.SMOKE_IMAGES` of them in
    smoke mode), and reused afterwards.
    """
    chosen = data_dir or os.environ.get("DATA_DIR")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: DATA_DIR is not a folder (a relative path is read from "
                                    f"{Path.cwd()})")
        return root
    size = dict(SAMPLE_SIZES["fast" if fast_mode() else "full"])
    if smoke_mode():
        size["n_images"] = min(size["n_images"], SMOKE_IMAGES)
    return ensure_sample_dataset(sample_dir(), **size)


def annotation_path(data_root: str | Path, filename: str, runs: str | Path | None = None) -> Path:
    """Where an annotation file of the data in ``data_root`` lives: ``runs/annotations/<data
    tag>/<filename>`` (:func:`dataset_tag`, :func:`runs_dir`). Notebooks 03, 04 and 06, the
    training command and the studies all read and write annotations here, so a file made by one
    is found by the others."""
    return runs_dir(runs) / "annotations" / dataset_tag(data_root) / filename


def default_run_name(data_root: str | Path, prefix: str = "sparse") -> str:
    """A run folder name that keeps datasets and modes apart, e.g. ``sparse_tiles_512-3f9a1c_fast``."""
    return f"{prefix}_{dataset_tag(data_root)}"


def run_folder(data_root: str | Path, runs: str | Path | None = None, name: str | None = None) -> Path:
    """The folder of a course run: ``name`` (else :func:`default_run_name` of the data) under
    :func:`runs_dir`. Notebook 04 trains into it; notebooks 05, 07 and 09 read its checkpoint."""
    return runs_dir(runs) / (name or default_run_name(data_root))
