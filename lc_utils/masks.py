"""RGB-coded masks to class maps and back.

DeepGlobe masks store each class as a colour. JPEG-like noise and resampling leave values that are
not exactly 0 or 255, so the challenge's rule is to binarise every channel at 128 before the colour
lookup; :func:`rgb_to_class` does that whenever the palette is made of 0/255 values only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .files import read_rgb

OnInvalid = Literal["raise", "unknown", "ignore"]
ON_INVALID_POLICIES: tuple[str, ...] = ("raise", "unknown", "ignore")

UNLABELLED_RGB = (136, 120, 120)
"""Colour :func:`class_to_rgb` gives to unlabelled pixels (255): a warm mid grey.

Chosen so that it never decodes as a class: thresholded at 128 it becomes (255, 0, 0), a colour
outside the DeepGlobe palette, so decoding it back follows the off-palette policy (``"ignore"``
gives 255 again) instead of silently turning into "barren" as a plain (128, 128, 128) would.
"""

_NOT_IN_PALETTE = np.iinfo(np.int16).max


class InvalidMaskError(ValueError):
    """A mask holds colours outside the palette (and the policy was ``"raise"``)."""


class OffPaletteWarning(UserWarning):
    """Off-palette mask pixels were mapped by policy rather than decoded."""


def as_rgb_uint8(array: np.ndarray, source: str = "mask") -> np.ndarray:
    """Check that ``array`` is an (H, W, 3) uint8 image, dropping a fully opaque alpha channel.

    Anything else (grayscale, 16-bit, float, RGBA with transparency, wrong shape) raises a
    ``ValueError`` naming ``source``: guessing a conversion would silently mislabel pixels.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"{source}: expected 8-bit RGB (uint8), got dtype {array.dtype}")
    if array.ndim == 2:
        raise ValueError(f"{source}: grayscale (H, W) array; an RGB (H, W, 3) mask is expected")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"{source}: expected shape (H, W, 3), got {array.shape}")
    if array.shape[2] == 4:
        if not np.all(array[..., 3] == 255):
            raise ValueError(f"{source}: RGBA with transparent pixels; cannot tell their class")
        array = array[..., :3]
    return array


def _is_binary_palette(schema: ClassSchema) -> bool:
    return bool(np.isin(schema.palette, (0, 255)).all())


def _binary_lookup(schema: ClassSchema) -> np.ndarray:
    """Table from the 3-bit code (r>>7, g>>7, b>>7) to class index."""
    table = np.full(8, _NOT_IN_PALETTE, dtype=np.int16)
    for index, (r, g, b) in enumerate(schema.colors):
        table[(r >> 7) << 2 | (g >> 7) << 1 | (b >> 7)] = index
    return table


def _describe_colors(colors: np.ndarray, counts: np.ndarray, limit: int = 5) -> str:
    order = np.argsort(-counts)
    parts = [f"{tuple(int(v) for v in colors[i])} x{int(counts[i])}" for i in order[:limit]]
    if len(order) > limit:
        parts.append(f"and {len(order) - limit} more")
    return ", ".join(parts)


def rgb_to_class(
    mask: np.ndarray,
    schema: ClassSchema = DEEPGLOBE,
    *,
    on_invalid: OnInvalid = "unknown",
    source: str = "mask",
    threshold: bool = True,
) -> np.ndarray:
    """Decode an (H, W, 3) uint8 RGB mask into an (H, W) uint8 class map.

    With a palette of 0/255 values (DeepGlobe's) each channel is binarised at 128 first, as the
    challenge instructs (``threshold=False`` matches exact colours instead, to show what that
    gets wrong); other palettes are always matched exactly. Colours that still match no class
    follow ``on_invalid``:

    - ``"raise"``: :class:`InvalidMaskError` giving the pixel count and the colours;
    - ``"unknown"`` (default): they become ``schema.unknown_index``, with one warning;
    - ``"ignore"``: they become 255 (``IGNORE_INDEX``), left out of losses and metrics.

    ``source`` (a file name, say) is used in messages.
    """
    if on_invalid not in ON_INVALID_POLICIES:
        raise ValueError(f"on_invalid must be one of {ON_INVALID_POLICIES}, got {on_invalid!r}")
    rgb = as_rgb_uint8(mask, source)
    binarise = threshold and _is_binary_palette(schema)
    if binarise:
        bits = (rgb >> 7).astype(np.uint8)
        codes = bits[..., 0] << 2 | bits[..., 1] << 1 | bits[..., 2]
        classes = _binary_lookup(schema)[codes]
        invalid = classes == _NOT_IN_PALETTE
    else:
        packed = rgb[..., 0].astype(np.uint32) << 16 | rgb[..., 1].astype(np.uint32) << 8
        packed |= rgb[..., 2]
        palette = schema.palette.astype(np.uint32)
        palette_codes = palette[:, 0] << 16 | palette[:, 1] << 8 | palette[:, 2]
        order = np.argsort(palette_codes)
        sorted_codes = palette_codes[order]
        position = np.clip(np.searchsorted(sorted_codes, packed), 0, len(order) - 1)
        invalid = sorted_codes[position] != packed
        classes = order[position].astype(np.int16)

    if invalid.any():
        seen = (rgb[invalid] >> 7) * 255 if binarise else rgb[invalid]
        colors, counts = np.unique(seen, axis=0, return_counts=True)
        count = int(invalid.sum())
        what = (
            f"{source}: {count} pixel(s) of {invalid.size} have colours outside the palette"
            f"{' after thresholding at 128' if binarise else ''}: "
            f"{_describe_colors(colors, counts)}"
        )
        if on_invalid == "raise":
            raise InvalidMaskError(what)
        if on_invalid == "unknown":
            if schema.unknown_index is None:
                raise InvalidMaskError(f"{what}; the schema has no unknown class to map them to")
            warnings.warn(f"{what}; mapped to '{schema.names[schema.unknown_index]}'",
                          OffPaletteWarning, stacklevel=2)
            classes[invalid] = schema.unknown_index
        else:
            warnings.warn(f"{what}; mapped to {IGNORE_INDEX} (ignored)", OffPaletteWarning,
                          stacklevel=2)
            classes[invalid] = IGNORE_INDEX
    return classes.astype(np.uint8)


def class_to_rgb(class_map: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> np.ndarray:
    """Encode an (H, W) class map as an (H, W, 3) uint8 RGB mask.

    Unlabelled pixels (255) get :data:`UNLABELLED_RGB`; any other value outside the schema raises.
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"expected an (H, W) class map, got shape {class_map.shape}")
    if not np.issubdtype(class_map.dtype, np.integer):
        raise ValueError(f"expected an integer class map, got dtype {class_map.dtype}")
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: schema.num_classes] = schema.palette
    table[IGNORE_INDEX] = UNLABELLED_RGB
    valid = ((class_map >= 0) & (class_map < schema.num_classes)) | (class_map == IGNORE_INDEX)
    if not valid.all():
        bad = np.unique(class_map[~valid])
        raise ValueError(f"class map holds values outside 0..{schema.num_classes - 1} and "
                         f"{IGNORE_INDEX}: {bad[:10].tolist()}")
    return table[class_map.astype(np.uint8)]


def read_mask(
    path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    *,
    on_invalid: OnInvalid = "unknown",
) -> np.ndarray:
    """Read an RGB mask file and decode it with :func:`rgb_to_class`; errors name the file."""
    return rgb_to_class(read_rgb(path, what="mask"), schema, on_invalid=on_invalid,
                        source=str(path))


def off_palette_pixels(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE, *,
                       threshold: bool = True) -> int:
    """How many pixels of an RGB mask match no class (with or without the 128 threshold)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffPaletteWarning)
        decoded = rgb_to_class(mask, schema, on_invalid="ignore", threshold=threshold)
    return int((decoded == IGNORE_INDEX).sum())


def colour_table(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE, limit: int = 20) -> pd.DataFrame:
    """The distinct colours of an RGB mask, most frequent first, with the class each decodes to
    by exact matching and after thresholding at 128 (``None`` where it matches no class)."""
    rgb = as_rgb_uint8(mask).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    order = np.argsort(-counts)[:limit]
    exact = {tuple(c): schema.names[i] for i, c in enumerate(schema.colors)}
    thresholded = [exact.get(tuple(int(v >= 128) * 255 for v in colours[i])) for i in order]
    return pd.DataFrame({
        "colour": [tuple(int(v) for v in colours[i]) for i in order],
        "pixels": counts[order],
        "exact match": [exact.get(tuple(int(v) for v in colours[i])) for i in order],
        "after threshold": thresholded,
    })


def scan_masks(mask_paths: Iterable[str | Path], schema: ClassSchema = DEEPGLOBE) -> pd.DataFrame:
    """Per mask file: pixels that match no class exactly, and pixels still off-palette after the
    128 threshold (the ones a policy has to decide), most troubled masks first."""
    rows = []
    for path in mask_paths:
        rgb = read_rgb(path, what="mask")
        rows.append({"mask": Path(path).name, "pixels": rgb.shape[0] * rgb.shape[1],
                     "off palette (exact)": off_palette_pixels(rgb, schema, threshold=False),
                     "off palette (thresholded)": off_palette_pixels(rgb, schema)})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["off palette (thresholded)", "off palette (exact)"], ascending=False,
                             ignore_index=True)


def compare_policies(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> pd.DataFrame:
    """What each ``on_invalid`` policy does with a mask: the error, or where the pixels went."""
    rows = []
    for policy in ON_INVALID_POLICIES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                decoded = rgb_to_class(mask, schema, on_invalid=policy)
            except InvalidMaskError as error:
                rows.append({"policy": policy, "result": f"InvalidMaskError: {error}"})
                continue
        counts = {name: int((decoded == i).sum()) for i, name in enumerate(schema.names)}
        counts["ignored (255)"] = int((decoded == IGNORE_INDEX).sum())
        note = f"{len(caught)} warning(s)" if caught else "no warning"
        rows.append({"policy": policy, "result": note, **counts})
    frame = pd.DataFrame(rows).set_index("policy")
    counts = [c for c in frame.columns if c != "result"]
    frame[counts] = frame[counts].astype("Int64")
    return frame
