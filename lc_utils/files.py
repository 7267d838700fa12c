"""Reading image files into arrays, with errors that name the file and what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIX = "_sat"
MASK_SUFFIX = "_mask"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
MASK_EXTENSION = ".png"
_TILE_ID = re.compile(r"^(?P<source>.+)-r\d+-c\d+$")


def image_id_or_none(path: Path) -> str | None:
    """``"123"`` for ``123_sat.jpg``; ``None`` for a name that is not a satellite image's."""
    stem = path.stem
    if path.suffix.lower() in IMAGE_EXTENSIONS and stem.endswith(IMAGE_SUFFIX):
        return stem[: -len(IMAGE_SUFFIX)]
    return None


def image_id_of(path: str | Path) -> str:
    """``"123"`` for ``.../123_sat.jpg`` (the file's stem for other names)."""
    path = Path(path)
    return image_id_or_none(path) or path.stem


def tile_id(image_id: str, row: int, col: int) -> str:
    """The id of tile (``row``, ``col``) cut from image ``image_id``: ``"123-r0-c4"``."""
    return f"{image_id}-r{row}-c{col}"


def source_id(image_id: str) -> str:
    """The id of the image a tile was cut from (:func:`tile_id`); any other id unchanged."""
    match = _TILE_ID.match(image_id)
    return match["source"] if match else image_id


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """Read an 8-bit RGB file into an (H, W, 3) uint8 array.

    A palette image ("P") is expanded to its colours and a fully opaque RGBA loses its alpha:
    both conversions are exact. Grayscale, 16-bit, transparent and other modes are refused, as
    are missing, truncated or unreadable files; every error names ``path`` and calls it ``what``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                mode = image.mode
            array = np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read {what} (corrupt or truncated file?): {error}") from error
    if mode == "RGBA":
        if not np.all(array[..., 3] == 255):
            raise ValueError(f"{path}: {what} is RGBA with transparent pixels; expected RGB")
        return np.ascontiguousarray(array[..., :3])
    if mode != "RGB":
        raise ValueError(f"{path}: {what} has mode {mode!r} "
                         f"({'grayscale' if mode in ('L', 'LA', '1') else 'not 8-bit RGB'}); "
                         "expected 8-bit RGB")
    return array
