"""Masks to class maps and back: RGB-coded masks (DeepGlobe, ISPRS) and index masks (LoveDA).

DeepGlobe masks store each class as a colour. JPEG-like noise and resampling leave values that are
not exactly 0 or 255, so the challenge's rule is to binarise every channel at 128 before the colour
lookup; :func:`rgb_to_class` does that whenever the palette is made of 0/255 values only. Index
masks store each class as one integer (:func:`index_to_class`). :func:`read_mask` tells which a
file holds and checks it against what the schema expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from .classes import DEEPGLOBE, IGNORE_INDEX, PRESETS, ClassSchema
from .files import read_mask_pixels
from .user_warnings import warn

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


class MaskEncodingError(ValueError):
    """A mask is coded one way (RGB or index) and the schema expects the other."""


JPEG_EXTENSIONS = (".jpg", ".jpeg")
LOSSY_MASK_HINT = ("JPEG is lossy: it shifts pixel values, most of all along class edges, so a JPEG "
                   "mask is not what was drawn. Save masks as PNG (lossless) if you can")
"""What the course says about ``<id>_mask.jpg`` files, wherever it meets one."""


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


def _mask_colors(schema: ClassSchema) -> tuple[np.ndarray, np.ndarray]:
    """Every colour a mask may hold, (K, 3), and what it decodes to: its class, or 255 (ignored)."""
    colors = np.array([*schema.colors, *schema.ignore_colors], dtype=np.int64).reshape(-1, 3)
    targets = np.array([*range(schema.num_classes), *[IGNORE_INDEX] * len(schema.ignore_colors)])
    return colors, targets.astype(np.int16)


def is_binary_palette(schema: ClassSchema) -> bool:
    """Whether every mask colour of the schema (no-data ones too) is made of 0/255 channels only:
    the palettes the 128 threshold decodes."""
    return bool(np.isin(_mask_colors(schema)[0], (0, 255)).all())


def _binary_lookup(schema: ClassSchema) -> np.ndarray:
    """Table from the 3-bit code (r>>7, g>>7, b>>7) to class index (255 for an ignored colour)."""
    table = np.full(8, _NOT_IN_PALETTE, dtype=np.int16)
    for (r, g, b), target in zip(*_mask_colors(schema)):
        table[(r >> 7) << 2 | (g >> 7) << 1 | (b >> 7)] = target
    return table


def _schema_hint(share: float) -> str:
    """A pointer to the schema, where so many pixels are off-palette that it is likely wrong."""
    if share < 0.01:
        return ""
    return (f"; {share:.0%} of the mask: if the data set codes its classes otherwise, give its schema "
            f"(a preset: {', '.join(PRESETS)}; or a class_dict.csv, index list or .toml file)")


def _apply_policy(classes: np.ndarray, invalid: np.ndarray, seen: np.ndarray, schema: ClassSchema,
                  on_invalid: OnInvalid, source: str, where: str) -> np.ndarray:
    """``classes`` with its ``invalid`` pixels (whose mask contents are ``seen``) handled by
    ``on_invalid``, as an (H, W) uint8 class map."""
    if invalid.any():
        values, counts = np.unique(seen, axis=0, return_counts=True)
        count = int(invalid.sum())
        what = (f"{source}: {count} pixel(s) of {invalid.size} have {where}: "
                f"{_describe_colors(values, counts)}{_schema_hint(count / invalid.size)}")
        if on_invalid == "raise":
            raise InvalidMaskError(what)
        if on_invalid == "unknown" and schema.unknown_index is not None:
            warn(f"{what}; mapped to '{schema.names[schema.unknown_index]}'", OffPaletteWarning)
            classes[invalid] = schema.unknown_index
        else:
            why = "" if on_invalid == "ignore" else f", as schema {schema.name!r} has no unknown class"
            warn(f"{what}; mapped to {IGNORE_INDEX} (ignored{why})", OffPaletteWarning)
            classes[invalid] = IGNORE_INDEX
    return classes.astype(np.uint8)


def _describe_colors(colors: np.ndarray, counts: np.ndarray, limit: int = 5) -> str:
    order = np.argsort(-counts)
    parts = [f"{tuple(int(v) for v in colors[i]) if colors.shape[1] > 1 else int(colors[i, 0])} "
             f"x{int(counts[i])}" for i in order[:limit]]
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
    - ``"unknown"`` (default): they become ``schema.unknown_index``, with one warning (255, as
      with ``"ignore"``, where the schema has no unknown class);
    - ``"ignore"``: they become 255 (``IGNORE_INDEX``), left out of losses and metrics.

    Colours in ``schema.ignore_colors`` become 255 without a warning: the data set's "no data".
    ``source`` (a file name, say) is used in messages.
    """
    _check_policy(on_invalid)
    rgb = as_rgb_uint8(mask, source)
    if not schema.rgb_masks:
        raise MaskEncodingError(f"{source}: an RGB-coded mask, but schema {schema.name!r} decodes "
                                f"{schema.describe_encoding()}; give a schema with the mask colours "
                                "(deepglobe, potsdam, vaihingen, or a class_dict.csv)")
    binarise = threshold and is_binary_palette(schema)
    if binarise:
        bits = (rgb >> 7).astype(np.uint8)
        codes = bits[..., 0] << 2 | bits[..., 1] << 1 | bits[..., 2]
        classes = _binary_lookup(schema)[codes]
        invalid = classes == _NOT_IN_PALETTE
    else:
        packed = rgb[..., 0].astype(np.uint32) << 16 | rgb[..., 1].astype(np.uint32) << 8
        packed |= rgb[..., 2]
        colors, targets = _mask_colors(schema)
        palette_codes = colors[:, 0] << 16 | colors[:, 1] << 8 | colors[:, 2]
        order = np.argsort(palette_codes)
        sorted_codes = palette_codes[order]
        position = np.clip(np.searchsorted(sorted_codes, packed), 0, len(order) - 1)
        invalid = sorted_codes[position] != packed
        classes = targets[order][position]
    seen = (rgb[invalid] >> 7) * 255 if binarise else rgb[invalid]
    where = f"colours outside the palette{' after thresholding at 128' if binarise else ''}"
    return _apply_policy(classes, invalid, seen, schema, on_invalid, source, where)


def _check_policy(on_invalid: str) -> None:
    if on_invalid not in ON_INVALID_POLICIES:
        raise ValueError(f"on_invalid must be one of {ON_INVALID_POLICIES}, got {on_invalid!r}")


def index_to_class(
    mask: np.ndarray,
    schema: ClassSchema,
    *,
    on_invalid: OnInvalid = "unknown",
    source: str = "mask",
) -> np.ndarray:
    """Decode an (H, W) integer index mask into an (H, W) uint8 class map.

    Pixel value ``schema.values[i]`` becomes class ``i``; values in ``schema.ignore_values``
    (LoveDA's 0, "no data") become 255 and are left out of training and scores. Any other value
    follows ``on_invalid`` as in :func:`rgb_to_class`.
    """
    _check_policy(on_invalid)
    values = np.asarray(mask)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{source}: expected an (H, W) integer index mask, got shape {values.shape}, "
                         f"dtype {values.dtype}")
    if not schema.index_masks:
        sample = np.unique(values)[:8].tolist()
        raise MaskEncodingError(
            f"{source}: a single-channel mask (values {sample}...), but schema {schema.name!r} decodes "
            f"{schema.describe_encoding()} only. If its values are class indices, give a schema that "
            "names them: a preset with index masks (loveda, potsdam, vaihingen) or an index list "
            "file (value,name)")
    beyond = max((*schema.values, *schema.ignore_values)) + 1  # every other value lands here
    table = np.full(beyond + 1, _NOT_IN_PALETTE, dtype=np.int16)
    table[list(schema.values)] = np.arange(schema.num_classes)
    table[list(schema.ignore_values)] = IGNORE_INDEX
    clipped = np.where((values < 0) | (values > beyond), beyond, values) if values.size else values
    classes = table[clipped]
    invalid = classes == _NOT_IN_PALETTE
    return _apply_policy(classes, invalid, values[invalid][:, None], schema, on_invalid, source,
                         "values that are no class")


def decode_mask(
    mask: np.ndarray,
    schema: ClassSchema = DEEPGLOBE,
    *,
    on_invalid: OnInvalid = "unknown",
    source: str = "mask",
    threshold: bool = True,
) -> np.ndarray:
    """An (H, W) class map from a mask as stored: (H, W, 3) RGB-coded (:func:`rgb_to_class`, with
    ``threshold``) or (H, W) index-coded (:func:`index_to_class`).

    An RGB array whose three channels are equal everywhere is a grayscale index mask saved as
    RGB; it is read as an index mask where the schema has index values and no colours. A mask
    coded otherwise than the schema expects raises :class:`MaskEncodingError` saying which.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and not schema.rgb_masks and schema.index_masks:
        channels = mask[..., :3]
        if (channels == channels[..., :1]).all():
            return index_to_class(mask[..., 0], schema, on_invalid=on_invalid, source=source)
    if mask.ndim == 2:
        return index_to_class(mask, schema, on_invalid=on_invalid, source=source)
    return rgb_to_class(mask, schema, on_invalid=on_invalid, source=source, threshold=threshold)


def encode_mask(class_map: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> np.ndarray:
    """A class map coded as the schema's masks are stored: RGB where the schema has mask colours,
    else index values. Unlabelled pixels (255) get the schema's first "no data" colour or value
    (:data:`UNLABELLED_RGB` for an RGB schema without one)."""
    if schema.rgb_masks:
        rgb = class_to_rgb(class_map, schema)
        if schema.ignore_colors:
            rgb[np.asarray(class_map) == IGNORE_INDEX] = schema.ignore_colors[0]
        return rgb
    class_map = _checked_class_map(class_map, schema)
    if (class_map == IGNORE_INDEX).any() and not schema.ignore_values:
        raise ValueError(f"schema {schema.name!r} has no value for unlabelled pixels (ignore_values)")
    dtype = np.uint8 if max((*schema.values, *schema.ignore_values)) < 256 else np.uint16
    table = np.zeros(256, dtype=dtype)
    table[: schema.num_classes] = schema.values
    table[IGNORE_INDEX] = schema.ignore_values[0] if schema.ignore_values else 0
    return table[class_map]


def class_to_rgb(class_map: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> np.ndarray:
    """Encode an (H, W) class map as an (H, W, 3) uint8 RGB mask.

    Unlabelled pixels (255) get :data:`UNLABELLED_RGB`; any other value outside the schema raises.
    """
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: schema.num_classes] = schema.palette
    table[IGNORE_INDEX] = UNLABELLED_RGB
    return table[_checked_class_map(class_map, schema)]


def _checked_class_map(class_map: np.ndarray, schema: ClassSchema) -> np.ndarray:
    """``class_map`` as uint8 after checking it is (H, W) of the schema's classes and 255."""
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"expected an (H, W) class map, got shape {class_map.shape}")
    if not np.issubdtype(class_map.dtype, np.integer):
        raise ValueError(f"expected an integer class map, got dtype {class_map.dtype}")
    valid = ((class_map >= 0) & (class_map < schema.num_classes)) | (class_map == IGNORE_INDEX)
    if not valid.all():
        bad = np.unique(class_map[~valid])
        raise ValueError(f"class map holds values outside 0..{schema.num_classes - 1} and "
                         f"{IGNORE_INDEX}: {bad[:10].tolist()}")
    return class_map.astype(np.uint8)


def read_mask_file(path: str | Path, schema: ClassSchema = DEEPGLOBE) -> np.ndarray:
    """A mask file's pixels as stored: (H, W, 3) for RGB-coded, (H, W) for index masks.

    A palette PNG gives its indices where the schema decodes index masks only, its colours
    otherwise. A JPEG mask is refused unless the schema's colours are all 0/255, the one case
    the 128 threshold recovers from JPEG's changes.
    """
    pixels = read_mask_pixels(path, palette_as_index=not schema.rgb_masks)
    if Path(path).suffix.lower() in JPEG_EXTENSIONS and not (pixels.ndim == 3 and schema.rgb_masks
                                                              and is_binary_palette(schema)):
        raise ValueError(f"{path}: a JPEG mask. {LOSSY_MASK_HINT}. Schema {schema.name!r} "
                         f"({schema.describe_encoding()}, not all 0/255 colours) cannot be decoded "
                         "from one reliably")
    return pixels


def read_mask(
    path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    *,
    on_invalid: OnInvalid = "unknown",
) -> np.ndarray:
    """Read a mask file (RGB-coded or index, as :func:`read_mask_file` tells) and decode it with
    :func:`decode_mask`; errors name the file."""
    return decode_mask(read_mask_file(path, schema), schema, on_invalid=on_invalid, source=str(path))


def no_data_pixels(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> np.ndarray:
    """Where a mask (as stored) holds the schema's exact "no data" colours or values."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        rgb = mask[..., :3]
        if not schema.rgb_masks:  # an index mask saved as RGB
            return np.isin(rgb[..., 0], schema.ignore_values)
        return np.zeros(rgb.shape[:2], bool) if not schema.ignore_colors else np.any(
            [(rgb == c).all(-1) for c in schema.ignore_colors], axis=0)
    return np.isin(mask, schema.ignore_values)
