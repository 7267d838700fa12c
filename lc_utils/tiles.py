"""Cutting large images (DeepGlobe's 2448 x 2448 originals) into smaller tiles, pairs and ids kept.

Every training crop of a 2448 x 2448 original decodes the whole 6-megapixel JPEG; a 512 x 512
tile decodes in a twentieth of the time, and a machine with little memory holds a batch of
them. Tiles do not overlap and cover the whole image: an original of 2448 pixels becomes 5 x 5
tiles of 489 or 490 pixels for ``size=512`` (the size is a target, met as closely as an even cut
allows). Tile ``r``, ``c`` of image ``<id>`` is ``<id>-r<r>-c<c>``; masks are cut from their pixels
as stored (RGB, index values, a palette), so the reader's checks still apply to them. Tiles are
written in DeepGlobe's layout whatever the source's, with the schema beside them as a file (the
source's ``class_dict.csv`` or ``schema.toml``, or the resolved schema as ``schema.toml``), so
that the tiles read as the originals did.

Command line: ``python -m lc_utils.tiles SOURCE DEST [--size 512] [--scale 1] [--schema NAME|FILE]``; a
failure prints one line and exits with status 2, leaving DEST as it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import ClassSchema
from .files import IMAGE_SUFFIX, MASK_SUFFIX, read_rgb, tile_id
from .layouts import SCHEMA_FILES, Sample, load_schema, scan_dataset
from .masks import MaskEncodingError, read_mask


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


def cut_tiles(source: str | Path, dest: str | Path, size: int = 512, *,
              schema: ClassSchema | str | Path | None = None, image_suffix: str | None = None,
              mask_suffix: str | None = None, image_format: str = "jpg", quality: int = 95,
              scale: float = 1.0, progress: bool = True) -> list[tuple[Path, Path | None]]:
    """Cut every image under ``source`` (any layout :func:`lc_utils.layouts.scan_dataset` reads,
    with its ``image_suffix`` / ``mask_suffix``) and its mask into tiles of about ``size`` pixels
    under ``dest``, split subfolders kept.

    Images are written as JPEG (``quality``, no chroma subsampling) or, with ``image_format="png"``,
    losslessly; masks as PNG with their pixels as stored. ``scale`` below 1 resizes every image
    (Lanczos) and mask (nearest: no colour is made up) by that factor before cutting: a coarser
    ground sampling distance, e.g. 0.5 for tiles of 1 m per pixel from DeepGlobe's 50 cm.
    ``schema`` (default: what
    :func:`lc_utils.layouts.load_schema` finds for ``source``) is
    checked against the first mask before anything is cut, and written beside the tiles (the
    source's schema file as it is, else ``schema.toml``), so that the tiles read as the originals
    did. Everything is written to a temporary folder beside ``dest`` and moved into place at the
    end: a failure leaves ``dest`` as it was (``dest`` must not exist yet, or be empty). Returns the
    (image, mask) paths written; the mask is ``None`` for images that had none.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1]: tiles are cut at the originals' resolution or coarser, "
                         f"got {scale}")
    source, dest = Path(source), Path(dest)
    if dest.resolve() == source.resolve():
        raise ValueError(f"{dest}: write the tiles to another folder than the originals")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest}: already exists and is not an empty folder; choose a new folder for the "
                         "tiles")
    samples = scan_dataset(source, image_suffix=image_suffix, mask_suffix=mask_suffix)
    schema = load_schema(source, schema)
    first = next((s for s in samples if s.mask is not None), None)
    if first is not None:  # a mask the schema cannot read fails here, before any tile is cut
        try:
            read_mask(first.mask, schema)
        except MaskEncodingError as error:
            raise MaskEncodingError(f"{error}. Name the schema: --schema NAME|FILE or $DATA_SCHEMA (schema= "
                                    "in cut_tiles)") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    written: list[tuple[Path, Path | None]] = []
    try:
        for number, sample in enumerate(samples, start=1):
            written += _cut_one(sample, partial, size, image_format, quality, scale)
            if progress:
                print(f"\r{number}/{len(samples)} images cut", end="", flush=True)
        _keep_schema(source, partial, schema)
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if progress and samples:
            print(flush=True)  # end the progress line before the error
        raise
    if progress:
        print(f"\n{len(written)} tiles in {dest}")
    return [(dest / i.relative_to(partial), None if m is None else dest / m.relative_to(partial))
            for i, m in written]


def _cut_one(sample: Sample, dest: Path, size: int, image_format: str, quality: int, scale: float = 1.0
             ) -> list[tuple[Path, Path | None]]:
    """The tiles of one image (and its mask) in ``dest`` / its split, resized by ``scale`` first."""
    folder = dest / sample.split
    folder.mkdir(parents=True, exist_ok=True)
    image = read_rgb(sample.image)
    mask = _open_mask(sample.mask) if sample.mask is not None else None
    if mask is not None and mask.size != (image.shape[1], image.shape[0]):
        raise ValueError(f"{sample.mask}: mask is {mask.size[0]}x{mask.size[1]} but its image "
                         f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}")
    if scale != 1:
        target = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(target, Image.Resampling.LANCZOS))
        mask = None if mask is None else mask.resize(target, Image.Resampling.NEAREST)
    written = []
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
    return written


def _open_mask(path: Path) -> Image.Image:
    """A mask file's pixels in their own mode (RGB, grayscale, 16-bit, palette), loaded."""
    try:
        with Image.open(path) as mask:
            mask.load()
            return mask.copy()
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read mask (corrupt or truncated file?): {error}") from error


def _keep_schema(source: Path, dest: Path, schema: ClassSchema) -> None:
    """Put the schema beside the tiles, whose DeepGlobe layout no longer implies it: the source's
    schema file where it is the one in use, else ``schema.toml``."""
    for name in SCHEMA_FILES:
        if (source / name).is_file() and ClassSchema.from_file(source / name) == schema:
            shutil.copy(source / name, dest / name)
            return
    (dest / "schema.toml").write_text(schema.to_toml())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input exits with status 2 and one line saying why."""
    parser = argparse.ArgumentParser(
        prog="python -m lc_utils.tiles",
        description="Cut large satellite images and their masks into tiles of about SIZE pixels "
                    "(no overlap, nothing left out), keeping the pairs, their ids and split folders.")
    parser.add_argument("source", type=Path,
                        help="folder of <id>_sat.jpg + <id>_mask.png (any layout the course reads)")
    parser.add_argument("dest", type=Path, help="a new folder to write the tiles to")
    parser.add_argument("--size", type=int, default=512, help="tile size to aim for, in pixels (default 512)")
    # the command, not cut_tiles, reads the variables that `make` and the notebooks use too (an
    # empty one counts as unset there)
    parser.add_argument("--schema", metavar="NAME|FILE", default=os.environ.get("DATA_SCHEMA"),
                        help="the masks' class schema: deepglobe, loveda, potsdam, vaihingen or a schema "
                             "file (default: $DATA_SCHEMA, else read from the source folder)")
    parser.add_argument("--image-suffix", metavar="ENDING", default=os.environ.get("DATA_IMAGE_SUFFIX"),
                        help="the ending of image names beyond the id (default: $DATA_IMAGE_SUFFIX)")
    parser.add_argument("--mask-suffix", metavar="ENDING", default=os.environ.get("DATA_MASK_SUFFIX"),
                        help="the ending of mask names beyond the id (default: $DATA_MASK_SUFFIX)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="resize the originals by this factor first: 0.5 gives 1 m per pixel from "
                             "DeepGlobe's 50 cm (default: 1, the originals' resolution)")
    parser.add_argument("--png", action="store_true",
                        help="write images as PNG (lossless, larger) instead of JPEG")
    args = parser.parse_args(argv)
    try:
        cut_tiles(args.source, args.dest, args.size, schema=args.schema, image_suffix=args.image_suffix,
                  mask_suffix=args.mask_suffix, image_format="png" if args.png else "jpg", scale=args.scale)
    except (OSError, ValueError) as error:
        print(f"python -m lc_utils.tiles: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
