import warnings
from pathlib import Path

import numpy as np

from lc_utils.classes import DEEPGLOBE
from lc_utils.datasets import read_pair
from lc_utils.layouts import find_pairs
from lc_utils.run_spec import REAL_IMAGERY_RECIPE, SAMPLE_RECIPE, fast_recipe
from lc_utils.synthetic import (
    CLASS_SHARES,
    ensure_sample_dataset,
    generate_pair,
    is_generated_sample,
    make_sample_dataset,
)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = _file_bytes(make_sample_dataset(tmp_path / "a", n_images=3, size=64, seed=5))
    b = _file_bytes(make_sample_dataset(tmp_path / "b", n_images=3, size=64, seed=5))
    c = _file_bytes(make_sample_dataset(tmp_path / "c", n_images=3, size=64, seed=6))
    assert a == b
    assert a["train/0000_sat.jpg"] != c["train/0000_sat.jpg"]
    assert set(a) == {"class_dict.csv", "metadata.csv", "sample.json"} | {
        f"train/{i:04d}_{kind}" for i in range(3) for kind in ("sat.jpg", "mask.png")}


def test_a_generated_sample_is_recognised(tmp_path: Path, real_tiles: Path) -> None:
    sample = make_sample_dataset(tmp_path / "s", n_images=1, size=64)
    assert is_generated_sample(sample) and not is_generated_sample(real_tiles)
    assert fast_recipe(sample) == SAMPLE_RECIPE and fast_recipe(real_tiles) == REAL_IMAGERY_RECIPE


def test_an_image_does_not_depend_on_how_many_are_made() -> None:
    image, labels = generate_pair(seed=0, index=2, size=64)
    again, labels_again = generate_pair(seed=0, index=2, size=64)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(labels, labels_again)


def test_class_shares_are_unbalanced_like_deepglobe() -> None:
    counts = np.zeros(7)
    present = np.zeros(7)
    for index in range(24):
        _, labels = generate_pair(seed=0, index=index, size=128)
        per_image = np.bincount(labels.ravel(), minlength=7)
        counts += per_image
        present += per_image > 0
    shares = counts / counts.sum()
    assert shares.argmax() == DEEPGLOBE.index("agriculture")
    assert shares[DEEPGLOBE.index("agriculture")] > 0.4
    assert shares[DEEPGLOBE.index("water")] < 0.08
    assert shares[DEEPGLOBE.unknown_index] == shares.min()
    np.testing.assert_allclose(shares, CLASS_SHARES, atol=0.06)
    # Every class shows up somewhere, and images differ in what they hold.
    assert (present > 0).all() and present.min() < 24


def test_masks_need_the_threshold_and_decode_cleanly(sample_root: Path) -> None:
    image_path, mask_path = find_pairs(sample_root)[0]
    from PIL import Image

    raw = np.asarray(Image.open(mask_path))
    assert ((raw > 0) & (raw < 255)).any(), "edge pixels should be off 0/255"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, class_map = read_pair(image_path, mask_path)
    assert image.shape == (96, 96, 3) and class_map.max() < 7


def test_classes_differ_in_colour_but_overlap(tmp_path: Path) -> None:
    """Class colour means differ, yet their spreads overlap: colour alone is not enough."""
    pixels = {k: [] for k in range(7)}
    for index in range(6):
        image, labels = generate_pair(seed=1, index=index, size=128)
        for k in range(7):
            pixels[k].append(image[labels == k].astype(float))
    means = {k: np.concatenate(v).mean(0) for k, v in pixels.items() if sum(map(len, v))}
    stds = {k: np.concatenate(v).std(0) for k, v in pixels.items() if sum(map(len, v))}
    forest, water = DEEPGLOBE.index("forest"), DEEPGLOBE.index("water")
    rangeland, barren = DEEPGLOBE.index("rangeland"), DEEPGLOBE.index("barren")
    assert means[forest].mean() < means[barren].mean()
    assert np.linalg.norm(means[rangeland] - means[barren]) < 2 * (
        np.linalg.norm(stds[rangeland]) + np.linalg.norm(stds[barren]))
    assert water in means


def test_ensure_sample_dataset_regenerates_only_on_change(tmp_path: Path) -> None:
    root = ensure_sample_dataset(tmp_path / "s", n_images=2, size=48)
    stamp = (root / "train" / "0000_sat.jpg").stat().st_mtime_ns
    ensure_sample_dataset(root, n_images=2, size=48)
    assert (root / "train" / "0000_sat.jpg").stat().st_mtime_ns == stamp
    ensure_sample_dataset(root, n_images=3, size=48)
    assert len(find_pairs(root)) == 3
    ensure_sample_dataset(root, n_images=1, size=48)
    assert len(find_pairs(root)) == 1
