from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lc_utils.classes import IGNORE_INDEX
from lc_utils.layouts import find_pairs
from lc_utils.masks import class_to_rgb
from lc_utils.point_files import (
    ensure_annotations,
    load_annotations,
)
from lc_utils.sparse import (
    PointAnnotation,
    SparseLandCoverDataset,
    hold_out_areas,
    image_seed,
    labelled_fraction,
    pixels_labelled_by_redrawing,
    point_counts,
    points_for_density,
    points_to_label_map,
    sample_annotations,
    sample_points,
)
from lc_utils.transforms import denormalize_image, make_transforms


def _class_map(seed: int = 0, size: int = 64) -> np.ndarray:
    """Mostly class 1, with a small patch of class 4 (rare) and a band of class 3."""
    class_map = np.ones((size, size), np.uint8)
    class_map[: size // 4] = 3
    class_map[40:43, 40:43] = 4
    return class_map


@pytest.mark.parametrize("strategy", ["uniform", "stratified", "grid"])
def test_points_are_distinct_labelled_and_seeded(strategy: str) -> None:
    class_map = _class_map()
    a = sample_points(class_map, n_points=50, strategy=strategy, seed=7)
    b = sample_points(class_map, n_points=50, strategy=strategy, seed=7)
    c = sample_points(class_map, n_points=50, strategy=strategy, seed=8)
    assert a == b and a != c
    assert len(set(zip(a.rows.tolist(), a.cols.tolist()))) == len(a)
    np.testing.assert_array_equal(a.labels, class_map[a.rows, a.cols])
    assert len(a) == 50 if strategy != "grid" else 40 <= len(a) <= 50


def test_stratified_gives_rare_classes_their_share() -> None:
    class_map = _class_map()
    uniform = sample_points(class_map, n_points=30, strategy="uniform", seed=0)
    stratified = sample_points(class_map, n_points=30, strategy="stratified", seed=0)
    # The 9-pixel class-4 patch is 0.2% of the image: uniform sampling almost never hits it.
    assert (uniform.labels == 4).sum() <= 1
    assert (stratified.labels == 4).sum() == 9  # its share (10) capped by its 9 pixels
    counts = np.bincount(stratified.labels, minlength=5)
    assert counts[1] + counts[3] == 21 and abs(int(counts[1]) - int(counts[3])) <= 1


def test_grid_points_cover_the_image_evenly() -> None:
    class_map = np.zeros((60, 90), np.uint8)
    grid = sample_points(class_map, n_points=54, strategy="grid", seed=0)
    assert len(grid) == 54
    # One point per 10x10 cell of a 6 x 9 lattice.
    cells = set(zip((grid.rows // 10).tolist(), (grid.cols // 10).tolist()))
    assert len(cells) == 54


def test_fraction_and_unlabelled_pixels() -> None:
    class_map = _class_map()
    class_map[:, :32] = IGNORE_INDEX
    points = sample_points(class_map, fraction=0.01, seed=0)
    assert len(points) == round(0.01 * 64 * 32)
    assert (points.cols >= 32).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"n_points": 3, "fraction": 0.1}, "exactly one"),
        ({"n_points": 3, "points_per_mp": 100}, "exactly one"),
        ({"points_per_mp": -5}, "must be positive"),
        ({"n_points": 0}, "at least 1"),
        ({"fraction": 0.0}, r"\(0, 1\]"),
        ({"n_points": 64 * 64 + 1}, "only 4096 labelled pixels"),
        ({"n_points": 3, "strategy": "random"}, "strategy"),
    ],
)
def test_bad_requests(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_points(_class_map(), **kwargs)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 1000),
       st.sampled_from(["uniform", "stratified", "grid"]))
def test_label_map_holds_exactly_the_points(height: int, width: int, seed: int, strategy: str) -> None:
    class_map = np.random.default_rng(seed).integers(0, 7, (height, width)).astype(np.uint8)
    n = max(1, height * width // 5)
    points = sample_points(class_map, n_points=n, strategy=strategy, seed=seed)
    label_map = points_to_label_map(points, (height, width))
    assert (label_map != IGNORE_INDEX).sum() == len(points)
    labelled = label_map != IGNORE_INDEX
    np.testing.assert_array_equal(label_map[labelled], class_map[labelled])


def test_points_outside_the_image_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the 4x4 image"):
        points_to_label_map(PointAnnotation([1, 4], [0, 0], [1, 1]), (4, 4))


def test_each_image_has_its_own_seed() -> None:
    class_map = _class_map()
    result = sample_annotations([("a", class_map), ("b", class_map)], n_points=20, seed=3)
    assert result["a"] != result["b"]
    assert result["a"] == sample_points(class_map, n_points=20, seed=image_seed(3, "a"))


def test_a_density_means_the_same_on_small_and_large_images() -> None:
    assert points_for_density(1500, (256, 256)) == 98
    assert points_for_density(1500, (2448, 2448)) == 8989
    assert points_for_density(0.01, (64, 64)) == 1  # never an image without a point
    small = sample_points(np.ones((256, 256), np.uint8), points_per_mp=1500, seed=0)
    large = sample_points(np.ones((2448, 2448), np.uint8), points_per_mp=1500, seed=0)
    assert len(small) / 256**2 == pytest.approx(len(large) / 2448**2, rel=0.01)


def test_redrawing_points_every_batch_labels_almost_everything() -> None:
    shares = pixels_labelled_by_redrawing((64, 64), n_points=41, n_draws=300, seed=0)
    assert shares[0] == pytest.approx(41 / 4096)
    assert shares[-1] > 0.95  # 1% per draw, yet almost every pixel seen after 300 draws
    assert np.all(np.diff(shares) >= 0)
    # It follows the expectation 1 - (1 - f) ** draws, and stops where asked.
    expected = 1 - (1 - 41 / 4096) ** np.arange(1, 301)
    assert np.abs(shares - expected).max() < 0.03
    early = pixels_labelled_by_redrawing((64, 64), n_points=41, n_draws=300, seed=0, until=0.5)
    assert early[-1] >= 0.5 > early[-2] and np.array_equal(early, shares[:len(early)])


def test_labelled_fraction() -> None:
    annotations = {"a": PointAnnotation([0, 1], [0, 1], [1, 1]), "b": PointAnnotation([0], [0], [2])}
    assert labelled_fraction(annotations, {"a": (10, 10), "b": (10, 10)}) == pytest.approx(3 / 200)


def _coordinate_dataset(tmp_path: Path, size: int = 40):
    """A PNG image whose red/green channels hold each pixel's row/column, with its mask."""
    rows, cols = np.mgrid[0:size, 0:size]
    image = np.stack([rows * 5, cols * 5, np.full_like(rows, 77)], axis=-1).astype(np.uint8)
    class_map = ((rows // 7 + cols // 5) % 7).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "0_sat.png")
    Image.fromarray(class_to_rgb(class_map)).save(tmp_path / "0_mask.png")
    return find_pairs(tmp_path), class_map


def _labelled_original_pixels(image: torch.Tensor, labels: torch.Tensor) -> dict[tuple[int, int], int]:
    """Undo the augmentation: read each labelled pixel's original position from its colour."""
    rgb = denormalize_image(image).astype(int)
    labelled = labels.numpy() != IGNORE_INDEX
    return {(int(r) // 5, int(c) // 5): int(k) for r, c, k in
            zip(rgb[labelled, 0], rgb[labelled, 1], labels.numpy()[labelled])}


def test_sparse_dataset_keeps_the_same_points_every_epoch(tmp_path: Path) -> None:
    pairs, class_map = _coordinate_dataset(tmp_path)
    annotations = ensure_annotations(tmp_path / "points.csv", pairs, n_points=30, seed=0)
    on_file = load_annotations(tmp_path / "points.csv")["0"]
    expected = {(int(r), int(c)): int(k) for r, c, k in zip(on_file.rows, on_file.cols, on_file.labels)}
    dataset = SparseLandCoverDataset(pairs, annotations, transform=make_transforms(40))
    seen_per_epoch = []
    for epoch in range(2):
        torch.manual_seed(epoch)
        image, labels = dataset[0]
        assert int((labels != IGNORE_INDEX).sum()) == len(on_file) == 30
        seen_per_epoch.append(_labelled_original_pixels(image, labels))
    assert seen_per_epoch[0] == seen_per_epoch[1] == expected
    assert all(class_map[r, c] == k for (r, c), k in expected.items())


def test_sparse_dataset_crops_keep_a_subset_of_the_points(tmp_path: Path) -> None:
    pairs, _ = _coordinate_dataset(tmp_path)
    annotations = ensure_annotations(tmp_path / "points.csv", pairs, n_points=60, seed=0)
    expected = {(int(r), int(c)): int(k) for r, c, k in
                zip(annotations["0"].rows, annotations["0"].cols, annotations["0"].labels)}
    dataset = SparseLandCoverDataset(pairs, annotations, transform=make_transforms(24))
    for seed in range(5):
        torch.manual_seed(seed)
        image, labels = dataset[0]
        seen = _labelled_original_pixels(image, labels)
        assert seen and seen.items() <= expected.items()


def test_sparse_dataset_refuses_missing_or_misfit_annotations(tmp_path: Path) -> None:
    pairs, _ = _coordinate_dataset(tmp_path)
    with pytest.raises(ValueError, match="have no annotation"):
        SparseLandCoverDataset(pairs, {})
    dataset = SparseLandCoverDataset(pairs, {"0": PointAnnotation([45], [3], [1])})
    with pytest.raises(ValueError, match="annotation of image '0'.*outside the 40x40"):
        dataset[0]


def test_unknown_class_gets_no_points_unless_asked(tmp_path: Path) -> None:
    """Unknown (no-data) is never scored, so by default no point is spent on it, in any strategy."""
    class_map = np.full((40, 40), 1, np.uint8)
    class_map[:20] = 6  # half the image is unknown
    class_map[30:, 30:] = 4
    image = np.zeros((40, 40, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "a_sat.jpg")
    Image.fromarray(class_to_rgb(class_map)).save(tmp_path / "a_mask.png")
    pairs = find_pairs(tmp_path)
    for strategy in ("uniform", "stratified", "grid"):
        skipped = ensure_annotations(tmp_path / f"{strategy}.csv", pairs, n_points=60, strategy=strategy)["a"]
        assert 6 not in skipped.labels and set(skipped.labels) == {1, 4}
        kept = ensure_annotations(tmp_path / f"{strategy}_all.csv", pairs, n_points=60, strategy=strategy,
                                  label_unknown=True)["a"]
        assert 6 in kept.labels
    with pytest.raises(ValueError, match="label_unknown: False there, True now"):
        ensure_annotations(tmp_path / "uniform.csv", pairs, n_points=60, label_unknown=True)


def test_point_counts() -> None:
    annotations = {"a": PointAnnotation(np.array([0, 1]), np.array([0, 1]), np.array([2, 2])),
                   "b": PointAnnotation(np.array([3]), np.array([3]), np.array([6]))}
    assert point_counts(annotations, 7).tolist() == [0, 0, 2, 0, 0, 0, 1]


def test_points_held_out_by_area_depend_on_the_seed_and_their_square_alone() -> None:
    rng = np.random.default_rng(0)
    shapes = {"a": (300, 400), "b": (256, 256)}
    annotations = {i: PointAnnotation(rng.integers(0, h, 400), rng.integers(0, w, 400),
                                      rng.integers(0, 6, 400), sources=["person"] * 400)
                   for i, (h, w) in shapes.items()}
    train, held = hold_out_areas(annotations, shapes, share=0.25, block=32, seed=1)
    for image_id, annotation in annotations.items():
        assert len(train[image_id]) + len(held[image_id]) == len(annotation)
        assert 0.1 < len(held[image_id]) / len(annotation) < 0.4
        squares = lambda a: set(zip((a.rows // 32).tolist(), (a.cols // 32).tolist()))  # noqa: E731
        assert not squares(train[image_id]) & squares(held[image_id])  # no square is on both sides
        assert set(held[image_id].sources) == {"person"}
    assert hold_out_areas(annotations, shapes, share=0.25, block=32, seed=1)[1]["a"] == held["a"]
    assert hold_out_areas(annotations, shapes, share=0.25, block=32, seed=2)[1]["a"] != held["a"]
    # a point clicked later, anywhere, moves no other point from one side to the other
    more = {**annotations, "a": PointAnnotation(np.append(annotations["a"].rows, 299),
                                                np.append(annotations["a"].cols, 399),
                                                np.append(annotations["a"].labels, 2))}
    later = hold_out_areas(more, shapes, share=0.25, block=32, seed=1)[1]["a"]
    assert later.subset(~((later.rows == 299) & (later.cols == 399))) == held["a"]
    with pytest.raises(ValueError, match="'c' has points but no size"):
        hold_out_areas({"c": annotations["a"]}, shapes)
    with pytest.raises(ValueError, match="outside the 256x256 image"):
        hold_out_areas({"b": annotations["a"]}, shapes)


def test_extending_points_keeps_the_provenance_either_side_records() -> None:
    first = PointAnnotation([1, 2], [1, 2], [0, 1])
    later = PointAnnotation([5], [6], [3], sources=["simulated click"], rounds=[2])
    both = first.extend(later)
    assert both == PointAnnotation([1, 2, 5], [1, 2, 6], [0, 1, 3])
    assert both.sources.tolist() == ["", "", "simulated click"] and both.rounds.tolist() == [0, 0, 2]
    plain = first.extend(first)
    assert plain.sources is None and plain.rounds is None and len(plain) == 4
