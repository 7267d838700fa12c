"""Clicked points: each change saved at once, undo, provenance, and a file changed meanwhile kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from lc_utils.classes import DEEPGLOBE
from lc_utils.point_editor import PERSON, AnnotationConflictError, PointEditor
from lc_utils.sparse import PointAnnotation, load_annotations, save_annotations

SHAPES = {"tile_a": (100, 120), "tile_b": (50, 50)}


def _on_disk(path: Path) -> dict[str, set[tuple[int, int, int]]]:
    return {i: set(zip(a.rows.tolist(), a.cols.tolist(), a.labels.tolist()))
            for i, a in load_annotations(path, DEEPGLOBE, SHAPES).items()}


def test_a_click_adds_relabels_or_removes_and_each_change_is_saved_at_once(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    editor = PointEditor(path, SHAPES, labelling_round=1)
    assert not path.exists() and editor.annotations == {}
    assert editor.click("tile_a", 10, 20, label=3) == "added"
    assert _on_disk(path) == {"tile_a": {(10, 20, 3)}}
    assert editor.click("tile_a", 12, 21, label=4, radius=3) == "relabelled"  # near the point: it
    assert _on_disk(path) == {"tile_a": {(10, 20, 4)}}
    assert editor.click("tile_a", 12, 21, label=4, radius=1) == "added"  # too far: a new point
    assert editor.click("tile_a", 10, 20, label=4) == "removed"
    assert _on_disk(path) == {"tile_a": {(12, 21, 4)}}
    saved = load_annotations(path)["tile_a"]
    assert list(saved.sources) == [PERSON] and list(saved.rounds) == [1]


def test_undo_takes_back_each_change_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    editor = PointEditor(path, SHAPES)
    editor.add("tile_a", 1, 1, 0)
    editor.add("tile_b", 5, 5, 1)
    editor.relabel("tile_a", 1, 1, 2)
    editor.remove("tile_b", 5, 5)
    states = [{"tile_a": {(1, 1, 2)}}, {"tile_a": {(1, 1, 2)}, "tile_b": {(5, 5, 1)}},
              {"tile_a": {(1, 1, 0)}, "tile_b": {(5, 5, 1)}}, {"tile_a": {(1, 1, 0)}}, {}]
    assert _on_disk(path) == states[0]
    for expected in states[1:]:
        assert editor.undo()
        assert _on_disk(path) == expected
    assert not editor.undo() and not editor.can_undo


def test_sampled_points_keep_their_provenance_when_a_person_edits_the_file(tmp_path: Path) -> None:
    path = save_annotations({"tile_a": PointAnnotation([5, 6], [5, 6], [1, 1])}, tmp_path / "p.csv",
                            info={"strategy": "uniform"})
    editor = PointEditor(path, SHAPES)
    editor.relabel("tile_a", 6, 6, 4)
    saved = load_annotations(path)["tile_a"]
    sources = dict(zip(zip(saved.rows.tolist(), saved.cols.tolist()), saved.sources))
    assert sources == {(5, 5): "", (6, 6): PERSON}
    assert path.read_text().startswith('# info: {"strategy": "uniform"}')


def test_a_file_changed_meanwhile_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    editor = PointEditor(path, SHAPES)
    editor.add("tile_a", 1, 1, 0)
    by_hand = path.read_text() + "tile_b,3,3,5,barren\n"
    path.write_text(by_hand)
    with pytest.raises(AnnotationConflictError, match=r"clicks\.csv: changed on disk .* reload\(\)"):
        editor.add("tile_a", 2, 2, 1)
    assert path.read_text() == by_hand and editor.points("tile_a") == PointAnnotation([1], [1], [0])
    editor.reload()
    editor.add("tile_a", 2, 2, 1)
    assert _on_disk(path) == {"tile_a": {(1, 1, 0), (2, 2, 1)}, "tile_b": {(3, 3, 5)}}
    # a file that appears where there was none is someone else's too
    other = PointEditor(tmp_path / "new.csv", SHAPES)
    (tmp_path / "new.csv").write_text("image_id,row,col,label\n")
    with pytest.raises(AnnotationConflictError):
        other.add("tile_a", 0, 0, 0)


def test_bad_clicks_say_what_is_wrong(tmp_path: Path) -> None:
    editor = PointEditor(tmp_path / "clicks.csv", SHAPES)
    with pytest.raises(ValueError, match=r"row 100, col 5 is outside image 'tile_a' \(120x100\)"):
        editor.add("tile_a", 100, 5, 0)
    with pytest.raises(KeyError, match="'tile_c' is not one of the 2 images"):
        editor.add("tile_c", 1, 1, 0)
    with pytest.raises(ValueError, match="label 7 is not a class"):
        editor.add("tile_a", 1, 1, 7)
    with pytest.raises(KeyError, match="no point at row 1, col 1"):
        editor.remove("tile_a", 1, 1)
    assert not (tmp_path / "clicks.csv").exists()
    with pytest.raises(ValueError, match="image_shapes is empty"):
        PointEditor(tmp_path / "clicks.csv", {})


def test_simulated_clicks_come_from_the_masks_through_the_editor(sample_root: Path, tmp_path: Path) -> None:
    from lc_utils import files, layouts
    from lc_utils.masks import read_mask
    from lc_utils.point_editor import SIMULATED, simulate_clicks

    pairs = layouts.find_pairs(sample_root)[:3]
    editor = PointEditor(tmp_path / "clicks.csv", files.image_shapes(pairs))
    masks = {files.image_id_of(image): mask for image, mask in pairs}
    assert simulate_clicks(editor, masks, points_per_image=25, seed=4) == 75
    saved = load_annotations(tmp_path / "clicks.csv")
    for image_id, mask in masks.items():
        truth = read_mask(mask)
        assert len(saved[image_id]) == 25 and set(saved[image_id].sources) == {SIMULATED}
        assert (truth[saved[image_id].rows, saved[image_id].cols] == saved[image_id].labels).all()
    assert editor.source == PERSON  # a person's clicks after the simulated ones say so again
    editor.undo()  # one image's clicks are one change
    assert len(load_annotations(tmp_path / "clicks.csv")) == 2
    again = PointEditor(tmp_path / "again.csv", files.image_shapes(pairs))
    simulate_clicks(again, masks, points_per_image=25, seed=4)
    assert load_annotations(tmp_path / "again.csv").keys() == masks.keys()
    assert all(load_annotations(tmp_path / "again.csv")[i] == saved[i] for i in list(masks)[:2])
