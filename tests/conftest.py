"""Shared fixtures: the generated sample and the real DeepGlobe files beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lc_utils.settings import PROJECT_ROOT
from lc_utils.synthetic import make_sample_dataset

REAL_DATA = Path(os.environ.get("LC_REAL_DATA",
                                PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample"))


def _real_folder(name: str) -> Path:
    folder = REAL_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real DeepGlobe sample not found at {folder} (set LC_REAL_DATA to use it)")
    return folder


@pytest.fixture(scope="session")
def real_tiles() -> Path:
    """The 129 real 512x512 DeepGlobe tiles (skips where absent)."""
    return _real_folder("tiles_512")


@pytest.fixture(scope="session")
def real_full() -> Path:
    """The 5 real 2448x2448 DeepGlobe training images (skips where absent)."""
    return _real_folder("full_2448")


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real sample's root folder, with its class_dict.csv (skips where absent)."""
    return _real_folder(".")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset in the Kaggle layout (8 images of 96x96)."""
    return make_sample_dataset(tmp_path_factory.mktemp("sample"), n_images=8, size=96, seed=0)


def generated_tiles(folder: Path, n_images: int = 12) -> Path:
    """A tiny generated set of 96 x 96 tiles in one folder, as the real tiles lie: what a study's
    benchmark is tested on."""
    from lc_utils.synthetic import make_sample_dataset

    return make_sample_dataset(folder, n_images=n_images, size=96, seed=0) / "train"
