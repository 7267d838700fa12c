import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX
from lc_utils.datasets import DenseLandCoverDataset, read_pair, split_items
from lc_utils.layouts import find_pairs, find_unlabelled_images, load_schema, scan_dataset
from lc_utils.masks import class_to_rgb
from lc_utils.transforms import denormalize_image, make_transforms
from lc_utils.windows import WindowDataset, window_grid


def _write_pair(folder: Path, image_id: str, size: tuple[int, int] = (8, 8),
                mask_size: tuple[int, int] | None = None, with_mask: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(folder / f"{image_id}_sat.jpg")
    if with_mask:
        labels = np.ones(mask_size or size, np.uint8)
        Image.fromarray(class_to_rgb(labels)).save(folder / f"{image_id}_mask.png")


def test_flat_folder(tmp_path: Path) -> None:
    for image_id in ("20", "3", "100"):
        _write_pair(tmp_path, image_id)
    pairs = find_pairs(tmp_path)
    assert [p[0].name for p in pairs] == ["100_sat.jpg", "20_sat.jpg", "3_sat.jpg"]
    assert all(m.name == i.name.replace("_sat.jpg", "_mask.png") for i, m in pairs)


def test_split_subfolders_with_unlabelled_test_folder(tmp_path: Path) -> None:
    _write_pair(tmp_path / "train", "1")
    _write_pair(tmp_path / "train", "2")
    _write_pair(tmp_path / "val", "3")
    _write_pair(tmp_path / "test", "4", with_mask=False)
    assert [s.split for s in scan_dataset(tmp_path)] == ["test", "train", "train", "val"]
    assert len(find_pairs(tmp_path)) == 3
    assert [i.name for i, _ in find_pairs(tmp_path, split="val")] == ["3_sat.jpg"]
    assert [p.name for p in find_unlabelled_images(tmp_path)] == ["4_sat.jpg"]
    with pytest.raises(ValueError, match="splits: \\['train', 'val'\\]"):
        find_pairs(tmp_path, split="valid")


def test_kaggle_layout_from_metadata(sample_root: Path) -> None:
    samples = scan_dataset(sample_root)
    assert len(samples) == 8 and {s.split for s in samples} == {"train"}
    assert samples[0].image_id == "0000"
    pairs = find_pairs(sample_root, split="train")
    assert pairs[0][0] == sample_root / "train" / "0000_sat.jpg"
    assert load_schema(sample_root) == DEEPGLOBE


def test_kaggle_metadata_with_unlabelled_rows(tmp_path: Path) -> None:
    _write_pair(tmp_path / "train", "1")
    _write_pair(tmp_path / "valid", "2", with_mask=False)
    (tmp_path / "metadata.csv").write_text(
        "image_id,split,sat_image_path,mask_path\n"
        "1,train,train/1_sat.jpg,train/1_mask.png\n"
        "2,valid,valid/2_sat.jpg,\n")
    assert len(find_pairs(tmp_path)) == 1
    assert find_unlabelled_images(tmp_path, split="valid") == [tmp_path / "valid" / "2_sat.jpg"]


def test_metadata_naming_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text(
        "image_id,split,sat_image_path,mask_path\n9,train,train/9_sat.jpg,train/9_mask.png\n")
    with pytest.raises(FileNotFoundError, match=r"metadata.csv:2: image .*9_sat.jpg"):
        scan_dataset(tmp_path)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no images found .*<id>_sat.jpg .*img_dir/ \+ ann_dir/"):
        find_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        find_pairs(tmp_path / "nowhere")


def test_missing_mask_is_named(tmp_path: Path) -> None:
    _write_pair(tmp_path, "1")
    _write_pair(tmp_path, "2", with_mask=False)
    with pytest.raises(FileNotFoundError, match="2_sat.jpg"):
        find_pairs(tmp_path)


def test_mask_without_image_is_named(tmp_path: Path) -> None:
    _write_pair(tmp_path, "1")
    (tmp_path / "1_sat.jpg").rename(tmp_path / "1_photo.jpg")
    _write_pair(tmp_path, "2")
    with pytest.raises(ValueError, match="1_mask.png"):
        find_pairs(tmp_path)


def test_size_mismatch_names_the_file(tmp_path: Path) -> None:
    _write_pair(tmp_path, "1", size=(8, 8), mask_size=(8, 6))
    (image, mask), = find_pairs(tmp_path)
    with pytest.raises(ValueError, match="1_mask.png: mask is 6x8 but its image 1_sat.jpg is 8x8"):
        read_pair(image, mask)
    with pytest.raises(ValueError, match="1_mask.png"):
        DenseLandCoverDataset([(image, mask)])[0]


def test_truncated_jpeg_names_the_file(tmp_path: Path, sample_root: Path) -> None:
    image, mask = find_pairs(sample_root)[0]
    broken = tmp_path / "7_sat.jpg"
    broken.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    shutil.copy(mask, tmp_path / "7_mask.png")
    with pytest.raises(ValueError, match="7_sat.jpg: cannot read image"):
        DenseLandCoverDataset(find_pairs(tmp_path))[0]


def test_dense_dataset_items(sample_root: Path) -> None:
    dataset = DenseLandCoverDataset(find_pairs(sample_root), transform=make_transforms(64))
    image, labels = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert labels.shape == (64, 64) and labels.dtype == torch.int64
    assert labels.max() < DEEPGLOBE.num_classes
    assert abs(float(image.mean())) < 2.0
    assert dataset.image_ids[:2] == ["0000", "0001"]


def _checkerboard_sample(size: int = 24, cell: int = 3):
    """Image whose colour is its class colour, on a checkerboard of all seven classes."""
    y, x = np.mgrid[0:size, 0:size]
    labels = ((y // cell) * 3 + (x // cell) * 5 + (y // cell) * (x // cell)) % 7
    labels = labels.astype(np.uint8)
    image = class_to_rgb(labels)
    return labels, image


@pytest.mark.parametrize("seed", range(12))
def test_paired_transforms_keep_image_and_labels_aligned(seed: int) -> None:
    labels, image = _checkerboard_sample()
    transform = make_transforms(16, color_jitter=0.0)
    torch.manual_seed(seed)
    out_image, out_labels = transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                                      tv_tensors.Mask(torch.from_numpy(labels)))
    rgb = out_image.permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(class_to_rgb(out_labels.numpy()), rgb)


def test_transforms_really_move_pixels() -> None:
    labels, image = _checkerboard_sample()
    transform = make_transforms(16)
    outputs = set()
    for seed in range(12):
        torch.manual_seed(seed)
        _, out_labels = transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                                  tv_tensors.Mask(torch.from_numpy(labels)))
        outputs.add(out_labels.numpy().tobytes())
    assert len(outputs) == 12


def test_crop_larger_than_image_pads_labels_with_ignore() -> None:
    labels, image = _checkerboard_sample(size=10)
    out_image, out_labels = make_transforms(16, flips=False, rotate90=False)(
        tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
        tv_tensors.Mask(torch.from_numpy(labels)))
    assert out_labels.shape == (16, 16)
    assert (out_labels == IGNORE_INDEX).sum() == 16 * 16 - 10 * 10
    assert (out_image[:, out_labels == IGNORE_INDEX] == 0).all()


def test_colour_jitter_changes_the_image_only() -> None:
    labels, image = _checkerboard_sample()
    image_tv = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
    torch.manual_seed(0)
    out_image, out_labels = make_transforms(None, flips=False, rotate90=False, color_jitter=0.4)(
        image_tv, tv_tensors.Mask(torch.from_numpy(labels)))
    assert not torch.equal(out_image, image_tv)
    np.testing.assert_array_equal(out_labels.numpy(), labels)


def test_normalise_round_trip(sample_root: Path) -> None:
    dataset = DenseLandCoverDataset(find_pairs(sample_root))
    image, _ = dataset[1]
    original, _ = read_pair(*dataset.pairs[1])
    np.testing.assert_array_equal(denormalize_image(image), original)


def test_split_items_is_seeded_disjoint_and_complete() -> None:
    items = list(range(23))
    train, val, test = split_items(items, (0.7, 0.2, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (16, 5, 2)
    assert sorted(train + val + test) == items
    assert split_items(items, (0.7, 0.2, 0.1), seed=3) == [train, val, test]
    assert split_items(items, (0.7, 0.2, 0.1), seed=4) != [train, val, test]
    assert [len(p) for p in split_items([1, 2, 3], (0.9, 0.05, 0.05))] == [1, 1, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        split_items(items, (0.5, 0.2))
    with pytest.raises(ValueError, match="cannot split 1"):
        split_items([1], (0.5, 0.5))


def test_real_tiles_are_found_and_load(real_tiles: Path) -> None:
    pairs = find_pairs(real_tiles)
    assert len(pairs) == 129
    dataset = DenseLandCoverDataset(pairs[:3], transform=make_transforms(256))
    image, labels = dataset[2]
    assert image.shape == (3, 256, 256) and labels.shape == (256, 256)


def test_real_full_tiles_are_found(real_full: Path) -> None:
    pairs = find_pairs(real_full)
    assert [i.name for i, _ in pairs][:2] == ["104113_sat.jpg", "172307_sat.jpg"]
    image, class_map = read_pair(*pairs[0])
    assert image.shape == (2448, 2448, 3) and class_map.shape == (2448, 2448)


def test_real_root_with_both_folders(real_root: Path) -> None:
    splits = {s.split for s in scan_dataset(real_root)}
    assert splits == {"full_2448", "tiles_512"}


def test_prepare_data_prefers_the_given_folder_then_data_dir(tmp_path: Path, monkeypatch) -> None:
    from lc_utils.settings import prepare_data

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert prepare_data() == tmp_path
    assert prepare_data(tmp_path / ".") == tmp_path / "."
    with pytest.raises(FileNotFoundError, match="DATA_DIR is not a folder"):
        prepare_data(tmp_path / "missing")


def test_prepare_data_generates_the_sample_in_fast_mode(tmp_path: Path, monkeypatch) -> None:
    from lc_utils import settings

    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.setenv("LC_FAST", "1")
    monkeypatch.setattr(settings, "sample_dir", lambda: tmp_path / "sample")
    monkeypatch.setattr(settings, "SAMPLE_SIZES", {"fast": {"n_images": 3, "size": 48}, "full": {}})
    root = settings.prepare_data()
    assert root == tmp_path / "sample" and len(find_pairs(root)) == 3


def test_split_pairs_is_shared_and_seeded(sample_root: Path) -> None:
    from lc_utils.datasets import split_pairs

    pairs = find_pairs(sample_root)
    split = split_pairs(pairs, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [6, 1, 1]
    assert split == split_pairs(pairs, seed=0)


def test_class_and_channel_statistics(sample_root: Path) -> None:
    from lc_utils.statistics import channel_statistics, class_statistics

    pairs = find_pairs(sample_root)
    classes = class_statistics(pairs)
    assert list(classes.index) == list(DEEPGLOBE.names)
    assert classes["pixels"].sum() == 8 * 96 * 96
    assert classes["pixel_share"].sum() == pytest.approx(1)
    assert classes.loc["agriculture", "images"] <= 8 and classes["image_share"].max() <= 1
    channels = channel_statistics(pairs)
    assert channels.loc["all pixels"].notna().all()
    forest, barren = channels.loc["forest"], channels.loc["barren"]
    assert forest[["mean R", "mean G", "mean B"]].sum() < barren[["mean R", "mean G", "mean B"]].sum()


@pytest.mark.parametrize(("shape", "size"),
                         [((2448, 2448), 512), ((96, 130), 64), ((40, 40), 64), ((512, 512), 512)])
def test_window_grid_covers_the_image(shape: tuple[int, int], size: int) -> None:
    corners = window_grid(shape, size)
    covered = np.zeros(shape, dtype=int)
    for top, left in corners:
        assert top + min(size, shape[0]) <= shape[0] and left + min(size, shape[1]) <= shape[1]
        covered[top:top + size, left:left + size] += 1
    assert covered.min() == 1  # every pixel, and no window that a smaller grid could spare
    per_axis = [max(1, -(-n // size)) for n in shape]
    assert len(corners) == per_axis[0] * per_axis[1]


def test_window_dataset_is_seeded_and_cuts_the_images(sample_root: Path) -> None:
    dense = DenseLandCoverDataset(find_pairs(sample_root)[:3])
    everything = WindowDataset(dense, size=64)
    assert len(everything) == 3 * 4  # 96 x 96 images: a 2 x 2 grid of 64-pixel windows
    some = WindowDataset(dense, size=64, count=5, seed=1)
    assert len(some) == 5 and some.windows == WindowDataset(dense, size=64, count=5, seed=1).windows
    assert some.windows != WindowDataset(dense, size=64, count=5, seed=2).windows
    assert set(some.windows) <= set(everything.windows)
    assert some.pixels == 5 * 64 * 64
    for i, (index, top, left) in enumerate(some.windows):
        image, labels = dense[index]
        window_image, window_labels = some[i]
        assert torch.equal(window_image, image[:, top:top + 64, left:left + 64])
        assert torch.equal(window_labels, labels[top:top + 64, left:left + 64])
    assert some[0][0] is some[0][0]  # read once, then kept


def test_window_dataset_scores_small_images_whole(sample_root: Path) -> None:
    dense = DenseLandCoverDataset(find_pairs(sample_root)[:2])
    whole = WindowDataset(dense, size=512, count=10)
    assert len(whole) == 2 and whole.pixels == 2 * 96 * 96
    assert torch.equal(whole[1][1], dense[1][1])
    with pytest.raises(ValueError, match="without transform"):
        WindowDataset(DenseLandCoverDataset(find_pairs(sample_root), transform=make_transforms(32)))


def test_decoded_images_are_cached_up_to_the_budget(sample_root: Path, tmp_path: Path) -> None:
    for path in find_pairs(sample_root)[0] + find_pairs(sample_root)[1]:
        shutil.copy(path, tmp_path / path.name)
    pairs = find_pairs(tmp_path)
    one_item_mb = (96 * 96 * 4) / 2**20  # image and label map of a 96 x 96 pair
    cached = DenseLandCoverDataset(pairs, cache_mb=1.5 * one_item_mb)
    uncached = DenseLandCoverDataset(pairs)
    first = [cached[0], cached[1]]
    for image, _ in pairs:
        image.unlink()
    again = cached[0]  # kept: the file is gone, the decoded pixels are not
    assert torch.equal(again[0], first[0][0]) and torch.equal(again[1], first[0][1])
    with pytest.raises(FileNotFoundError):
        cached[1]  # over the budget: read from disk each time
    with pytest.raises(FileNotFoundError):
        uncached[0]
