"""How the studies' 512 x 512 real tiles relate to DeepGlobe's 2448 x 2448 originals
(``python -m benchmarks.tile_scale``): at which ground sampling distance to cut the Kaggle download
into comparable tiles.

The shared tiles come from a course's copy of DeepGlobe without a word on how they were made. Two
measures that depend on the pixel size, not on the scene, compared between the tiles and the five
originals resized by a factor and cut into 512-pixel crops:

- the share of mask pixels on a class edge (the masks' polygons have more edge per pixel the
  coarser the pixels);
- the share of an image's spectral power at high spatial frequency (above 0.15 cycles per pixel,
  against 0.02-0.15): resizing moves detail up the spectrum.

The record keeps both measures per factor (median and quartiles over the crops), the factor each
points to, and the class shares of the tiles beside the originals'.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lc_utils.layouts import find_pairs, load_schema
from lc_utils.masks import read_mask
from lc_utils.settings import PROJECT_ROOT

from ._common import save_record

SHARED = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "tile_scale.json"
FACTORS = (1.0, 0.75, 0.5, 0.375, 0.25)
CROP = 512


def edge_share(class_map: np.ndarray) -> float:
    """The share of pixels whose right or lower neighbour has another class."""
    right = class_map[:-1, 1:] != class_map[:-1, :-1]
    down = class_map[1:, :-1] != class_map[:-1, :-1]
    return float((right | down).mean())


def high_frequency_share(image: np.ndarray) -> float:
    """Power above 0.15 cycles per pixel over power in 0.02-0.15 cycles per pixel (grey levels)."""
    grey = image.astype(np.float32).mean(axis=2)
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    rows, cols = np.indices(power.shape)
    radius = np.hypot(rows - power.shape[0] / 2, cols - power.shape[1] / 2) / min(power.shape)
    return float(power[radius > 0.15].sum() / power[(radius > 0.02) & (radius <= 0.15)].sum())


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _crops(image: Image.Image, mask: np.ndarray, factor: float) -> list[tuple[np.ndarray, np.ndarray]]:
    size = round(image.size[0] * factor)
    image = image.resize((size, size), Image.Resampling.LANCZOS) if factor != 1 else image
    class_map = np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
    array = np.asarray(image)
    return [(array[top:top + CROP, left:left + CROP], class_map[top:top + CROP, left:left + CROP])
            for top in range(0, size - CROP + 1, CROP) for left in range(0, size - CROP + 1, CROP)]


def _summary(values: list[float]) -> dict[str, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "crops": len(values)}


def measure(tiles_dir: Path, originals_dir: Path) -> dict[str, Any]:
    """Both measures for the tiles and for the originals at every factor of :data:`FACTORS`."""
    schema = load_schema(originals_dir)
    tiles = find_pairs(tiles_dir)
    tile_maps = [read_mask(mask, schema) for _, mask in tiles]
    record: dict[str, Any] = {
        "tiles": {"edge_share": _summary([edge_share(m) for m in tile_maps]),
                  "high_frequency_share": _summary([high_frequency_share(_rgb(i)) for i, _ in tiles]),
                  "class_shares": _shares(tile_maps, schema.names)},
        "originals": {}}
    originals = [(Image.open(i).convert("RGB"), read_mask(m, schema)) for i, m in find_pairs(originals_dir)]
    record["originals_class_shares"] = _shares([m for _, m in originals], schema.names)
    for factor in FACTORS:
        crops = [crop for image, mask in originals for crop in _crops(image, mask, factor)]
        record["originals"][f"{factor:g}"] = {
            "metres_per_pixel": 0.5 / factor,
            "edge_share": _summary([edge_share(m) for _, m in crops]),
            "high_frequency_share": _summary([high_frequency_share(i) for i, _ in crops])}
    for name in ("edge_share", "high_frequency_share"):
        target = record["tiles"][name]["median"]
        record[f"closest_factor_by_{name}"] = float(min(
            FACTORS, key=lambda f: abs(np.log(record["originals"][f"{f:g}"][name]["median"] / target))))
    return record


def _shares(class_maps: list[np.ndarray], names: tuple[str, ...]) -> dict[str, float]:
    counts = np.sum([np.bincount(m.ravel(), minlength=len(names))[:len(names)] for m in class_maps], axis=0)
    return {name: float(c / counts.sum()) for name, c in zip(names, counts)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=Path, default=SHARED / "tiles_512")
    parser.add_argument("--originals", type=Path, default=SHARED / "full_2448")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    record = measure(args.tiles, args.originals)
    save_record(args.out, record, "tile_scale", argv, started)
    print(f"[tile_scale] closest factor: {record['closest_factor_by_edge_share']:g} by the masks' edges, "
          f"{record['closest_factor_by_high_frequency_share']:g} by the images' detail")


if __name__ == "__main__":
    main()
