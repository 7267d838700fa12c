import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from lc_utils.masks import (
    UNLABELLED_RGB,
    InvalidMaskError,
    OffPaletteWarning,
    class_to_rgb,
    read_mask,
    rgb_to_class,
)

CLASS_VALUES = st.sampled_from([*range(DEEPGLOBE.num_classes), IGNORE_INDEX])


def naive_decode(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE) -> np.ndarray:
    """The slow textbook decoding: threshold, then one np.all per class; -1 where nothing matched."""
    binary = np.where(mask >= 128, 255, 0)
    out = np.full(mask.shape[:2], -1)
    for index, color in enumerate(schema.colors):
        out[np.all(binary == color, axis=-1)] = index
    return out


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=CLASS_VALUES))
def test_round_trip_including_unlabelled(class_map: np.ndarray) -> None:
    rgb = class_to_rgb(class_map)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffPaletteWarning)
        decoded = rgb_to_class(rgb, on_invalid="ignore")
    np.testing.assert_array_equal(decoded, class_map)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 16), st.integers(1, 16)),
           elements=st.integers(0, DEEPGLOBE.num_classes - 1)),
    st.integers(0, 2**32 - 1),
)
def test_threshold_absorbs_noise_that_stays_on_its_side_of_128(class_map, seed) -> None:
    rgb = class_to_rgb(class_map).astype(int)
    noise = np.random.default_rng(seed).integers(0, 128, rgb.shape)
    noisy = np.where(rgb == 255, rgb - noise, rgb + noise).astype(np.uint8)
    assert noisy.min() >= 0 and (noisy[rgb == 255] >= 128).all() and (noisy[rgb == 0] <= 127).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(rgb_to_class(noisy), class_map)


def test_threshold_boundary_is_128() -> None:
    mask = np.array([[[127, 128, 128], [128, 128, 0], [128, 127, 127]]], dtype=np.uint8)
    with pytest.warns(OffPaletteWarning):
        decoded = rgb_to_class(mask, on_invalid="ignore")
    # (0,255,255) urban, (255,255,0) agriculture, (255,0,0) off-palette.
    assert decoded.tolist() == [[0, 1, IGNORE_INDEX]]


def test_unlabelled_colour_is_not_a_class() -> None:
    assert naive_decode(np.array([[UNLABELLED_RGB]], dtype=np.uint8))[0, 0] == -1


def _mask_with_red(n_red: int = 7) -> np.ndarray:
    mask = class_to_rgb(np.full((10, 10), 1, dtype=np.uint8))
    mask.reshape(-1, 3)[:n_red] = (250, 3, 0)
    return mask


def test_policy_raise_reports_count_and_colours() -> None:
    with pytest.raises(InvalidMaskError, match=r"tile\.png: 7 pixel\(s\).*\(255, 0, 0\) x7"):
        rgb_to_class(_mask_with_red(), on_invalid="raise", source="tile.png")


def test_policy_unknown_maps_and_warns_once() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = rgb_to_class(_mask_with_red(), on_invalid="unknown")
    assert len(caught) == 1 and "7 pixel(s)" in str(caught[0].message)
    assert (decoded.ravel()[:7] == DEEPGLOBE.unknown_index).all()
    assert (decoded.ravel()[7:] == 1).all()


def test_policy_ignore_gives_255() -> None:
    with pytest.warns(OffPaletteWarning, match="ignored"):
        decoded = rgb_to_class(_mask_with_red(), on_invalid="ignore")
    assert (decoded.ravel()[:7] == IGNORE_INDEX).all()


def test_policy_unknown_without_an_unknown_class_ignores_with_a_warning() -> None:
    schema = ClassSchema(("a", "b"), ((0, 0, 0), (255, 255, 255)))
    mask = np.array([[[255, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    with pytest.warns(OffPaletteWarning, match="ignored, as schema 'custom' has no unknown class"):
        decoded = rgb_to_class(mask, schema, on_invalid="unknown")
    assert decoded.tolist() == [[IGNORE_INDEX, 1]]


def test_bad_policy_name() -> None:
    with pytest.raises(ValueError, match="on_invalid"):
        rgb_to_class(_mask_with_red(), on_invalid="drop")  # type: ignore[arg-type]


def test_non_binary_palette_is_matched_exactly() -> None:
    schema = ClassSchema(("road", "sky"), ((128, 64, 128), (70, 130, 180)))
    mask = np.array([[[128, 64, 128], [70, 130, 180], [128, 64, 129]]], dtype=np.uint8)
    with pytest.warns(OffPaletteWarning):
        decoded = rgb_to_class(mask, schema, on_invalid="ignore")
    assert decoded.tolist() == [[0, 1, IGNORE_INDEX]]
    with pytest.raises(InvalidMaskError, match=r"\(128, 64, 129\) x1"):
        rgb_to_class(mask, schema, on_invalid="raise")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4), np.uint8), "grayscale"),
        (np.zeros((4, 4, 3), np.uint16), "uint16"),
        (np.zeros((4, 4, 3), np.float32), "float32"),
        (np.zeros((4, 4, 2), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((4, 4, 4), np.uint8), "transparent"),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rgb_to_class(array, source="m.png")


def test_opaque_rgba_is_accepted() -> None:
    rgb = class_to_rgb(np.array([[0, 4]], dtype=np.uint8))
    rgba = np.concatenate([rgb, np.full((1, 2, 1), 255, np.uint8)], axis=-1)
    assert rgb_to_class(rgba).tolist() == [[0, 4]]


def test_class_to_rgb_refuses_values_outside_the_schema() -> None:
    with pytest.raises(ValueError, match=r"\[7\]"):
        class_to_rgb(np.array([[0, 7]], dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        class_to_rgb(np.zeros((2, 2), np.float32))


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_read_mask_files(tmp_path: Path) -> None:
    class_map = np.arange(12, dtype=np.uint8).reshape(3, 4) % 7
    rgb = class_to_rgb(class_map)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "a_mask.png", rgb)), class_map)
    palette_image = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette_image.save(tmp_path / "p_mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p_mask.png"), class_map)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Image.fromarray(np.zeros((4, 4), np.uint8)).save(p),
         "a single-channel mask .* 'DeepGlobe' decodes RGB-coded masks only"),
        (lambda p: Image.fromarray(np.zeros((4, 4), np.uint16)).save(p), "a single-channel mask"),
        (lambda p: Image.fromarray(np.zeros((4, 4), np.float32)).save(p.with_suffix(".tif")),
         "mode 'F'; expected 8-bit RGB or a single channel of integers"),
        (lambda p: Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(p), "transparent"),
        (lambda p: p.write_bytes(b"not a png at all"), "cannot read mask"),
    ],
)
def test_bad_mask_files_name_the_file(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad_mask.png"
    make(path)
    path = path if path.exists() else path.with_suffix(".tif")
    with pytest.raises(ValueError, match=message) as error:
        read_mask(path)
    assert path.name in str(error.value)


def test_missing_mask_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gone_mask.png"):
        read_mask(tmp_path / "gone_mask.png")


def test_real_tile_with_stray_red_pixels(real_tiles: Path) -> None:
    path = real_tiles / "0177_mask.png"
    with pytest.raises(InvalidMaskError, match=r"0177_mask.png: 7 pixel\(s\).*\(255, 0, 0\) x7"):
        read_mask(path, on_invalid="raise")
    with pytest.warns(OffPaletteWarning):
        ignored = read_mask(path, on_invalid="ignore")
    assert (ignored == IGNORE_INDEX).sum() == 7
    naive = naive_decode(np.asarray(Image.open(path)))
    np.testing.assert_array_equal(ignored[naive >= 0], naive[naive >= 0])


def test_real_full_masks_agree_with_naive_decoding(real_full: Path) -> None:
    for path in sorted(real_full.glob("*_mask.png"))[:2]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            decoded = read_mask(path)
        np.testing.assert_array_equal(decoded, naive_decode(np.asarray(Image.open(path))))


def test_exact_matching_misses_what_the_threshold_decodes(sample_root: Path) -> None:
    from lc_utils.layouts import find_pairs
    from lc_utils.mask_tables import off_palette_pixels

    raw = np.asarray(Image.open(find_pairs(sample_root)[0][1]))
    assert off_palette_pixels(raw, threshold=False) > 0
    assert off_palette_pixels(raw) == 0
