"""Reading image files into arrays, with errors that name the file and what is wrong; image and tile
ids, and the (image, mask) pairs that carry them (:class:`ImagePair`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIX = "_sat"
MASK_SUFFIX = "_mask"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
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


class ImagePair(tuple):
    """An (image, mask) pair that carries its image's id from where it was found.

    It unpacks, compares, hashes and sorts as the plain 2-tuple ``(image, mask)`` (``for image, mask
    in pairs`` reads it; the id takes no part in equality), with the attributes ``image`` (a
    ``Path``), ``mask`` (a ``Path``, or ``None`` for an image without ground truth) and
    ``image_id``: the id :func:`lc_utils.layouts.scan_dataset` gave the image, or, where none is
    given, :func:`image_id_of` its path.
    """

    def __new__(cls, image: str | Path, mask: str | Path | None, image_id: str | None = None) -> ImagePair:
        image = Path(image)
        pair = super().__new__(cls, (image, None if mask is None else Path(mask)))
        pair._image_id = image_id_of(image) if image_id is None else str(image_id)
        return pair

    @property
    def image(self) -> Path:
        """The image file."""
        return self[0]

    @property
    def mask(self) -> Path | None:
        """The mask file (``None``: an image without ground truth)."""
        return self[1]

    @property
    def image_id(self) -> str:
        """The image's id, which annotations, splits and runs key it by."""
        return self._image_id

    def __getnewargs__(self) -> tuple[Path, Path | None, str]:
        return self[0], self[1], self._image_id

    def __repr__(self) -> str:
        mask = None if self[1] is None else str(self[1])
        return f"ImagePair({str(self[0])!r}, {mask!r}, image_id={self._image_id!r})"


def as_pairs(pairs: Iterable[tuple[str | Path, str | Path | None]]) -> list[ImagePair]:
    """Every (image, mask) pair of ``pairs`` as an :class:`ImagePair`: one already kept as it is
    (its id with it), a plain tuple (a user's, a test's) given :func:`image_id_of` its image's path,
    the one place a pair's id is made from a path."""
    return [pair if isinstance(pair, ImagePair) else ImagePair(*pair) for pair in pairs]


def image_shapes(pairs: Sequence[tuple[str | Path, str | Path | None]]) -> dict[str, tuple[int, int]]:
    """Image id -> (height, width) of the image of every (image, mask) pair, read from the file
    headers only."""
    shapes = {}
    for pair in as_pairs(pairs):
        with Image.open(pair.image) as opened:
            shapes[pair.image_id] = (opened.size[1], opened.size[0])
    return shapes


def _read_array(path: str | Path, what: str, palette_as_index: bool) -> tuple[np.ndarray, str]:
    """The pixels of an image file and the mode they are in, a palette image ("P") expanded to its
    colours (RGB, or RGBA where it has a transparent entry) unless ``palette_as_index``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P" and not palette_as_index:
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            return np.array(image), image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read {what} (corrupt or truncated file?): {error}") from error


def _opaque(array: np.ndarray, path: Path, what: str, expected: str) -> np.ndarray:
    """``array`` without its last channel, an alpha channel that must be fully opaque."""
    if not np.all(array[..., -1] == np.iinfo(array.dtype).max):
        raise ValueError(f"{path}: {what} has transparent pixels; expected {expected}")
    return np.ascontiguousarray(array[..., :-1] if array.shape[-1] > 2 else array[..., 0])


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """Read an 8-bit RGB file into an (H, W, 3) uint8 array.

    A palette image ("P") is expanded to its colours and a fully opaque RGBA loses its alpha:
    both conversions are exact. Grayscale, 16-bit, transparent and other modes are refused, as
    are missing, truncated or unreadable files; every error names ``path`` and calls it ``what``.
    """
    array, mode = _read_array(path, what, palette_as_index=False)
    if mode == "RGBA":
        if not np.all(array[..., 3] == 255):
            raise ValueError(f"{path}: {what} is RGBA with transparent pixels; expected RGB")
        return np.ascontiguousarray(array[..., :3])
    if mode != "RGB":
        raise ValueError(f"{path}: {what} has mode {mode!r} "
                         f"({'grayscale' if mode in ('L', 'LA', '1') else 'not 8-bit RGB'}); "
                         "expected 8-bit RGB")
    return array


INDEX_MODES = {"L": np.uint8, "1": np.uint8, "P": np.uint8, "I;16": np.uint16, "I;16L": np.uint16,
               "I;16B": np.uint16, "I": np.int32}
"""Image modes that hold one integer per pixel, read as index masks, and their array types."""


def read_mask_pixels(path: str | Path, palette_as_index: bool = False) -> np.ndarray:
    """A mask file's pixels as stored: (H, W, 3) uint8 for an RGB-coded mask, (H, W) integers for
    a single-channel (index) mask: 8- or 16-bit grayscale PNG or TIFF, 32-bit integer TIFF.

    A palette PNG ("P") gives its colours, or its palette indices with ``palette_as_index`` (the
    way index masks are often saved, with a palette only for viewing). An alpha channel must be
    fully opaque and is dropped. Float, CMYK and other modes are refused, naming the file.
    """
    array, mode = _read_array(path, "mask", palette_as_index)
    if mode == "RGB":
        return array
    if mode == "RGBA":
        return _opaque(array, Path(path), "mask", "RGB")
    if mode == "LA":
        return _opaque(array, Path(path), "mask", "a single channel")
    if mode in INDEX_MODES:
        return array.astype(INDEX_MODES[mode], copy=False)
    raise ValueError(f"{path}: mask has mode {mode!r}; expected 8-bit RGB or a single channel of "
                     "integers (8-, 16- or 32-bit)")
