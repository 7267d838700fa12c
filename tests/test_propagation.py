"""Superpixel propagation and pseudo-labels: the annotator's rules, the cache, and the label
quality on real tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lc_utils import propagation
from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX
from lc_utils.files import read_rgb
from lc_utils.layouts import find_pairs
from lc_utils.masks import read_mask
from lc_utils.propagation import (
    LabelMapDataset,
    Propagation,
    ensure_propagated,
    label_quality,
    majority_labels,
    propagate,
    pseudo_label_thresholds,
    pseudo_labels,
    spread_points,
)
from lc_utils.sparse import PointAnnotation, annotatable, image_seed, sample_points

UNKNOWN = DEEPGLOBE.unknown_index


def _halves() -> np.ndarray:
    """Segments of an 8 x 8 image: 1 on the left half, 2 on the right."""
    segments = np.ones((8, 8), dtype=np.int32)
    segments[:, 4:] = 2
    return segments


def test_a_pure_segment_takes_its_points_class() -> None:
    points = PointAnnotation([1, 6], [1, 2], [3, 3])
    label_map = spread_points(points, _halves())
    assert (label_map[:, :4] == 3).all()
    assert (label_map[:, 4:] == IGNORE_INDEX).all()


def test_a_mixed_segment_is_left_to_its_points() -> None:
    points = PointAnnotation([1, 6, 2], [1, 2, 6], [3, 4, 1])
    label_map = spread_points(points, _halves())
    left = label_map[:, :4].copy()
    assert left[1, 1] == 3 and left[6, 2] == 4
    left[1, 1] = left[6, 2] = IGNORE_INDEX
    assert (left == IGNORE_INDEX).all()
    assert (label_map[:, 4:] == 1).all()


def test_a_mixed_segment_split_between_its_nearest_points() -> None:
    points = PointAnnotation([0, 7], [0, 0], [3, 4])
    label_map = spread_points(points, _halves(), mixed="nearest")
    assert (label_map[:3, :4] == 3).all() and (label_map[5:, :4] == 4).all()
    assert (label_map[:, 4:] == IGNORE_INDEX).all()


def test_unknown_points_and_segment_zero_never_spread() -> None:
    segments = _halves()
    segments[:, 6:] = 0  # pixels outside every superpixel (no data)
    points = PointAnnotation([1, 2, 3], [1, 5, 7], [UNKNOWN, 2, 2])
    label_map = spread_points(points, segments, unknown_index=UNKNOWN)
    assert label_map[1, 1] == UNKNOWN and (label_map[:, :4] != IGNORE_INDEX).sum() == 1
    assert (label_map[:, 4:6] == 2).all()
    outside = label_map[:, 6:].copy()
    assert outside[3, 1] == 2
    outside[3, 1] = IGNORE_INDEX
    assert (outside == IGNORE_INDEX).all()


def test_an_unknown_point_makes_its_segment_doubtful_and_stays_unspread_when_split() -> None:
    points = PointAnnotation([0, 7], [0, 0], [3, UNKNOWN])
    assert (spread_points(points, _halves(), unknown_index=UNKNOWN)[1:7, :4] == IGNORE_INDEX).all()
    split = spread_points(points, _halves(), mixed="nearest", unknown_index=UNKNOWN)
    assert (split[:3, :4] == 3).all() and (split[5:7, :4] == IGNORE_INDEX).all()


def test_segments_over_the_size_cap_do_not_spread() -> None:
    segments = _halves()
    segments[:, 6:] = 3  # segment 2 has 16 pixels, 3 has 16, 1 has 32
    points = PointAnnotation([0, 0], [0, 4], [1, 2])
    label_map = spread_points(points, segments, max_area=20)
    assert (label_map[:, 4:6] == 2).all()
    assert (label_map[:, :4] == 1).sum() == 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n_points=st.integers(0, 60), mixed=st.sampled_from(["skip", "nearest"]))
def test_every_original_point_keeps_its_label(seed: int, n_points: int, mixed: str) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    flat = rng.choice(24 * 32, n_points, replace=False)
    rows, cols = np.divmod(flat, 32)
    points = PointAnnotation(rows, cols, rng.integers(0, DEEPGLOBE.num_classes, n_points))
    label_map = propagate(image, points, Propagation(superpixel_area=40, mixed=mixed,
                                                     nodata_rgb=tuple(image[0, 0].tolist())))
    assert np.array_equal(label_map[points.rows, points.cols], points.labels)
    assert set(np.unique(label_map)) <= set(range(DEEPGLOBE.num_classes)) | {IGNORE_INDEX}


def test_nodata_pixels_of_the_image_are_never_labelled_by_spreading() -> None:
    image = np.full((32, 32, 3), 120, dtype=np.uint8)
    image[:, 20:] = 0  # a black no-data border
    points = PointAnnotation([5, 10], [5, 21], [1, 1])
    label_map = propagate(image, points, Propagation(superpixel_area=64, nodata_rgb=(0, 0, 0)))
    border = label_map[:, 20:].copy()
    assert border[10, 1] == 1
    border[10, 1] = IGNORE_INDEX
    assert (border == IGNORE_INDEX).all()
    assert (label_map[:, :20] == 1).sum() > 10


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="superpixel_area"):
        Propagation(superpixel_area=1)
    with pytest.raises(ValueError, match="mixed"):
        Propagation(mixed="vote")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        propagate(np.zeros((8, 8, 3), np.uint8), PointAnnotation([9], [0], [1]))


def test_every_superpixel_takes_its_majority_class_and_unlabelled_pixels_do_not_vote() -> None:
    truth = np.full((8, 8), 3, np.uint8)
    truth[:, :2] = 5  # the left half: 5 x 16 pixels against 3 x 16 ...
    truth[:3, 2:4] = IGNORE_INDEX  # ... once 6 of the 3s are unknown
    truth[:, 4:] = IGNORE_INDEX
    truth[0, 7] = 1  # the right half: one labelled pixel
    labels = majority_labels(_halves(), truth)
    assert (labels[:, :4] == 5).all() and (labels[:, 4:] == 1).all()
    nothing = np.full((8, 8), IGNORE_INDEX, np.uint8)
    assert (majority_labels(_halves(), nothing) == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="differ in size"):
        majority_labels(_halves(), truth[:4])


def test_label_quality_counts_precision_and_coverage() -> None:
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, UNKNOWN]], dtype=np.uint8)
    given = np.array([[0, 1, 1, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 1]], np.uint8)
    table = label_quality([(given, truth)])
    assert table.loc["urban", "precision"] == 1.0 and table.loc["urban", "coverage"] == 0.5
    assert table.loc["agriculture", "labelled"] == 2  # the label on the unknown pixel is not scored
    assert table.loc["agriculture", "precision"] == 0.5
    assert table.loc["all", "correct"] == 2 and table.loc["all", "true_pixels"] == 7
    assert np.isnan(table.loc["water", "precision"])


def _real_label_quality(root: Path, points_per_mp: float, n_images: int = 8):
    pairs = find_pairs(root)[:n_images]
    maps = []
    for image_path, mask_path in pairs:
        truth = read_mask(mask_path, on_invalid="unknown")
        points = sample_points(annotatable(truth), points_per_mp=points_per_mp,
                               seed=image_seed(0, image_path.name))
        maps.append((propagate(read_rgb(image_path), points), truth))
    return label_quality(maps).loc["all"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_propagation_multiplies_real_labels_at_high_precision(real_tiles: Path) -> None:
    sparse = _real_label_quality(real_tiles, 100)
    assert sparse["coverage"] > 0.05 and sparse["precision"] > 0.9
    denser = _real_label_quality(real_tiles, 1000)
    assert denser["coverage"] > 0.45 and denser["precision"] > 0.92
    points_share = 1000 / 1e6
    assert denser["coverage"] > 400 * points_share


def _write_pair(folder: Path, name: str, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    image = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    image_path = folder / f"{name}_sat.png"
    Image.fromarray(image).save(image_path)
    return image_path, folder / f"{name}_mask.png"


def test_the_cache_is_reused_and_remade_when_points_or_settings_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [_write_pair(tmp_path, "a", 0), _write_pair(tmp_path, "b", 1)]
    points = {"a": PointAnnotation([3, 20], [3, 20], [1, 3]), "b": PointAnnotation([10], [10], [4])}
    calls = []
    real_propagate = propagation.propagate
    monkeypatch.setattr(propagation, "propagate", lambda *a, **k: calls.append(1) or real_propagate(*a, **k))
    cache = tmp_path / "cache"
    first = ensure_propagated(pairs, points, cache)
    assert len(calls) == 2
    assert ensure_propagated(pairs, points, cache) == first and len(calls) == 2
    moved = dict(points, a=PointAnnotation([3, 20], [3, 21], [1, 3]))
    second = ensure_propagated(pairs, moved, cache)
    assert len(calls) == 3 and second["b"] == first["b"] and second["a"] != first["a"]
    third = ensure_propagated(pairs, points, cache, Propagation(superpixel_area=16))
    assert len(calls) == 5 and set(third.values()).isdisjoint(first.values())
    dataset = LabelMapDataset(pairs, second)
    _, labels = dataset.read_item(0)
    assert labels[20, 21] == 3 and labels[20, 20] == IGNORE_INDEX


def test_a_label_map_is_saved_whole_or_not_at_all(tmp_path: Path) -> None:
    labels = np.full((6, 9), IGNORE_INDEX, np.uint8)
    labels[2, 3] = 4
    path = propagation.save_label_map(labels, tmp_path / "maps" / "a.png")
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.mode == "L"
        np.testing.assert_array_equal(np.asarray(saved), labels)
    with pytest.raises(TypeError):  # a failed write (here: no image in the array) ...
        propagation.save_label_map(np.zeros((2, 2, 2, 2), np.uint8), path)
    with Image.open(path) as kept:  # ... leaves the last map as it was, and no temporary file
        np.testing.assert_array_equal(np.asarray(kept), labels)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]


def test_a_label_map_file_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    pairs = [_write_pair(tmp_path, "a", 0)]
    small = propagation.save_label_map(np.zeros((8, 8), np.uint8), tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png: label map is 8x8 but its image is 32x32"):
        LabelMapDataset(pairs, {"a": small}).read_item(0)
    wrong = propagation.save_label_map(np.full((32, 32), 9, np.uint8), tmp_path / "wrong.png")
    with pytest.raises(ValueError, match="wrong.png: label 9 is not a class"):
        LabelMapDataset(pairs, {"a": wrong}).read_item(0)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: a label map must be a single-channel"):
        LabelMapDataset(pairs, {"a": tmp_path / "rgb.png"}).read_item(0)
    with pytest.raises(ValueError, match="no label map"):
        LabelMapDataset(pairs, {})


def _predictions(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return probs.argmax(axis=0), probs.max(axis=0)


def test_pseudo_labels_never_overwrite_points_nor_name_the_unknown_class() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (DEEPGLOBE.num_classes, 16, 16))
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    predicted, confidence = _predictions(probs)
    base = np.full((16, 16), IGNORE_INDEX, np.uint8)
    base[2, 3], base[9, 9] = 5, UNKNOWN
    labels = pseudo_labels(predicted, confidence, base, 0.0)
    assert labels[2, 3] == 5 and labels[9, 9] == UNKNOWN
    others = np.ones((16, 16), bool)
    others[2, 3] = others[9, 9] = False
    known = others & (predicted != UNKNOWN)
    assert np.array_equal(labels[known], predicted[known])
    assert (labels[others & (predicted == UNKNOWN)] == IGNORE_INDEX).all()
    confident = pseudo_labels(predicted, confidence, base, 0.99)
    assert 0 < (confident[others] != IGNORE_INDEX).sum() < (labels[others] != IGNORE_INDEX).sum()
    assert (confidence[(confident != IGNORE_INDEX) & others] >= 0.99).all()


def test_the_class_share_keeps_a_rare_unconfident_class() -> None:
    probs = np.zeros((3, 10, 10))
    probs[0], probs[1] = 0.98, 0.02
    probs[:, :, :2] = [[[0.2]], [[0.7]], [[0.1]]]  # class 1: 20 pixels, never confident
    probs[1, :, 1] = 0.75
    probs[0, :, 1] = 0.15
    predicted, confidence = _predictions(probs)
    alone = pseudo_label_thresholds([(predicted, confidence)], 3, threshold=0.9, class_share=None)
    balanced = pseudo_label_thresholds([(predicted, confidence)], 3, threshold=0.9, class_share=0.5)
    base = np.full((10, 10), IGNORE_INDEX, np.uint8)
    assert (pseudo_labels(predicted, confidence, base, alone, None) == 1).sum() == 0
    kept = pseudo_labels(predicted, confidence, base, balanced, None) == 1
    assert kept.sum() == 10 and kept[:, 1].all()  # the more confident half
    assert balanced[0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="class_share"):
        pseudo_label_thresholds([(predicted, confidence)], 3, class_share=0)


def test_a_label_map_can_be_an_array(tmp_path: Path) -> None:
    pairs = [_write_pair(tmp_path, "a", 0)]
    labels = np.full((32, 32), IGNORE_INDEX, np.uint8)
    labels[4, 5] = 2
    assert LabelMapDataset(pairs, {"a": labels}).read_item(0)[1][4, 5] == 2
    with pytest.raises(ValueError, match="label map of image 'a': label map is 8x8"):
        LabelMapDataset(pairs, {"a": labels[:8, :8]}).read_item(0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_quality_grid_on_real_tiles_grows_with_points_and_superpixels(real_tiles: Path) -> None:
    grid = propagation.quality_grid(find_pairs(real_tiles)[:4], [100, 1000], [300, 900]).set_index(
        ["points_per_mp", "superpixel_area"])
    assert grid.loc[(1000, 900), "coverage"] > grid.loc[(100, 900), "coverage"]
    assert grid.loc[(100, 900), "coverage"] > grid.loc[(100, 300), "coverage"]
    assert (grid["precision"] > 0.85).all() and (grid["times_more"] > 100).all()
    assert grid.loc[(100, 900), "points"] == pytest.approx(1e-4, rel=0.1)


def test_the_propagation_figure_shows_superpixels_points_and_errors() -> None:
    from lc_utils.viz_data import SUPERPIXEL_EDGE_RGB, plot_propagation

    image = np.full((32, 32, 3), 90, np.uint8)
    image[:, 16:] = 200
    segments = propagation.superpixels(image, 256)
    points = PointAnnotation([5, 20], [5, 20], [1, 3])
    label_map = spread_points(points, segments)
    truth = np.ones((32, 32), np.uint8)
    fig = plot_propagation(image, segments, points, label_map, truth)
    first = fig.axes[0].images[0].get_array()
    assert (np.asarray(first) == SUPERPIXEL_EDGE_RGB).all(axis=-1).any()
    assert "right" in fig.axes[3].get_title() and len(fig.axes) == 4
    assert "superpixels" not in plot_propagation(image, None, points, label_map).axes[0].get_title()
