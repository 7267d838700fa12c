"""Cutting large images (DeepGlobe's 2448 x 2448 originals) into smaller tiles, pairs and ids kept.

Every training crop of a 2448 x 2448 original decodes the whole 6-megapixel JPEG; a 512 x 512
tile decodes in a twentieth of the time, and a machine with little memory holds a batch of
them. Tiles do not overlap and cover the whole image: an original of 2448 pixels becomes 5 x 5
tiles of 489 or 490 pixels for ``size=512`` (the size is a target, met as closely as an even cut
allows). Tile ``r``, ``c`` of image ``<id>`` is ``<id>-r<r>-c<c>``; masks are cut from their RGB
pixels as they are, so the reader's checks still apply to them.

Command line: ``python -m lc_utils.tiles SOURCE DEST [--size 512]``.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .datasets import scan_dataset
from .files import IMAGE_SUFFIX, MASK_SUFFIX, read_rgb, tile_id


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
    """Cut every image under ``source`` (any layout :func:`lc_utils.datasets.scan_dataset` reads)
    and its mask into tiles of about ``size`` pixels under ``dest``, split subfolders kept.

    Images are written as JPEG (``quality``, no chroma subsampling) or, with ``image_format="png"``,
    losslessly; masks as PNG with their original colours. ``class_dict.csv`` is copied. Returns the
    (image, mask) paths written; the mask is ``None`` for images that had none.
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
        mask = read_rgb(sample.mask, what="mask") if sample.mask is not None else None
        if mask is not None and mask.shape != image.shape:
            raise ValueError(f"{sample.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                             f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}")
        for r, (top, bottom) in enumerate(tile_bounds(image.shape[0], size)):
            for c, (left, right) in enumerate(tile_bounds(image.shape[1], size)):
                name = tile_id(sample.image_id, r, c)
                image_path = folder / f"{name}{IMAGE_SUFFIX}.{image_format}"
                _save_image(image[top:bottom, left:right], image_path, quality)
                mask_path = None
                if mask is not None:
                    mask_path = folder / f"{name}{MASK_SUFFIX}.png"
                    Image.fromarray(mask[top:bottom, left:right]).save(mask_path)
                written.append((image_path, mask_path))
        if progress:
            print(f"\r{number}/{len(samples)} images cut", end="", flush=True)
    if progress:
        print(f"\n{len(written)} tiles in {dest}")
    if (source / "class_dict.csv").is_file():
        shutil.copy(source / "class_dict.csv", dest / "class_dict.csv")
    return written


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
