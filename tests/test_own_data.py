"""A learner's own data as found: the folders and names people have, and what each command says.

Each case was found by trying real data sets with the README as the only guide; every test runs on
generated stand-ins in those layouts.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from lc_utils import settings
from lc_utils.classes import ClassSchema, load_preset
from lc_utils.course import run_notebook
from lc_utils.layouts import LossyMaskWarning, find_pairs, load_schema, scan_dataset
from lc_utils.masks import OffPaletteWarning, class_to_rgb, read_mask
from lc_utils.run_data import load_data
from lc_utils.run_spec import RunSpec
from lc_utils.runs import build_run
from lc_utils.synthetic import generate_pair, make_sample_dataset, make_standin
from lc_utils.tiles import main as tiles_main

POTSDAM = load_preset("potsdam")


def _flatten_mmseg(root: Path) -> Path:
    """mmsegmentation's own test-data form: img_dir/*.png + ann_dir/*.png, no split folder."""
    for sub in ("img_dir", "ann_dir"):
        for path in sorted((root / sub).glob("*/*.png")):
            path.rename(root / sub / path.name)
        for split in [p for p in (root / sub).iterdir() if p.is_dir()]:
            split.rmdir()
    return root


def test_a_flat_mmseg_folder_is_one_split(tmp_path: Path) -> None:
    root = _flatten_mmseg(make_standin(tmp_path / "mmseg", "mmseg", "potsdam", n_images=6, size=32,
                                       coding="index"))
    samples = scan_dataset(root)
    assert len(samples) == 6 and {s.split for s in samples} == {""}
    assert all(s.mask.parent == root / "ann_dir" for s in samples)
    empty = tmp_path / "empty"
    (empty / "img_dir").mkdir(parents=True)
    (empty / "ann_dir").mkdir()
    with pytest.raises(FileNotFoundError, match=r"as the mmseg layout: img_dir/ holds no image file"):
        find_pairs(empty)


def test_one_loveda_domain_folder_is_read_as_loveda(tmp_path: Path) -> None:
    root = make_standin(tmp_path / "loveda", "loveda", "loveda", n_images=10, size=32)
    domain = root / "Train" / "Urban"
    assert load_schema(domain) == load_preset("loveda")
    samples = scan_dataset(domain)
    assert samples and {s.split for s in samples} == {"train"}
    assert all(s.image.parent == domain / "images_png" for s in samples)


def test_an_index_list_with_its_columns_in_either_order(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("name,value\nbuilding,1\nroad,2\n")
    schema = ClassSchema.from_file(path)
    assert schema.names == ("building", "road") and schema.values == (1, 2) and not schema.rgb_masks
    path.write_text("label,colour\nbuilding,1\n")
    with pytest.raises(ValueError, match=r"classes.csv: expected a palette with the columns name,r,g,b .* "
                                         r"or an index list with the columns value,name"):
        ClassSchema.from_file(path)


def test_tiles_of_index_masks_keep_the_schema_they_are_given(tmp_path: Path, capsys) -> None:
    source = make_standin(tmp_path / "potsdam", "mmseg", "potsdam", n_images=4, size=64, coding="index")
    dest = tmp_path / "tiles"
    # Without a schema the index masks are no DeepGlobe masks: one line, before any tile is written.
    assert tiles_main([str(source), str(dest), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m lc_utils.tiles: error: ")
    assert "single-channel mask" in err and "--schema" in err and "Traceback" not in err
    assert not dest.exists() and not list(tmp_path.glob(".tiles.partial-*"))
    assert tiles_main([str(source), str(dest), "--size", "32", "--schema", "potsdam"]) == 0
    assert load_schema(dest) == POTSDAM and (dest / "schema.toml").is_file()
    image, mask = find_pairs(dest)[0]
    assert read_mask(mask, load_schema(dest)).max() < POTSDAM.num_classes
    assert len(find_pairs(dest)) == 4 * 4


def test_a_failed_tiling_leaves_the_destination_as_it_was(tmp_path: Path, capsys) -> None:
    source = make_sample_dataset(tmp_path / "source", n_images=4, size=64)
    broken = scan_dataset(source)[-1].mask
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated file, found after three good images
    dest = tmp_path / "tiles"
    assert tiles_main([str(source), str(dest), "--size", "32"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("python -m lc_utils.tiles: error: ") and broken.name in err
    assert "Traceback" not in err and "cutpython" not in out + err
    assert out.endswith("\n")  # the progress line is ended before the error
    assert not dest.exists() and not list(tmp_path.glob(".tiles.partial-*"))
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    assert tiles_main([str(source), str(dest)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def _naip_like(root: Path, n: int = 3, flat: bool = True) -> Path:
    """A Chesapeake-style folder: <id>_naip_rgb.png beside <id>_lc.png (flat, or images/ + labels/)."""
    for index in range(n):
        image, labels = generate_pair(0, index, 32)
        mask = class_to_rgb(labels)
        images, masks = (root, root) if flat else (root / "images", root / "labels")
        for folder in (images, masks):
            folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(images / f"m_{index:02d}_naip_rgb.png")
        Image.fromarray(mask).save(masks / f"m_{index:02d}_lc.png")
    return root


def test_endings_people_use_can_be_named(tmp_path: Path, monkeypatch) -> None:
    flat = _naip_like(tmp_path / "flat")
    expected = r"no <id>_sat.jpg/.png/.tif file.*m_00_lc.png.*name the endings"
    with pytest.raises(FileNotFoundError, match=expected):
        find_pairs(flat)
    pairs = find_pairs(flat, image_suffix="_naip_rgb", mask_suffix="_lc")
    assert [(i.name, m.name) for i, m in pairs][0] == ("m_00_naip_rgb.png", "m_00_lc.png") and len(pairs) == 3
    # `make course DATA_IMAGE_SUFFIX=... DATA_MASK_SUFFIX=...`: the parameters cells pass them on, as
    # does the tiles command; the data layer itself reads no environment
    monkeypatch.setenv("DATA_IMAGE_SUFFIX", "_naip_rgb")
    monkeypatch.setenv("DATA_MASK_SUFFIX", "_lc")
    assert find_pairs(flat, image_suffix=settings.env_value("DATA_IMAGE_SUFFIX"),
                      mask_suffix=settings.env_value("DATA_MASK_SUFFIX")) == pairs
    with pytest.raises(FileNotFoundError, match=expected):
        find_pairs(flat)
    assert tiles_main([str(flat), str(tmp_path / "tiles"), "--size", "32"]) == 0
    assert len(find_pairs(tmp_path / "tiles")) == 3
    monkeypatch.delenv("DATA_IMAGE_SUFFIX")
    monkeypatch.delenv("DATA_MASK_SUFFIX")
    folders = _naip_like(tmp_path / "folders", flat=False)
    # Only one known ending comes off the image (_rgb): the error says what each side became.
    with pytest.raises(ValueError, match=r"m_00_lc.png: read as id 'm_00_lc', and no image has that id; "
                                         r"the images' ids look like 'm_00_naip' \(from m_00_naip_rgb.png\)"):
        find_pairs(folders)
    assert len(find_pairs(folders, image_suffix="_naip_rgb", mask_suffix="_lc")) == 3
    # A run describes its data with the endings too.
    data = load_data(RunSpec(data=str(flat), image_suffix="_naip_rgb", mask_suffix="_lc", val_images=1))
    assert len(data.pairs) == 3 and len(data.split["train"]) == 2


def test_warnings_point_at_the_callers_line(tmp_path: Path) -> None:
    root = make_sample_dataset(tmp_path / "jpeg", n_images=2, size=32)
    (root / "metadata.csv").unlink()
    for mask in sorted(root.rglob("*_mask.png")):
        Image.open(mask).convert("RGB").save(mask.with_suffix(".jpg"), quality=95)
        mask.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        find_pairs(root)
    lossy = [w for w in caught if issubclass(w.category, LossyMaskWarning)]
    assert len(lossy) == 1 and lossy[0].filename == __file__
    message = str(lossy[0].message)
    assert "any other schema refuses JPEG masks" in message and "They are decoded" not in message
    stored = np.zeros((4, 4, 3), np.uint8)
    stored[0, 0] = (255, 0, 0)  # no DeepGlobe colour, even thresholded
    path = tmp_path / "a_mask.png"
    Image.fromarray(stored).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_mask(path)
    off = [w for w in caught if issubclass(w.category, OffPaletteWarning)]
    assert len(off) == 1 and off[0].filename == __file__


def test_the_course_runs_kernels_without_the_unencrypted_tcp_warning(tmp_path: Path, capfd) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(notebook, path)
    run_notebook(path, tmp_path / "out")
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "42\n"
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err
    assert "Parent appears to have exited" not in captured.out + captured.err
    assert not list(tmp_path.glob("kernel-*"))


@pytest.mark.slow
def test_two_data_folders_of_one_name_keep_their_own_points_and_runs(tmp_path: Path) -> None:
    first = make_sample_dataset(tmp_path / "a" / "full_2448", n_images=6, size=48, seed=0)
    second = make_sample_dataset(tmp_path / "b" / "full_2448", n_images=6, size=48, seed=1)
    common = {"backbone": "mobilenet_v3_large", "weights": None, "crop": 48, "batch_size": 2, "epochs": 1,
              "samples_per_epoch": 2, "val_windows": 1, "points_per_image": 10}
    runs_dir = tmp_path / "runs"
    run_a = build_run(RunSpec(data=str(first), **common), runs_dir=runs_dir)
    run_b = build_run(RunSpec(data=str(second), **common), runs_dir=runs_dir)
    assert run_a.annotation_path != run_b.annotation_path
    assert run_a.annotation_path.name == run_b.annotation_path.name  # same settings, other folder
    run_dir = runs_dir / "shared_name"
    run_a.train(run_dir, progress=False)
    with pytest.raises(ValueError, match=r"trained on other images \(another data folder or split\)"):
        run_b.train(run_dir, progress=False)
    shutil.rmtree(run_dir)
