"""Cutting large images (DeepGlobe's 2448 x 2448 originals) into smaller tiles, pairs and ids kept.

Every training crop of a 2448 x 2448 original decodes the whole 6-megapixel JPEG; a 512 x 512
tile decodes in a twentieth of the time, and a machine with little memory holds a batch of
them. Tiles do not overlap and cover the whole image: an original of 2448 pixels becomes 5 x 5
tiles of 489 or 490 pixels for ``size=512`` (the size is a target, met as closely as an even cut
allows). Tile ``r``, ``c`` of image ``<id>`` is ``<id>-r<r>-c<c>``; masks are cut from their pixels
as stored (RGB, index values, a palette), so the reader's checks still apply to them. Tiles are
written in DeepGlobe's layout whatever the source's, with the source's schema beside them as a
file (``class_dict.csv`` or ``schema.toml``), so that the tiles read as the originals did.

Command line: ``python -m lc_utils.tiles SOURCE DEST [--size 512]``.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import DEEPGLOBE, PRESETS, SCHEMA_DIR, load_preset
from .files import IMAGE_SUFFIX, MASK_SUFFIX, read_rgb, tile_id
from .layouts import SCHEMA_FILES, load_schema, scan_dataset


def tile_bounds(length: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of the tiles along one axis: ``round(length / size)`` (at least one) tiles
    of equal length give or take a pixel, with no overlap and no pixel left out."""
    n = max(1, round(length / size))
    edges = np.linspace(0, length, n + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _save_image(array: np.ndarray, path: Path, quality: int) -> None:
    if path.suffix == ".png":
        Image.fromarray(array).save(path)
    else:
        Image.fromarray(array).save(path, quality=quality, subsampling=0)


def cut_tiles(source: str | Path, dest: str | Path, size: int = 512, *, image_format: str = "jpg",
              quality: int = 95, progress: bool = True) -> list[tuple[Path, Path | None]]:
    """Cut every image under ``source`` (any layout :func:`lc_utils.layouts.scan_dataset` reads)
    and its mask into tiles of about ``size`` pixels under ``dest``, split subfolders kept.

    Images are written as JPEG (``quality``, no chroma subsampling) or, with ``image_format="png"``,
    losslessly; masks as PNG with their pixels as stored. The source's schema file is copied, or
    the preset its layout or names imply written as ``schema.toml``. Returns the (image, mask)
    paths written; the mask is ``None`` for images that had none.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    source, dest = Path(source), Path(dest)
    if dest.resolve() == source.resolve():
        raise ValueError(f"{dest}: write the tiles to another folder than the originals")
    samples = scan_dataset(source)
    written: list[tuple[Path, Path | None]] = []
    for number, sample in enumerate(samples, start=1):
        folder = dest / sample.split
        folder.mkdir(parents=True, exist_ok=True)
        image = read_rgb(sample.image)
        mask = _open_mask(sample.mask) if sample.mask is not None else None
        if mask is not None and mask.size != (image.shape[1], image.shape[0]):
            raise ValueError(f"{sample.mask}: mask is {mask.size[0]}x{mask.size[1]} but its image "
                             f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}")
        for r, (top, bottom) in enumerate(tile_bounds(image.shape[0], size)):
            for c, (left, right) in enumerate(tile_bounds(image.shape[1], size)):
                name = tile_id(sample.image_id, r, c)
                image_path = folder / f"{name}{IMAGE_SUFFIX}.{image_format}"
                _save_image(image[top:bottom, left:right], image_path, quality)
                mask_path = None
                if mask is not None:
                    mask_path = folder / f"{name}{MASK_SUFFIX}.png"
                    mask.crop((left, top, right, bottom)).save(mask_path)
                written.append((image_path, mask_path))
        if progress:
            print(f"\r{number}/{len(samples)} images cut", end="", flush=True)
    if progress:
        print(f"\n{len(written)} tiles in {dest}")
    _keep_schema(source, dest)
    return written


def _open_mask(path: Path) -> Image.Image:
    """A mask file's pixels in their own mode (RGB, grayscale, 16-bit, palette), loaded."""
    try:
        with Image.open(path) as mask:
            mask.load()
            return mask.copy()
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read mask (corrupt or truncated file?): {error}") from error


def _keep_schema(source: Path, dest: Path) -> None:
    """Put the source's schema beside the tiles, whose DeepGlobe layout no longer implies it."""
    for name in SCHEMA_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
            return
    schema = load_schema(source)
    preset = next((p for p in PRESETS if load_preset(p) == schema), None)
    if schema != DEEPGLOBE and preset is not None:
        shutil.copy(SCHEMA_DIR / f"{preset}.toml", dest / "schema.toml")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lc_utils.tiles",
        description="Cut large satellite images and their masks into tiles of about SIZE pixels "
                    "(no overlap, nothing left out), keeping the pairs, their ids and split folders.")
    parser.add_argument("source", type=Path,
                        help="folder of <id>_sat.jpg + <id>_mask.png (any layout the course reads)")
    parser.add_argument("dest", type=Path, help="folder to write the tiles to")
    parser.add_argument("--size", type=int, default=512, help="tile size to aim for, in pixels (default 512)")
    parser.add_argument("--png", action="store_true",
                        help="write images as PNG (lossless, larger) instead of JPEG")
    args = parser.parse_args(argv)
    cut_tiles(args.source, args.dest, args.size, image_format="png" if args.png else "jpg")


if __name__ == "__main__":
    main()
