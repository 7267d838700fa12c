"""Cutting large images into tiles: nothing lost, pairs and ids kept, tiles of one image kept together."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lc_utils.classes import load_preset
from lc_utils.datasets import read_pair, split_pairs
from lc_utils.files import read_rgb, source_id, tile_id
from lc_utils.layouts import find_pairs, load_schema, scan_dataset
from lc_utils.masks import read_mask
from lc_utils.synthetic import make_standin
from lc_utils.tiles import cut_tiles, main, tile_bounds


@pytest.mark.parametrize(("length", "size", "count"),
                         [(2448, 512, 5), (96, 32, 3), (100, 512, 1), (700, 512, 1)])
def test_tile_bounds_cover_without_overlap(length: int, size: int, count: int) -> None:
    bounds = tile_bounds(length, size)
    assert len(bounds) == count
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(bounds, bounds[1:]))
    lengths = [stop - start for start, stop in bounds]
    assert max(lengths) - min(lengths) <= 1


def test_tile_ids_name_their_source() -> None:
    assert tile_id("104113", 2, 4) == "104113-r2-c4"
    assert source_id("104113-r2-c4") == "104113"
    assert source_id("104113") == "104113"
    assert source_id("a-b-r1-c10") == "a-b"


def test_cut_tiles_reassemble_to_the_originals(sample_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tiles"
    written = cut_tiles(sample_root, dest, size=32, image_format="png", progress=False)
    originals = scan_dataset(sample_root)
    assert len(written) == 9 * len(originals)
    assert (dest / "class_dict.csv").read_text() == (sample_root / "class_dict.csv").read_text()
    tiles = scan_dataset(dest)
    assert {(t.split, source_id(t.image_id)) for t in tiles} == {(o.split, o.image_id) for o in originals}
    schema = load_schema(dest)
    for original in originals[:3]:
        image, class_map = read_pair(original.image, original.mask)
        rebuilt_image, rebuilt_map = np.zeros_like(image), np.zeros_like(class_map)
        for r, (top, bottom) in enumerate(tile_bounds(96, 32)):
            for c, (left, right) in enumerate(tile_bounds(96, 32)):
                name = tile_id(original.image_id, r, c)
                tile_image, tile_map = read_pair(dest / original.split / f"{name}_sat.png",
                                                 dest / original.split / f"{name}_mask.png", schema)
                rebuilt_image[top:bottom, left:right] = tile_image
                rebuilt_map[top:bottom, left:right] = tile_map
        np.testing.assert_array_equal(rebuilt_image, image)  # PNG: lossless
        np.testing.assert_array_equal(rebuilt_map, class_map)


def test_split_keeps_the_tiles_of_one_image_together(sample_root: Path, tmp_path: Path) -> None:
    cut_tiles(sample_root, tmp_path, size=48, progress=False)
    pairs = find_pairs(tmp_path)
    parts = split_pairs(pairs, seed=0)
    sources = {name: {source_id(pair.image_id) for pair in part} for name, part in parts.items()}
    assert not sources["train"] & sources["val"] and not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    assert sum(map(len, parts.values())) == len(pairs)
    assert all(len(part) % 4 == 0 for part in parts.values())  # whole images of 2 x 2 tiles
    # Images that are not tiles split exactly as before the grouping existed.
    originals = find_pairs(sample_root)
    order = np.random.default_rng(0).permutation(len(originals))
    assert split_pairs(originals, seed=0)["train"][0] == originals[order[0]]


def test_one_image_cut_into_tiles_still_splits_with_a_warning(sample_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "one"
    source.mkdir()
    for path in find_pairs(sample_root)[0]:
        shutil.copy(path, source / path.name)
    cut_tiles(source, tmp_path / "tiles", size=32, progress=False)
    with pytest.warns(UserWarning, match="too few to keep"):
        parts = split_pairs(find_pairs(tmp_path / "tiles"))
    assert all(parts.values())


def test_command_line(sample_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(sample_root), str(tmp_path / "out"), "--size", "48"])
    assert "tiles in" in capsys.readouterr().out
    assert len(find_pairs(tmp_path / "out")) == 4 * len(find_pairs(sample_root))
    with pytest.raises(ValueError, match="another folder"):
        cut_tiles(sample_root, sample_root)


def test_a_real_original_cut_into_tiles(real_full: Path, tmp_path: Path) -> None:
    image_path, mask_path = find_pairs(real_full)[0]
    source = tmp_path / "original"
    source.mkdir()
    for path in (image_path, mask_path):
        shutil.copy(path, source / path.name)
    written = cut_tiles(source, tmp_path / "tiles", size=512, progress=False)
    assert len(written) == 25
    class_map = read_mask(mask_path, load_schema(real_full))
    image = read_rgb(image_path)
    (top, bottom), (left, right) = tile_bounds(2448, 512)[1], tile_bounds(2448, 512)[3]
    tile_image, tile_mask = written[1 * 5 + 3]
    np.testing.assert_array_equal(read_mask(tile_mask), class_map[top:bottom, left:right])
    # JPEG at quality 95 without chroma subsampling: close to the original, not equal.
    difference = np.abs(read_rgb(tile_image).astype(int) - image[top:bottom, left:right]).mean()
    assert difference < 3


def test_a_coarser_scale_resizes_before_cutting_and_makes_up_no_class(real_full: Path,
                                                                       tmp_path: Path) -> None:
    """scale=0.5: a 2448 original at 1 m per pixel, cut into 512-pixel tiles; every mask pixel is
    one of the original's classes at the same place, the classes' shares kept."""
    image_path, mask_path = find_pairs(real_full)[0]
    source = tmp_path / "original"
    source.mkdir()
    for path in (image_path, mask_path):
        shutil.copy(path, source / path.name)
    written = cut_tiles(source, tmp_path / "tiles", size=512, scale=0.5, progress=False)
    assert len(written) == 4 and read_rgb(written[0][0]).shape == (612, 612, 3)  # 1224 = 2 x 612
    schema = load_schema(real_full)
    original = read_mask(mask_path, schema)
    halved = np.block([[read_mask(written[2 * r + c][1], schema) for c in range(2)] for r in range(2)])
    np.testing.assert_array_equal(halved, original[1::2, 1::2][:1224, :1224])  # nearest: pixels kept
    shares = np.bincount(halved.ravel(), minlength=7) / halved.size
    assert np.allclose(shares, np.bincount(original.ravel(), minlength=7) / original.size, atol=0.01)
    with pytest.raises(ValueError, match="scale must be in"):
        cut_tiles(source, tmp_path / "bigger", scale=2.0, progress=False)


def test_index_masks_are_cut_as_stored_and_the_schema_goes_with_them(tmp_path: Path) -> None:
    """LoveDA's single-channel masks stay single-channel, "no data" included, and the tiles (in
    DeepGlobe's layout) still read with LoveDA's schema."""
    source = make_standin(tmp_path / "loveda", "loveda", "loveda", n_images=5, size=64)
    dest = tmp_path / "tiles"
    cut_tiles(source, dest, size=32, image_format="png", progress=False)
    assert load_schema(dest) == load_preset("loveda") and (dest / "schema.toml").is_file()
    tiles = dict(find_pairs(dest))
    for image, mask in find_pairs(source):
        whole = read_mask(mask, load_preset("loveda"))
        for r, c in ((0, 0), (1, 1)):
            tile = next(m for i, m in tiles.items() if i.name.startswith(f"{image.stem}-r{r}-c{c}_"))
            assert Image.open(tile).mode == "L"
            rows, cols = slice(32 * r, 32 * (r + 1)), slice(32 * c, 32 * (c + 1))
            assert (read_mask(tile, load_schema(dest)) == whole[rows, cols]).all()
