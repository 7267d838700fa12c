"""download_deepglobe against a stand-in kagglehub: no network, a few 32x32 images in the Kaggle layout."""

from __future__ import annotations

import csv
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lc_utils.download import KAGGLE_HANDLE, KAGGLE_URL, download_deepglobe
from lc_utils.layouts import find_pairs, find_unlabelled_images
from lc_utils.synthetic import make_sample_dataset

LABELLED = 4
UNLABELLED = 2


class KaggleApiHTTPError(OSError):
    """Like kagglehub's: a requests.HTTPError (an OSError) with an optional response."""

    def __init__(self, message: str, response: Any = None) -> None:
        super().__init__(message)
        self.response = response


class UnauthenticatedError(Exception):
    pass


@pytest.fixture(scope="module")
def kaggle_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Kaggle dataset holds, in small: train/ with masks, valid/ without, metadata.csv."""
    root = make_sample_dataset(tmp_path_factory.mktemp("kaggle"), n_images=LABELLED, size=32)
    with (root / "metadata.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    (root / "valid").mkdir()
    for index in range(UNLABELLED):
        image_id = f"9{index:03d}"
        shutil.copy(root / rows[index]["sat_image_path"], root / "valid" / f"{image_id}_sat.jpg")
        rows.append({"image_id": image_id, "split": "valid",
                     "sat_image_path": f"valid/{image_id}_sat.jpg", "mask_path": ""})
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


StandIn = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """Where the stand-in keeps what it downloads without an output_dir, as kagglehub's cache does."""
    return tmp_path / "kagglehub-cache" / "datasets" / KAGGLE_HANDLE / "versions" / "1"


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, kaggle_copy: Path, cache: Path) -> StandIn:
    """Installs a stand-in kagglehub; returns the list its dataset_download records its calls in.

    ``output_dir``: whether its dataset_download has that parameter (kagglehub >= 0.4.3);
    ``ignores_output_dir``: serves its own cache anyway (as on Colab); ``error``: raised instead.
    """
    def install(*, output_dir: bool = True, ignores_output_dir: bool = False,
                error: Exception | None = None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def download(handle: str, path: str | None, force_download: bool, target: str | None) -> str:
            calls.append({"handle": handle, "path": path, "force_download": force_download,
                          "output_dir": target})
            if error is not None:
                raise error
            folder = Path(target) if target and not ignores_output_dir else cache
            shutil.copytree(kaggle_copy, folder, dirs_exist_ok=True)
            return str(folder)

        module = types.ModuleType("kagglehub")
        if output_dir:
            def dataset_download(handle: str, path: str | None = None, *, force_download: bool = False,
                                 output_dir: str | None = None) -> str:
                return download(handle, path, force_download, output_dir)
        else:
            def dataset_download(handle: str, path: str | None = None, *,  # type: ignore[misc]
                                 force_download: bool = False) -> str:
                return download(handle, path, force_download, None)
        module.dataset_download = dataset_download  # type: ignore[attr-defined]
        exceptions = types.ModuleType("kagglehub.exceptions")
        exceptions.KaggleApiHTTPError = KaggleApiHTTPError  # type: ignore[attr-defined]
        module.exceptions = exceptions  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "kagglehub", module)
        monkeypatch.setitem(sys.modules, "kagglehub.exceptions", exceptions)
        return calls

    return install


def test_a_kagglehub_with_output_dir_downloads_into_dest(stand_in: StandIn, cache: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    calls = stand_in(output_dir=True)
    dest = tmp_path / "data" / "deepglobe"  # its parent does not exist yet

    root = download_deepglobe(dest)

    assert root == dest and dest.is_dir() and not dest.is_symlink()
    assert calls == [{"handle": KAGGLE_HANDLE, "path": None, "force_download": False,
                      "output_dir": str(dest)}]
    assert len(find_pairs(root)) == LABELLED and len(find_unlabelled_images(root)) == UNLABELLED
    assert not cache.exists()
    assert f"{LABELLED} labelled images in {dest}" in capsys.readouterr().out


@pytest.mark.parametrize("before", ["absent", "empty folder", "old link"])
def test_an_older_kagglehub_leaves_the_data_in_its_cache_and_dest_links_there(
        stand_in: StandIn, cache: Path, tmp_path: Path, before: str) -> None:
    calls = stand_in(output_dir=False)
    dest = tmp_path / "data" / "deepglobe"
    if before == "empty folder":
        dest.mkdir(parents=True)
    elif before == "old link":
        dest.parent.mkdir(parents=True)
        dest.symlink_to(tmp_path / "gone", target_is_directory=True)  # a cache since cleared

    root = download_deepglobe(dest)

    assert len(calls) == 1 and calls[0]["output_dir"] is None
    assert root == dest and dest.is_symlink() and dest.resolve() == cache.resolve()
    assert len(find_pairs(root)) == LABELLED


def test_where_kagglehub_serves_its_own_copy_dest_links_to_it(stand_in: StandIn, cache: Path,
                                                               tmp_path: Path) -> None:
    stand_in(output_dir=True, ignores_output_dir=True)
    dest = tmp_path / "deepglobe"

    download_deepglobe(dest)

    assert dest.is_symlink() and dest.resolve() == cache.resolve()
    assert len(find_pairs(dest)) == LABELLED


def test_a_dataset_already_in_dest_is_not_downloaded_again(stand_in: StandIn, kaggle_copy: Path,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    calls = stand_in(output_dir=True)
    dest = shutil.copytree(kaggle_copy, tmp_path / "deepglobe")

    assert download_deepglobe(dest) == dest
    assert calls == []
    assert f"already in {dest} ({LABELLED} labelled images)" in capsys.readouterr().out


def test_a_dataset_already_in_dest_needs_no_kagglehub(monkeypatch: pytest.MonkeyPatch, kaggle_copy: Path,
                                                       tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    dest = shutil.copytree(kaggle_copy, tmp_path / "deepglobe")
    assert download_deepglobe(dest) == dest


@pytest.mark.parametrize("output_dir", [True, False])
def test_force_downloads_again(stand_in: StandIn, kaggle_copy: Path, tmp_path: Path,
                               output_dir: bool) -> None:
    calls = stand_in(output_dir=output_dir)
    dest = tmp_path / "deepglobe"
    if output_dir:
        shutil.copytree(kaggle_copy, dest)
    else:
        download_deepglobe(dest)  # a link to the cache, as an older kagglehub leaves it
        calls.clear()

    assert download_deepglobe(dest, force=True) == dest
    assert [c["force_download"] for c in calls] == [True]
    assert len(find_pairs(dest)) == LABELLED


@pytest.mark.parametrize("error", [
    KaggleApiHTTPError("Client Error. Resource not found at URL: https://www.kaggle.com/datasets/x"),
    UnauthenticatedError("User is not authenticated"),
    RuntimeError("403 Client Error: Forbidden for url: https://www.kaggle.com/api/v1/datasets/download"),
], ids=["kaggle-http-error", "unauthenticated", "403"])
def test_a_refusal_explains_how_to_sign_in_or_download_by_hand(stand_in: StandIn, tmp_path: Path,
                                                               error: Exception) -> None:
    stand_in(error=error)
    with pytest.raises(RuntimeError, match="Kaggle refused") as raised:
        download_deepglobe(tmp_path / "deepglobe")
    message = str(raised.value)
    for needed in ("KAGGLE_USERNAME", "KAGGLE_KEY", "Secrets", "kaggle.json", "kagglehub.login()",
                   KAGGLE_URL, "DATA_DIR"):
        assert needed in message
    assert raised.value.__cause__ is error


class _Response:
    status_code = 503


@pytest.mark.parametrize("error", [
    ConnectionError("Max retries exceeded with url: /api/v1/datasets/download"),
    KaggleApiHTTPError("503 Server Error: Service Unavailable", response=_Response()),
], ids=["network", "server"])
def test_other_failures_propagate_with_the_manual_alternative(stand_in: StandIn, tmp_path: Path,
                                                              error: Exception) -> None:
    stand_in(error=error)
    with pytest.raises(type(error)) as raised:
        download_deepglobe(tmp_path / "deepglobe")
    assert raised.value is error
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert KAGGLE_URL in notes and "DATA_DIR" in notes


def test_without_kagglehub_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(ImportError, match=r"pip install kagglehub.*\[colab\]"):
        download_deepglobe(tmp_path / "deepglobe")


@pytest.mark.parametrize("output_dir", [False, True])
def test_a_folder_of_something_else_is_left_alone(stand_in: StandIn, tmp_path: Path,
                                                  output_dir: bool) -> None:
    calls = stand_in(output_dir=output_dir)
    dest = tmp_path / "notes"
    dest.mkdir()
    (dest / "todo.txt").write_text("keep me")

    with pytest.raises(FileExistsError, match=str(dest)):
        download_deepglobe(dest, force=True)
    assert calls == []  # refused before a download of several GB
    assert (dest / "todo.txt").read_text() == "keep me" and not dest.is_symlink()
