"""Image pairs that carry their ids (files.ImagePair, files.as_pairs) from where they were found."""

import copy
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from lc_utils.datasets import SegmentationDataset, split_items, split_pairs
from lc_utils.files import ImagePair, as_pairs, image_shapes
from lc_utils.layouts import find_pairs, images_only_copy, scan_dataset, set_masks_aside
from lc_utils.masks import class_to_rgb
from lc_utils.point_files import ensure_annotations


def test_find_pairs_carry_each_samples_own_id(sample_root: Path) -> None:
    samples = {s.image: s for s in scan_dataset(sample_root)}
    pairs = find_pairs(sample_root)
    assert pairs and all(isinstance(pair, ImagePair) for pair in pairs)
    for pair in pairs:
        sample = samples[pair.image]
        assert (pair.image_id, pair.image, pair.mask) == (sample.image_id, sample.image, sample.mask)


def test_the_id_is_carried_not_rebuilt_from_the_path(tmp_path: Path) -> None:
    """A metadata.csv's image_id column names the image, whatever its file is called."""
    (tmp_path / "train").mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "train" / "scene_sat.jpg")
    Image.fromarray(class_to_rgb(np.ones((8, 8), np.uint8))).save(tmp_path / "train" / "scene_mask.png")
    (tmp_path / "metadata.csv").write_text("image_id,split,sat_image_path,mask_path\n"
                                           "a17,train,train/scene_sat.jpg,train/scene_mask.png\n")
    [pair] = find_pairs(tmp_path)
    assert pair.image_id == "a17" and ImagePair(*pair).image_id == "scene"
    assert image_shapes([pair]) == {"a17": (8, 8)}
    assert SegmentationDataset([pair]).image_ids == ["a17"]


def test_a_pair_is_the_plain_tuple(sample_root: Path) -> None:
    pairs = find_pairs(sample_root)
    image, mask = pairs[0]
    assert (image, mask) == (pairs[0].image, pairs[0].mask) and len(pairs[0]) == 2
    plain = [(p.image, p.mask) for p in pairs]
    assert pairs == plain and [tuple(p) for p in pairs] == plain
    assert hash(pairs[0]) == hash(plain[0]) and plain[0] in set(pairs)
    assert sorted(reversed(pairs)) == sorted(plain) == pairs
    assert ImagePair(image, mask, "other") == pairs[0]  # the id takes no part in equality


def test_a_pair_pickles_and_copies_with_its_id() -> None:
    pair = ImagePair("train/scene_sat.jpg", "train/scene_mask.png", "a17")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(pair, protocol))
        assert type(again) is ImagePair and again == pair and again.image_id == "a17"
    for again in (copy.copy(pair), copy.deepcopy(pair)):
        assert type(again) is ImagePair and again == pair and again.image_id == "a17"
    assert repr(pair) == "ImagePair('train/scene_sat.jpg', 'train/scene_mask.png', image_id='a17')"
    unlabelled = ImagePair("images/1_sat.jpg", None)
    assert unlabelled.mask is None and unlabelled.image_id == "1"
    assert pickle.loads(pickle.dumps(unlabelled)).image_id == "1"


def test_as_pairs_takes_plain_tuples_and_keeps_pairs() -> None:
    given = ImagePair("x/scene_sat.jpg", "x/scene_mask.png", "a17")
    made = as_pairs([("x/12_sat.jpg", "x/12_mask.png"), given, (Path("x/notes.png"), None)])
    assert made[1] is given
    assert [p.image_id for p in made] == ["12", "a17", "notes"]
    assert made[0] == (Path("x/12_sat.jpg"), Path("x/12_mask.png")) and made[2].mask is None
    assert as_pairs(p for p in made) == made


def test_the_split_keeps_the_pairs_and_is_unchanged(sample_root: Path) -> None:
    pairs = find_pairs(sample_root)
    split = split_pairs(pairs, seed=0)
    # the split the course has always made of the sample for seed 0
    assert {k: [p.image.name for p in v] for k, v in split.items()} == {
        "train": ["0002_sat.jpg", "0004_sat.jpg", "0003_sat.jpg", "0006_sat.jpg", "0005_sat.jpg",
                  "0000_sat.jpg"],
        "val": ["0001_sat.jpg"], "test": ["0007_sat.jpg"]}
    by_id = {id(p) for p in pairs}
    assert all(id(p) in by_id for part in split.values() for p in part)  # the same objects, ids kept
    assert split_pairs([tuple(p) for p in pairs], seed=0) == split
    parts = split_items(pairs, (0.8, 0.2), seed=0)
    assert [[p.image.name for p in part] for part in parts] == [
        ["0002_sat.jpg", "0004_sat.jpg", "0003_sat.jpg", "0006_sat.jpg", "0005_sat.jpg", "0000_sat.jpg"],
        ["0001_sat.jpg", "0007_sat.jpg"]]
    assert all(id(p) in by_id for part in parts for p in part)


def test_annotations_the_same_from_pairs_and_plain_tuples(sample_root: Path, tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)[:3]
    carried = ensure_annotations(tmp_path / "carried.csv", pairs, n_points=10, seed=2)
    plain = ensure_annotations(tmp_path / "plain.csv", [tuple(p) for p in pairs], n_points=10, seed=2)
    assert list(carried) == [p.image_id for p in pairs] == list(plain)
    for image_id, points in carried.items():
        np.testing.assert_array_equal(points.rows, plain[image_id].rows)
        np.testing.assert_array_equal(points.labels, plain[image_id].labels)


def test_images_only_copy_and_masks_set_aside_keep_the_ids(sample_root: Path, tmp_path: Path) -> None:
    pairs = images_only_copy(sample_root, tmp_path / "copy")
    assert pairs == find_pairs(sample_root) and all(isinstance(p, ImagePair) for p in pairs)
    folder, masks = set_masks_aside(sample_root, tmp_path / "aside")
    assert folder == tmp_path / "aside" and masks == {p.image_id: p.mask for p in pairs}
