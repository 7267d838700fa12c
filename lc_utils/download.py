"""Getting the real DeepGlobe Land Cover data: the Kaggle copy, through the optional ``kagglehub``.

The dataset is public, so kagglehub downloads it without an account where Kaggle allows it; where
Kaggle asks for one, the error says how to give kagglehub credentials or download the zip by hand.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from .layouts import find_pairs

KAGGLE_HANDLE = "balraj98/deepglobe-land-cover-classification-dataset"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_HANDLE}"

MANUAL_DOWNLOAD = (f"Or download it by hand: open {KAGGLE_URL}, click Download, unzip the archive and "
                   "set DATA_DIR to the unzipped folder (the one holding metadata.csv).")

CREDENTIALS_HELP = (
    "Kaggle wants to know who is downloading. Give kagglehub your Kaggle API credentials\n"
    "(kaggle.com > Settings > API > Create New Token):\n"
    "- on Colab: in Secrets (the key icon in the left bar) add KAGGLE_USERNAME and KAGGLE_KEY\n"
    "  (or KAGGLE_API_TOKEN), switch on their notebook access, and run this cell again;\n"
    "- elsewhere: put kaggle.json in ~/.kaggle/, or set KAGGLE_USERNAME and KAGGLE_KEY\n"
    "  (or KAGGLE_API_TOKEN) in the environment, or call kagglehub.login() first.\n"
    + MANUAL_DOWNLOAD
)

_ACCESS_WORDS = ("401", "403", "unauthorized", "forbidden", "permission", "authenticat", "credential")


def _labelled_count(root: Path) -> int | None:
    """How many labelled images ``root`` holds, or ``None`` where it holds no readable dataset."""
    try:
        return len(find_pairs(root))
    except (OSError, ValueError):
        return None


def _is_access_error(err: Exception, http_errors: tuple[type[BaseException], ...]) -> bool:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(status, int) and status >= 500:
        return False  # Kaggle's servers failed: credentials would not help.
    if http_errors and isinstance(err, http_errors):
        return True
    text = f"{type(err).__name__} {err}".lower()
    return any(word in text for word in _ACCESS_WORDS)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _check_replaceable(dest: Path) -> None:
    """Raise unless ``dest`` can become a link: absent, a link already, or an empty folder."""
    if dest.is_symlink() or not dest.exists():
        return
    if dest.is_dir() and not any(dest.iterdir()):
        return
    raise FileExistsError(f"{dest} already exists and is not an empty folder, so it cannot become a link "
                          "to the downloaded DeepGlobe: remove or rename it, or pass another dest")


def _link(dest: Path, target: Path) -> None:
    if dest.is_symlink():
        dest.unlink()
    elif dest.is_dir():
        dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(target.resolve(), target_is_directory=True)


def download_deepglobe(dest: str | Path = "data/deepglobe", *, force: bool = False) -> Path:
    """Download DeepGlobe Land Cover from Kaggle into ``dest`` (unless it is there) and return its path.

    With a kagglehub that cannot write to a chosen folder (before 0.4.3), or where kagglehub serves
    the data from a cache of its own (Colab, Kaggle notebooks), ``dest`` becomes a link to that
    folder. ``force`` downloads again even if ``dest`` already holds the dataset.
    """
    dest = Path(dest).expanduser().absolute()
    if not force:
        count = _labelled_count(dest)
        if count is not None:
            print(f"DeepGlobe is already in {dest} ({count} labelled images); force=True downloads it again")
            return dest
    try:
        import kagglehub
    except ImportError as err:
        raise ImportError("download_deepglobe needs kagglehub: pip install kagglehub (on Colab the setup "
                          "cell installs it with the course's [colab] extra). " + MANUAL_DOWNLOAD) from err

    accepts_output_dir = "output_dir" in inspect.signature(kagglehub.dataset_download).parameters
    if accepts_output_dir:
        # A link left by an older kagglehub points into its cache: writing (or clearing, with force)
        # through it would touch the cache, so the download gets a folder of its own.
        if dest.is_symlink():
            dest.unlink()
        elif dest.exists() and not ((dest / "metadata.csv").exists() or (dest / ".complete").exists()):
            # kagglehub empties a non-empty output_dir when forced: never a folder of something else.
            _check_replaceable(dest)
    else:
        _check_replaceable(dest)  # before a download of several GB, not after

    try:
        exceptions = importlib.import_module("kagglehub.exceptions")
    except ImportError:
        exceptions = None
    http_errors = tuple(cls for cls in (getattr(exceptions, "KaggleApiHTTPError", None),
                                        getattr(exceptions, "ColabHTTPError", None)) if cls is not None)
    try:
        if accepts_output_dir:
            dest.parent.mkdir(parents=True, exist_ok=True)
            path = kagglehub.dataset_download(KAGGLE_HANDLE, force_download=force, output_dir=str(dest))
        else:
            path = kagglehub.dataset_download(KAGGLE_HANDLE, force_download=force)
    except Exception as err:
        if _is_access_error(err, http_errors):
            raise RuntimeError(f"Kaggle refused the download of {KAGGLE_HANDLE} ({_first_line(err)}).\n"
                               + CREDENTIALS_HELP) from err
        err.add_note(f"Downloading {KAGGLE_HANDLE} with kagglehub failed. {MANUAL_DOWNLOAD}")
        raise

    downloaded = Path(path)
    if downloaded.resolve() != dest.resolve():
        _check_replaceable(dest)
        _link(dest, downloaded)
    try:
        pairs = find_pairs(dest)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"{dest}: downloaded from {KAGGLE_URL}, but no labelled images were found "
                           f"in it: {err}") from err
    link = f" (a link to {downloaded.resolve()})" if dest.is_symlink() else ""
    print(f"DeepGlobe: {len(pairs)} labelled images in {dest}{link}")
    return dest
