"""Class schemas as data: the presets, custom files, index masks, and masks coded otherwise than the
schema expects."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX, PRESETS, ClassSchema, load_preset, resolve_schema
from lc_utils.mask_tables import schema_table, value_table, with_off_palette_pixels
from lc_utils.masks import (
    InvalidMaskError,
    MaskEncodingError,
    OffPaletteWarning,
    class_to_rgb,
    decode_mask,
    encode_mask,
    index_to_class,
    no_data_pixels,
    read_mask,
)

LOVEDA = load_preset("loveda")
POTSDAM = load_preset("potsdam")


def test_every_preset_loads_from_its_data_file() -> None:
    names = {preset: load_preset(preset).names for preset in PRESETS}
    assert names["deepglobe"] == ("urban", "agriculture", "rangeland", "forest", "water", "barren", "unknown")
    assert names["loveda"] == ("background", "building", "road", "water", "barren", "forest", "agriculture")
    assert names["potsdam"] == names["vaihingen"] == (
        "impervious surfaces", "building", "low vegetation", "tree", "car", "clutter")
    assert load_preset("DeepGlobe") is not DEEPGLOBE and load_preset("DeepGlobe") == DEEPGLOBE
    assert DEEPGLOBE.unknown_index == 6 and LOVEDA.unknown_index is None and POTSDAM.unknown_index is None
    with pytest.raises(ValueError, match="no schema preset 'cityscapes'"):
        load_preset("cityscapes")


def test_loveda_no_data_is_ignored_and_classes_shift_down() -> None:
    stored = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.uint8)
    assert index_to_class(stored, LOVEDA).tolist() == [[IGNORE_INDEX, 0, 1, 2], [3, 4, 5, 6]]
    assert no_data_pixels(stored, LOVEDA).sum() == 1


def test_a_value_that_is_no_class_follows_the_policy() -> None:
    stored = np.array([[1, 9, 9]], np.uint8)
    with pytest.raises(InvalidMaskError, match=r"2 pixel\(s\) of 3 have values that are no class: 9 x2"):
        index_to_class(stored, LOVEDA, on_invalid="raise", source="m.png")
    with pytest.warns(OffPaletteWarning, match="ignored, as schema 'LoveDA' has no unknown class"):
        assert index_to_class(stored, LOVEDA).tolist() == [[0, IGNORE_INDEX, IGNORE_INDEX]]


def test_potsdam_reads_its_rgb_labels_and_mmsegmentations_index_labels_alike() -> None:
    classes = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    rgb = class_to_rgb(classes, POTSDAM)
    rgb[0, 0] = (0, 0, 0)  # an eroded boundary
    rgb[1, 2] = (250, 5, 3)  # clutter, slightly off: 0/255 palettes are thresholded
    expected = [[IGNORE_INDEX, 1, 2], [3, 4, 5]]
    assert decode_mask(rgb, POTSDAM).tolist() == expected
    # mmsegmentation's converter: 0 black (boundary), 1 impervious ... 6 clutter
    mmseg = np.array([[0, 2, 3], [4, 5, 6]], np.uint8)
    assert decode_mask(mmseg, POTSDAM).tolist() == expected


def test_the_mask_coding_must_agree_with_the_schema() -> None:
    with pytest.raises(MaskEncodingError, match="single-channel mask .* 'DeepGlobe' decodes RGB-coded"):
        decode_mask(np.zeros((2, 2), np.uint8), DEEPGLOBE, source="a.png")
    rgb = class_to_rgb(np.zeros((2, 2), np.uint8), DEEPGLOBE)
    with pytest.raises(MaskEncodingError, match=r"an RGB-coded mask, but schema 'LoveDA' decodes single"):
        decode_mask(rgb, LOVEDA, source="a.png")
    grey_as_rgb = np.repeat(np.array([[0, 3]], np.uint8)[..., None], 3, axis=-1)
    assert decode_mask(grey_as_rgb, LOVEDA).tolist() == [[IGNORE_INDEX, 2]]


def test_index_mask_files_of_every_kind(tmp_path: Path) -> None:
    stored = np.array([[0, 1, 7], [6, 2, 3]], np.uint8)
    expected = index_to_class(stored, LOVEDA)
    Image.fromarray(stored).save(tmp_path / "grey.png")
    Image.fromarray(stored).save(tmp_path / "grey.tif")
    Image.fromarray(stored.astype(np.uint16)).save(tmp_path / "sixteen.png")
    palette = Image.fromarray(stored).convert("P")
    palette.putpalette([v for color in [(0, 0, 0), *LOVEDA.colors] for v in color])
    palette.save(tmp_path / "palette.png")
    for name in ("grey.png", "grey.tif", "sixteen.png", "palette.png"):
        assert read_mask(tmp_path / name, LOVEDA).tolist() == expected.tolist(), name
    # A 16-bit mask whose values go beyond 255, read with an index list.
    (tmp_path / "classes.csv").write_text("value,name\n1000,field\n2000,wood\n")
    wide = ClassSchema.from_file(tmp_path / "classes.csv")
    Image.fromarray(np.array([[1000, 2000]], np.uint16)).save(tmp_path / "wide.png")
    assert read_mask(tmp_path / "wide.png", wide).tolist() == [[0, 1]]


def test_a_palette_png_gives_colours_to_an_rgb_schema(tmp_path: Path) -> None:
    classes = np.array([[0, 5, 6]], np.uint8)
    Image.fromarray(class_to_rgb(classes, DEEPGLOBE)).convert("P", palette=Image.Palette.ADAPTIVE,
                                                                colors=4).save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png", DEEPGLOBE).tolist() == classes.tolist()


def test_jpeg_masks_decode_only_with_a_0_255_palette(tmp_path: Path) -> None:
    classes = np.zeros((64, 64), np.uint8)
    classes[:, 32:] = 3
    Image.fromarray(class_to_rgb(classes, POTSDAM)).save(tmp_path / "a_mask.jpg", quality=75)
    decoded = read_mask(tmp_path / "a_mask.jpg", POTSDAM)
    assert (decoded[:, :28] == 0).all() and (decoded[:, 36:] == 3).all()
    Image.fromarray(encode_mask(classes, LOVEDA)).save(tmp_path / "b_mask.jpg")
    with pytest.raises(ValueError, match=r"b_mask.jpg: a JPEG mask. JPEG is lossy.* Save masks as PNG"):
        read_mask(tmp_path / "b_mask.jpg", LOVEDA)


def test_encode_and_decode_round_trip_in_each_coding() -> None:
    classes = np.array([[0, 1, IGNORE_INDEX], [4, 5, 6]], np.uint8)
    for schema in (LOVEDA, POTSDAM, DEEPGLOBE):
        classes_here = np.minimum(classes, schema.num_classes - 1) * (classes != IGNORE_INDEX) + (
            classes == IGNORE_INDEX) * IGNORE_INDEX
        stored = encode_mask(classes_here.astype(np.uint8), schema)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OffPaletteWarning)  # DeepGlobe's unlabelled grey
            back = decode_mask(stored, schema, on_invalid="ignore")
        assert back.tolist() == classes_here.tolist(), schema.name
    assert encode_mask(classes, LOVEDA).tolist() == [[1, 2, 0], [5, 6, 7]]


def test_custom_schema_files(tmp_path: Path) -> None:
    (tmp_path / "class_dict.csv").write_text("name,r,g,b\nroad,128,64,128\nsky,70,130,180\n")
    (tmp_path / "index.csv").write_text("value,name,r,g,b\n10,crop,255,255,0\n20,wood,0,128,0\n")
    (tmp_path / "plain.csv").write_text("value,name\n0,a\n1,b\n")
    (tmp_path / "s.toml").write_text('name = "Mine"\nmasks = ["index"]\nignore_values = [255]\n'
                                     'unknown = "other"\n[[classes]]\nname = "crop"\nvalue = 1\n'
                                     'color = [1, 2, 3]\n[[classes]]\nname = "other"\nvalue = 2\n'
                                     'color = [4, 5, 6]\n')
    palette = resolve_schema(tmp_path / "class_dict.csv")
    assert palette.rgb_masks and palette.values is None and palette.names == ("road", "sky")
    index = resolve_schema(str(tmp_path / "index.csv"))
    assert not index.rgb_masks and index.values == (10, 20) and index.colors[1] == (0, 128, 0)
    plain = ClassSchema.from_file(tmp_path / "plain.csv")
    assert plain.values == (0, 1) and len(set(plain.colors)) == 2  # display colours filled in
    mine = ClassSchema.from_file(tmp_path / "s.toml")
    assert mine.name == "Mine" and mine.unknown_index == 1 and mine.ignore_values == (255,)
    assert index_to_class(np.array([[255, 2]], np.uint16), mine).tolist() == [[IGNORE_INDEX, 1]]


def test_resolve_schema_refuses_what_is_neither_preset_nor_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a schema preset"):
        resolve_schema("potsdamm")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ValueError, match=r"a schema file is .toml or .csv"):
        resolve_schema(tmp_path / "s.json")


def test_tables_for_the_mask_decoding_notebook() -> None:
    table = schema_table(POTSDAM)
    assert list(table.index) == [*POTSDAM.names, "no data", "no data"]
    assert table.loc["clutter", "mask colour"] == (255, 0, 0) and table.loc["clutter", "index value"] == 6
    stored = np.array([[0, 1, 1, 9]], np.uint8)
    values = value_table(stored, LOVEDA)
    classes = values.set_index("value")["class"]
    assert list(classes.index) == [1, 0, 9]  # most frequent first
    assert classes[1] == "background" and classes[0] == "no data (ignored)" and pd.isna(classes[9])
    painted = with_off_palette_pixels(np.ones((4, 4), np.uint8), LOVEDA, size=2)
    assert painted[0, 0] not in (*LOVEDA.values, *LOVEDA.ignore_values) and painted[3, 3] == 1
    painted_rgb = with_off_palette_pixels(class_to_rgb(np.zeros((4, 4), np.uint8), POTSDAM), POTSDAM)
    with pytest.raises(InvalidMaskError, match=r"9 pixel\(s\) of 16"):
        decode_mask(painted_rgb, POTSDAM, on_invalid="raise")
