"""Notebook 02's tables: how a schema reads masks, what a mask's colours or values decode to, a
census of a folder's masks, and what each off-palette policy does."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .masks import (
    ON_INVALID_POLICIES,
    InvalidMaskError,
    OffPaletteWarning,
    as_rgb_uint8,
    decode_mask,
    is_binary_palette,
    no_data_pixels,
    read_mask_file,
)


def _decoded_quietly(mask: np.ndarray, schema: ClassSchema, threshold: bool = True) -> np.ndarray:
    """Class map with every off-palette pixel at 255 and no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffPaletteWarning)
        return decode_mask(mask, schema, on_invalid="ignore", threshold=threshold)


def off_palette_pixels(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE, *,
                       threshold: bool = True) -> int:
    """How many pixels of a mask match no class and no "no data" colour or value (RGB masks:
    with or without the 128 threshold)."""
    decoded = _decoded_quietly(mask, schema, threshold)
    no_data = no_data_pixels(mask, schema)
    return int(((decoded == IGNORE_INDEX) & ~no_data).sum())


def _class_names(stored: np.ndarray, schema: ClassSchema, threshold: bool) -> list[str | None]:
    """What each of ``stored`` colours (K, 3) or values (K,) decodes to: a class name, "no data
    (ignored)", or ``None`` for off-palette."""
    decoded = _decoded_quietly(stored[None], schema, threshold)[0]
    looked_up = stored
    if threshold and stored.ndim == 2 and schema.rgb_masks and is_binary_palette(schema):
        looked_up = (stored >= 128).astype(np.uint8) * 255
    no_data = no_data_pixels(looked_up[None], schema)[0]
    return [schema.names[d] if d != IGNORE_INDEX else ("no data (ignored)" if gone else None)
            for d, gone in zip(decoded, no_data)]


def schema_table(schema: ClassSchema = DEEPGLOBE) -> pd.DataFrame:
    """One row per class (its mask colour and/or index value, its plot colour, whether headline
    means leave it out), then one per "no data" colour or value: how the schema reads a mask."""
    rows = []
    for i, name in enumerate(schema.names):
        row = {"class": name}
        if schema.rgb_masks:
            row["mask colour"] = schema.colors[i]
        if schema.index_masks:
            row["index value"] = schema.values[i]
        if not schema.rgb_masks:
            row["plot colour"] = schema.colors[i]
        row["role"] = "left out of headline means" if i == schema.unknown_index else "class"
        rows.append(row)
    for color in schema.ignore_colors if schema.rgb_masks else ():
        rows.append({"class": "no data", "mask colour": color, "role": f"ignored ({IGNORE_INDEX})"})
    for value in schema.ignore_values if schema.index_masks else ():
        rows.append({"class": "no data", "index value": value, "role": f"ignored ({IGNORE_INDEX})"})
    frame = pd.DataFrame(rows).set_index("class")
    if "index value" in frame:  # blank, not NaN, where a row has no value
        frame["index value"] = [("" if pd.isna(v) else int(v)) for v in frame["index value"]]
    return frame.fillna("")


def value_table(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE, limit: int = 20) -> pd.DataFrame:
    """The distinct colours (RGB mask) or values (index mask) of a mask, most frequent first, with
    the class each decodes to: RGB masks by exact matching and after thresholding at 128."""
    mask = np.asarray(mask)
    flat = as_rgb_uint8(mask).reshape(-1, 3) if mask.ndim == 3 else mask.reshape(-1, 1)
    stored, counts = np.unique(flat, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:limit]
    stored, counts = (stored[order], counts[order]) if mask.ndim == 3 else (stored[order, 0], counts[order])
    if mask.ndim == 3:
        table = {"colour": [tuple(int(v) for v in c) for c in stored], "pixels": counts}
    else:
        table = {"value": stored.tolist(), "pixels": counts}
    if mask.ndim == 3 and schema.rgb_masks:
        table["exact match"] = _class_names(stored, schema, threshold=False)
        table["after threshold"] = _class_names(stored, schema, threshold=True)
    else:
        table["class"] = _class_names(stored, schema, threshold=False)
    return pd.DataFrame(table)


def scan_masks(mask_paths: Iterable[str | Path], schema: ClassSchema = DEEPGLOBE) -> pd.DataFrame:
    """Per mask file: how it is coded, its "no data" pixels, the pixels that match no class
    exactly, and those still off-palette after the 128 threshold (RGB masks; the ones a policy
    has to decide), most troubled masks first (then those with most "no data")."""
    rows = []
    for path in mask_paths:
        stored = read_mask_file(path, schema)
        rows.append({"mask": Path(path).name, "coded as": "RGB" if stored.ndim == 3 else "index",
                     "pixels": stored.shape[0] * stored.shape[1],
                     "no data": int(no_data_pixels(stored, schema).sum()),
                     "off palette (exact)": off_palette_pixels(stored, schema, threshold=False),
                     "off palette (thresholded)": off_palette_pixels(stored, schema)})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["off palette (thresholded)", "off palette (exact)", "no data"], ascending=False,
                             ignore_index=True, kind="stable")


def with_off_palette_pixels(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE, size: int = 3) -> np.ndarray:
    """A copy of ``mask`` whose top-left ``size`` x ``size`` pixels hold a colour (or value) that
    is no class of the schema and no "no data": what the policies are shown on."""
    mask = np.array(mask, copy=True)
    if mask.ndim == 3:
        taken = {*schema.colors, *schema.ignore_colors}
        binary = [c for c in ((r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255))
                  if c not in taken]
        mask[:size, :size, :3] = binary[0] if binary else next(
            (v, 7, 7) for v in range(256) if (v, 7, 7) not in taken)
    else:
        taken = {*schema.values, *schema.ignore_values} if schema.index_masks else set()
        mask[:size, :size] = next(v for v in range(1, 256) if v not in taken)
    return mask


def compare_policies(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> pd.DataFrame:
    """What each ``on_invalid`` policy does with a mask: the error, or where the pixels went."""
    rows = []
    for policy in ON_INVALID_POLICIES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                decoded = decode_mask(mask, schema, on_invalid=policy)
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
