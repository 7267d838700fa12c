"""Annotation files: written atomically, read back by column name, every hand edit checked with the
file and line named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lc_utils.files import image_shapes
from lc_utils.layouts import find_pairs
from lc_utils.point_files import (
    annotation_filename,
    ensure_annotations,
    load_annotations,
    read_annotation_file,
    read_annotation_info,
    save_annotations,
)
from lc_utils.saved_files import OtherSettingsError
from lc_utils.sparse import PointAnnotation, sample_annotations

HEADER = "image_id,row,col,label,class_name"


def _class_map(size: int = 64) -> np.ndarray:
    class_map = np.ones((size, size), np.uint8)
    class_map[: size // 4] = 3
    return class_map


def test_save_load_round_trip(tmp_path: Path) -> None:
    annotations = sample_annotations([("x1", _class_map()), ("x2", _class_map(size=32))], n_points=25, seed=0)
    path = save_annotations(annotations, tmp_path / "points.csv", info={"seed": 0})
    assert path.read_text(encoding="utf-8").splitlines()[1] == HEADER
    loaded = load_annotations(path, image_shapes={"x1": (64, 64), "x2": (32, 32)})
    assert loaded == annotations
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]  # no temporary file left


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x1,3,4,9,", "points.csv:3: label 9 is not a class"),
        ("x1,3,4,1,forest", "points.csv:3: label 1 is 'agriculture' but the line says 'forest'"),
        ("x1,-3,4,1,", "points.csv:3: row must be 0 or more, got -3"),
        ("x1,three,4,1,", "points.csv:3: row must be a whole number, got 'three'"),
        ("x1,2.5,4,1,", "points.csv:3: row must be a whole number, got '2.5'"),
        ("x1,nan,4,1,", "points.csv:3: row must be a whole number, got 'nan'"),
        ("x1,3,,1,", "points.csv:3: col is missing"),
        ("x1,70,4,1,", r"points.csv:3: row 70, col 4 is outside image 'x1' \(64x64\)"),
        ("x1,99999999999999999999,4,1,", r"points.csv:3: row 9+, col 4 is outside image 'x1'"),
        ("ghost,3,4,1,", r"points.csv: image\(s\) not in the data set: 'ghost' \(line 3\)"),
        ("x1,0,0,1,", "points.csv:3: the same pixel twice: image 'x1', row 0, col 0 is on line 2 already"),
        ("x1,5,5,1,agriculture,surplus", "points.csv:3: 6 fields but the header names 5 columns"),
    ],
)
def test_bad_annotation_files_are_refused(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "points.csv"
    path.write_text(f"{HEADER}\nx1,0,0,1,agriculture\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_annotations(path, image_shapes={"x1": (64, 64)})


@pytest.mark.parametrize(
    ("text", "message"),
    [   # a huge coordinate: refused even where the image sizes are not known
        (f"{HEADER}\nx1,99999999999999999999,4,1,\n",
         "points.csv:2: row must be at most 2147483647, got 9{20}$"),
        # line numbers count the comment and blank lines
        (f"# info: {{}}\n{HEADER}\nx1,0,0,1,\n\nx1,0,1,11,\n\n", "points.csv:5: label 11"),
    ],
)
def test_errors_name_the_line_without_image_sizes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "points.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_annotations(path)


def test_whole_numbers_written_as_floats_read_fine(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(f"{HEADER}\nx1, 3.0 ,4,1.0,agriculture\n", encoding="utf-8")
    assert load_annotations(path)["x1"] == PointAnnotation([3], [4], [1])


def test_columns_are_read_by_their_header_name_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("label,note,col,row,image_id,class_name\n3,by the river,4,7,x1,forest\n1,,2,9,x1,\n",
                    encoding="utf-8")
    loaded = read_annotation_file(path, image_shapes={"x1": (64, 64)}).annotations["x1"]
    assert loaded == PointAnnotation([7, 9], [4, 2], [3, 1])
    assert loaded.extras["note"].tolist() == ["by the river", ""]  # a column of one's own is kept
    # the class name is checked where the header puts it, whatever the order
    path.write_text("label,note,col,row,image_id,class_name\n0,wooded,4,7,x1,forest\n", encoding="utf-8")
    with pytest.raises(ValueError, match="points.csv:2: label 0 is 'urban' but the line says 'forest'"):
        load_annotations(path)
    path.write_text("image_id,row,label,class_name\nx1,7,0,urban\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"points.csv:1: the header lacks the column\(s\) col"):
        load_annotations(path)
    path.write_text("image_id,row,col,label,row\nx1,7,0,0,8\n", encoding="utf-8")
    with pytest.raises(ValueError, match="points.csv:1: the header names the column 'row' twice"):
        load_annotations(path)


def test_a_utf8_bom_from_excel_reads_fine(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_bytes(f'\ufeff# info: {{"seed": 3}}\n{HEADER},note\nx1,1,2,4,water,\u00e9tang\n'.encode())
    assert read_annotation_info(path) == {"seed": 3}
    assert load_annotations(path)["x1"].extras["note"].tolist() == ["\u00e9tang"]
    path.write_bytes(f"\ufeff{HEADER}\nx1,1,2,4,water\n".encode())  # no info line: the header first
    assert load_annotations(path)["x1"] == PointAnnotation([1], [2], [4])
    path.write_bytes(f"{HEADER},note\nx1,1,2,4,water,\u00e9tang\n".encode("cp1252"))
    with pytest.raises(ValueError, match="points.csv: not UTF-8 text"):
        load_annotations(path)


def test_a_broken_info_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(f'# info: {{"seed": 3,\n{HEADER}\nx1,1,2,4,water\n', encoding="utf-8")
    with pytest.raises(ValueError, match="points.csv:1: the '# info:' line is not valid JSON"):
        read_annotation_info(path)
    with pytest.raises(ValueError, match="points.csv:1: the '# info:' line is not valid JSON"):
        load_annotations(path)


def test_comment_lines_come_before_the_header_and_an_id_may_start_with_a_hash(tmp_path: Path) -> None:
    points = {"#12": PointAnnotation([1], [2], [3]), "a": PointAnnotation([4], [5], [1])}
    path = save_annotations(points, tmp_path / "points.csv", comments=["# checked by Ana, May"])
    saved = read_annotation_file(path)
    assert saved.annotations == points and saved.comments == ("# checked by Ana, May",)
    # after the header every line is a point: a note there is refused, not skipped in silence
    path.write_text(path.read_text(encoding="utf-8") + "# the river moved\n", encoding="utf-8")
    with pytest.raises(ValueError, match="points.csv:5: .*comment lines .*go above the header"):
        load_annotations(path)
    with pytest.raises(ValueError, match="comment line must start with '#'"):
        save_annotations(points, tmp_path / "other.csv", comments=["checked"])


def test_a_negative_round_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(f"{HEADER},source,round\nx1,1,2,4,water,person,-1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="points.csv:2: round must be 0 or more, got -1"):
        load_annotations(path)
    path.write_text(f"{HEADER},source,round\nx1,1,2,4,water,person,two\n", encoding="utf-8")
    with pytest.raises(ValueError, match="points.csv:2: round must be a whole number, got 'two'"):
        load_annotations(path)


def test_points_on_images_without_masks_are_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(f"{HEADER}\nx1,1,2,4,water\n0009,3,3,1,\n0009,4,4,1,\nghost,1,1,1,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"image\(s\) with points but no mask: '0009' \(line 3\)") as error:
        load_annotations(path, image_shapes={"x1": (64, 64)}, images_without_masks={"0009"})
    assert "'ghost' (line 5)" in str(error.value)
    # where the images without masks are part of the data (a file of one's own), they load
    loaded = load_annotations(path, image_shapes={"x1": (64, 64), "0009": (8, 8), "ghost": (8, 8)})
    assert len(loaded["0009"]) == 2


def test_ensure_annotations_makes_once_and_keeps_hand_edits(sample_root: Path, tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)[:3]
    path = tmp_path / annotation_filename("uniform", n_points=10, seed=0)
    assert path.name == "points_uniform_n10_seed0.csv"
    made = ensure_annotations(path, pairs, n_points=10, seed=0)
    assert sorted(made) == ["0000", "0001", "0002"] and all(len(a) == 10 for a in made.values())
    text = path.read_text(encoding="utf-8")
    first_point = text.splitlines()[2].split(",")
    edited = ",".join([*first_point[:3], "4", "water"])
    path.write_text(text.replace(",".join(first_point), edited), encoding="utf-8")
    again = ensure_annotations(path, pairs, n_points=10, seed=0)
    assert again[first_point[0]].labels[0] == 4
    with pytest.raises(OtherSettingsError, match=r"n_points: 10 there, 20 now.*annotations='.*\.csv'"):
        ensure_annotations(path, pairs, n_points=20, seed=0)


def test_a_hand_edited_sampled_file_is_checked_against_the_image_sizes(sample_root: Path,
                                                                       tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)[:2]  # 96 x 96 images
    path = tmp_path / "points.csv"
    ensure_annotations(path, pairs, n_points=5)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    image_id, _, col, label, name = lines[3].split(",")
    lines[3] = ",".join([image_id, "500", col, label, name])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"points.csv:4: row 500, col {col} is outside image '{image_id}' "
                                         r"\(96x96\)"):
        ensure_annotations(path, pairs, n_points=5)
    path.write_text(text + "0099,1,1,1,agriculture\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"not in the data set: '0099' \(line 13\)"):
        ensure_annotations(path, pairs, n_points=5)


def test_a_file_without_its_info_line_is_refused_with_ways_to_keep_it(sample_root: Path,
                                                                      tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)[:2]
    path = tmp_path / "points.csv"
    save_annotations({"0000": PointAnnotation([1], [1], [1])}, path)  # a file of one's own: no info
    with pytest.raises(OtherSettingsError, match=r"points.csv has no '# info:' line.*"
                                                 r"annotations='.*points.csv'.*--annotations .*points.csv on "
                                                 r"the command line.*another name"):
        ensure_annotations(path, pairs, n_points=5)
    assert load_annotations(path)["0000"] == PointAnnotation([1], [1], [1])  # left as it was


def test_ensure_annotations_by_density(sample_root: Path, tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)[:2]  # 96 x 96 images: 0.0092 megapixels
    path = tmp_path / annotation_filename("uniform", points_per_mp=2000, seed=0)
    assert path.name == "points_uniform_2000permp_seed0.csv"
    made = ensure_annotations(path, pairs, points_per_mp=2000)
    assert [len(a) for a in made.values()] == [18, 18]
    assert read_annotation_info(path)["points_per_mp"] == 2000
    with pytest.raises(ValueError, match="points_per_mp: 2000 there, 1000 now"):
        ensure_annotations(path, pairs, points_per_mp=1000)
    assert image_shapes(pairs) == {"0000": (96, 96), "0001": (96, 96)}


def test_annotation_files_from_before_the_density_option_still_load(sample_root: Path,
                                                                   tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)[:2]
    path = tmp_path / "points.csv"
    made = ensure_annotations(path, pairs, n_points=5)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert '"points_per_mp": null' in lines[0]
    path.write_text("\n".join([lines[0].replace('"points_per_mp": null, ', ""), *lines[1:]]) + "\n",
                    encoding="utf-8")
    assert ensure_annotations(path, pairs, n_points=5) == made


def test_provenance_round_trips_and_files_without_it_still_load(tmp_path: Path) -> None:
    clicked = PointAnnotation([3, 7, 9], [4, 1, 2], [1, 4, 0], sources=["person", "uniform", "person"],
                              rounds=[0, 0, 2])
    plain = PointAnnotation([5], [5], [3])
    path = save_annotations({"a": clicked, "b": plain}, tmp_path / "points.csv")
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == f"{HEADER},source,round"
    back = load_annotations(path)
    assert back["a"] == clicked and list(back["a"].sources) == ["person", "uniform", "person"]
    assert list(back["a"].rounds) == [0, 0, 2]
    assert list(back["b"].sources) == [""] and list(back["b"].rounds) == [0]  # written with the others
    kept = back["a"].subset(back["a"].rounds == 2)
    assert (kept.rows.tolist(), kept.sources.tolist(), kept.rounds.tolist()) == ([9], ["person"], [2])
    # a file from before provenance: no sources, no rounds
    old = save_annotations({"b": plain}, tmp_path / "old.csv")
    assert old.read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert load_annotations(old)["b"].sources is None and load_annotations(old)["b"].rounds is None
    with pytest.raises(ValueError, match="same length"):
        PointAnnotation([1, 2], [1, 2], [0, 0], rounds=[1])


def test_extra_columns_survive_a_load_and_a_save(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(f"{HEADER},checked_by\nb,1,1,1,,Ana\na,2,2,3,forest,\na,3,3,3,forest,Bo\n",
                    encoding="utf-8")
    again = save_annotations(load_annotations(path), tmp_path / "again.csv")
    lines = again.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{HEADER},checked_by"
    assert lines[1:] == ["a,2,2,3,forest,", "a,3,3,3,forest,Bo", "b,1,1,1,agriculture,Ana"]
    both = load_annotations(again)["a"].extend(PointAnnotation([9], [9], [0]))
    assert both.extras["checked_by"].tolist() == ["", "Bo", ""]
    assert both.subset(np.array([1])).extras["checked_by"].tolist() == ["Bo"]
