"""Finding pairs in each layout the course reads, on generated stand-ins of LoveDA, mmsegmentation
and ISPRS folders, and the schema that goes with each."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import maximum_filter, minimum_filter

from lc_utils import settings
from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX, load_preset
from lc_utils.datasets import DenseLandCoverDataset, split_pairs
from lc_utils.inference import evaluate
from lc_utils.layouts import LossyMaskWarning, detect_layout, find_pairs, load_schema, scan_dataset
from lc_utils.masks import MaskEncodingError, class_to_rgb, read_mask
from lc_utils.point_files import ensure_annotations
from lc_utils.synthetic import generate_pair, make_sample_dataset, make_standin
from lc_utils.training import make_loader

LOVEDA = load_preset("loveda")
POTSDAM = load_preset("potsdam")


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("standins")
    return {
        "loveda": make_standin(root / "loveda", "loveda", "loveda", n_images=10, size=48),
        "mmseg": make_standin(root / "mmseg", "mmseg", "potsdam", n_images=10, size=48, coding="index"),
        "isprs": make_standin(root / "isprs", "folders", "potsdam", n_images=10, size=48),
    }


def test_loveda_layout_and_schema_are_detected(standins: dict[str, Path]) -> None:
    root = standins["loveda"]
    assert detect_layout(root) == "loveda" and load_schema(root) == LOVEDA
    samples = scan_dataset(root)
    assert len(samples) == 10 and {s.split for s in samples} == {"train", "val"}
    assert {s.image.parent.parent.name for s in samples} == {"Urban", "Rural"}
    assert all(s.mask == s.image.parent.parent / "masks_png" / s.image.name for s in samples)
    # One split folder, or one domain folder, works as a root too.
    assert len(find_pairs(root / "Train")) == 8
    assert len(find_pairs(root / "Train" / "Urban")) == 4


def test_loveda_no_data_is_never_labelled_nor_scored(standins: dict[str, Path], tmp_path: Path) -> None:
    """The generated "unknown" haze is LoveDA's 0 (no data): it decodes to 255, gets no point, and
    is left out of the confusion matrix, whose classes are LoveDA's (none of them left out)."""
    pairs = find_pairs(standins["loveda"])
    no_data = 0
    for _, mask in pairs:
        haze = generate_pair(0, int(mask.stem), 48)[1] == 6
        assert ((np.array(Image.open(mask)) == 0) == haze).all()
        assert ((read_mask(mask, LOVEDA) == IGNORE_INDEX) == haze).all()
        no_data += int(haze.sum())
    assert no_data > 0
    annotations = ensure_annotations(tmp_path / "points.csv", pairs, fraction=0.5, schema=LOVEDA)
    for (_, mask), points in zip(pairs, (annotations[p.stem] for p, _ in pairs)):
        assert (read_mask(mask, LOVEDA)[points.rows, points.cols] != IGNORE_INDEX).all()
    model = torch.nn.Conv2d(3, 7, 1)
    confusion = evaluate(model, make_loader(DenseLandCoverDataset(pairs, LOVEDA), 2, shuffle=False))
    assert confusion.class_names == list(LOVEDA.names) and confusion.default_exclude == ()
    assert confusion.matrix.sum() == 10 * 48 * 48 - no_data


def test_mmseg_layout_needs_its_schema_named(standins: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = standins["mmseg"]
    assert detect_layout(root) == "mmseg"
    samples = scan_dataset(root)
    assert {s.split for s in samples} == {"train", "val"} and len(samples) == 10
    assert all(s.mask == root / "ann_dir" / s.split / s.image.name for s in samples)
    assert load_schema(root) == DEEPGLOBE  # nothing in the folder says Potsdam ...
    with pytest.raises(MaskEncodingError, match="single-channel mask .* give a schema that names them"):
        read_mask(samples[0].mask, load_schema(root))
    monkeypatch.setenv("DATA_SCHEMA", "potsdam")  # ... so the learner says it: a parameters cell passes it on
    assert load_schema(root, settings.env_value("DATA_SCHEMA")) == POTSDAM
    assert load_schema(root) == DEEPGLOBE  # the data layer reads no environment
    assert load_schema(root, "vaihingen").name == "ISPRS Vaihingen"  # the argument wins
    classes = read_mask(samples[0].mask, POTSDAM)
    assert set(np.unique(classes)) <= {*range(6), IGNORE_INDEX}


def test_isprs_folders_pair_by_name_and_detect_the_schema(standins: dict[str, Path]) -> None:
    root = standins["isprs"]
    assert detect_layout(root) == "folders" and load_schema(root) == POTSDAM
    pairs = find_pairs(root)
    assert len(pairs) == 10
    for image, mask in pairs:
        assert image.name.removesuffix("_RGB.tif") == mask.name.removesuffix("_label.tif")
    # The same scenes read through the mmseg stand-in's index masks decode to the same classes.
    mmseg = find_pairs(standins["mmseg"])
    by_scene = {m.name.split("_0_0_")[0]: m for _, m in mmseg}
    for _, mask in pairs:
        scene = mask.name.removeprefix("top_potsdam_").removesuffix("_label.tif")
        assert (read_mask(mask, POTSDAM) == read_mask(by_scene[scene], POTSDAM)).all()
    assert len(split_pairs(pairs)["test"]) >= 1


def test_generic_folders_with_a_mask_suffix(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for name in ("a", "b") if split == "train" else ("c",):
            image, labels = generate_pair(0, ord(name), 32)
            (tmp_path / split / "images").mkdir(parents=True, exist_ok=True)
            (tmp_path / split / "annotations").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / split / "images" / f"{name}.jpg")
            Image.fromarray(class_to_rgb(labels)).save(tmp_path / split / "annotations" / f"{name}_annot.png")
    assert detect_layout(tmp_path) == "folders"
    with pytest.raises(ValueError, match=r"mask\(s\) without an image, e.g. a_annot.png"):
        find_pairs(tmp_path)
    pairs = find_pairs(tmp_path, mask_suffix="_annot")
    assert [(i.name, m.name) for i, m in pairs] == [("a.jpg", "a_annot.png"), ("b.jpg", "b_annot.png"),
                                                     ("c.jpg", "c_annot.png")]
    assert {s.split for s in scan_dataset(tmp_path, mask_suffix="_annot")} == {"train", "val"}


def test_mmseg_split_without_annotations_is_for_inference(tmp_path: Path) -> None:
    root = make_standin(tmp_path / "d", "mmseg", "loveda", n_images=5, size=32)
    test_dir = root / "img_dir" / "test"
    test_dir.mkdir()
    Image.fromarray(generate_pair(1, 0, 32)[0]).save(test_dir / "99.png")
    samples = scan_dataset(root)
    assert [s.image_id for s in samples if s.mask is None] == ["99"]
    assert len(find_pairs(root)) == 5


def test_image_ids_must_be_unique_across_folders(tmp_path: Path) -> None:
    root = make_standin(tmp_path / "d", "loveda", "loveda", n_images=3, size=32)
    src = root / "Train" / "Rural"
    dst = root / "Train" / "Urban"
    for sub in ("images_png", "masks_png"):
        (dst / sub / "0.png").write_bytes((src / sub / "0.png").read_bytes())
    with pytest.raises(ValueError, match=r"two images have the id '0'"):
        scan_dataset(root)


def test_jpeg_masks_get_a_warning_then_the_threshold(tmp_path: Path) -> None:
    make_sample_dataset(tmp_path, n_images=2, size=64)
    png = tmp_path / "train" / "0000_mask.png"
    Image.open(png).save(tmp_path / "train" / "0000_mask.jpg", quality=80)
    png.unlink()
    (tmp_path / "metadata.csv").unlink()
    with pytest.warns(LossyMaskWarning, match=r"1 mask\(s\) are JPEG files, e.g. 0000_mask.jpg. JPEG is"):
        pairs = find_pairs(tmp_path)
    assert pairs[0][1].name == "0000_mask.jpg"
    truth = generate_pair(0, 0, 64)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = read_mask(pairs[0][1], DEEPGLOBE)
    # JPEG (chroma subsampling above all) shifts colours across class edges: every pixel it
    # turns into another class lies within 4 pixels of an edge.
    wrong = decoded != truth
    near_edge = maximum_filter(truth, size=9) != minimum_filter(truth, size=9)
    assert 0 < wrong.mean() < 0.1 and not (wrong & ~near_edge).any()


def test_masks_are_set_aside_for_a_folder_that_has_them(sample_root: Path, tmp_path: Path) -> None:
    from lc_utils.layouts import find_unlabelled_images, set_masks_aside

    folder, masks = set_masks_aside(sample_root, tmp_path / "images")
    assert folder == tmp_path / "images" and len(masks) == 8
    expected = {p.name.replace("_mask.png", "_sat.jpg") for p in masks.values()}
    assert {p.name for p in folder.iterdir()} == expected
    assert len(find_unlabelled_images(folder)) == 8
    again, none = set_masks_aside(folder, tmp_path / "unused")  # images alone: used as they are
    assert again == folder and none == {} and not (tmp_path / "unused").exists()
