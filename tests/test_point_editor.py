"""Clicked points: each change saved at once, undo, provenance, and a file changed meanwhile kept."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from lc_utils import point_editor
from lc_utils.classes import DEEPGLOBE
from lc_utils.point_editor import PERSON, AnnotationConflictError, PointEditor
from lc_utils.point_files import load_annotations, save_annotations
from lc_utils.sparse import PointAnnotation

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
    masks = {pair.image_id: pair.mask for pair in pairs}
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


def test_a_reload_that_fails_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    editor = PointEditor(path, SHAPES)
    editor.add("tile_a", 1, 1, 0)
    editor.add("tile_a", 2, 2, 1)
    good, version = path.read_text(encoding="utf-8"), editor.version
    path.write_text(good.replace("tile_a,2,2,1,", "tile_a,2,2,9,"), encoding="utf-8")  # a typo by hand
    with pytest.raises(ValueError, match=r"clicks\.csv:\d: label 9 is not a class"):
        editor.reload()
    assert editor.points("tile_a") == PointAnnotation([1, 2], [1, 2], [0, 1])
    assert editor.version == version and editor.can_undo
    path.write_text(good, encoding="utf-8")  # the typo put right: the file is the editor's again
    editor.add("tile_a", 3, 3, 2)
    assert _on_disk(path) == {"tile_a": {(1, 1, 0), (2, 2, 1), (3, 3, 2)}}


def test_two_editors_on_one_file_never_lose_a_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clicks.csv"
    first, second = PointEditor(path, SHAPES), PointEditor(path, SHAPES)
    writing, finish = threading.Event(), threading.Event()
    save = point_editor.save_annotations

    def slow_save(*args: object, **kwargs: object) -> Path:
        if threading.current_thread().name == "first":  # the first editor is caught mid-save
            writing.set()
            finish.wait(10)
        return save(*args, **kwargs)

    monkeypatch.setattr(point_editor, "save_annotations", slow_save)
    errors: dict[str, Exception] = {}

    def click(editor: PointEditor, row: int) -> None:
        try:
            editor.add("tile_a", row, row, 1)
        except Exception as error:  # the test reads what each editor met
            errors[threading.current_thread().name] = error

    threads = [threading.Thread(target=click, args=(first, 1), name="first"),
               threading.Thread(target=click, args=(second, 2), name="second")]
    threads[0].start()
    assert writing.wait(10)
    threads[1].start()
    threads[1].join(0.5)  # the second editor's save waits while the first one writes
    finish.set()
    for thread in threads:
        thread.join(10)
    assert "first" not in errors and isinstance(errors.get("second"), AnnotationConflictError)
    assert _on_disk(path) == {"tile_a": {(1, 1, 1)}} and second.annotations == {}
    second.reload()
    second.add("tile_a", 2, 2, 1)
    with pytest.raises(AnnotationConflictError):
        first.add("tile_a", 3, 3, 1)
    first.reload()
    first.add("tile_a", 3, 3, 1)
    assert _on_disk(path) == {"tile_a": {(1, 1, 1), (2, 2, 1), (3, 3, 1)}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clicks.csv"]  # no temporary or lock file


def test_the_editor_keeps_the_columns_and_comments_a_person_added(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text('# info: {"source": "mine"}\n# checked against the 2021 survey\n'
                    "image_id,row,col,label,class_name,checked_by\n"
                    "tile_a,5,5,1,agriculture,Ana\ntile_a,6,6,2,rangeland,\n", encoding="utf-8")
    editor = PointEditor(path, SHAPES)
    editor.add("tile_b", 1, 1, 3)
    editor.relabel("tile_a", 5, 5, 4)
    assert path.read_text(encoding="utf-8").splitlines()[:2] == [
        '# info: {"source": "mine"}', "# checked against the 2021 survey"]
    def checked(image_id: str) -> dict[tuple[int, int, int], str]:
        a = load_annotations(path)[image_id]
        return dict(zip(zip(a.rows.tolist(), a.cols.tolist(), a.labels.tolist()), a.extras["checked_by"]))

    assert checked("tile_a") == {(5, 5, 4): "Ana", (6, 6, 2): ""} and checked("tile_b") == {(1, 1, 3): ""}
    editor.remove("tile_a", 5, 5)
    editor.undo()  # the point comes back with its column of one's own
    assert checked("tile_a") == {(5, 5, 4): "Ana", (6, 6, 2): ""}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.add_many("tile_a", [1, 2, 3], [1, 2], [0]), "3 rows, 2 cols and 1 labels"),
        (lambda e: e.add("tile_a", -0.7, 2.9, label=1.9), "row must be a whole number, got -0.7"),
        (lambda e: e.add("tile_a", 1, 2, label=1.9), "label must be a whole number, got 1.9"),
        (lambda e: e.add("tile_a", float("nan"), 2, label=1), "row must be a whole number, got nan"),
        (lambda e: e.add("tile_a", 1, 2, label=float("nan")), "label must be a whole number, got nan"),
        (lambda e: e.add("tile_a", 1, 2, label=True), "label must be a whole number, got True"),
        (lambda e: e.add("tile_a", -1, 2, label=1), r"row -1, col 2 is outside image 'tile_a' \(120x100\)"),
        (lambda e: e.add("tile_a", 1, 2, label=-1), "label -1 is not a class"),
        (lambda e: e.add_many("tile_a", [4, 5, 4], [5, 5, 5], [1, 2, 3]), "row 4, col 5 twice in one change"),
        (lambda e: e.click("tile_a", 1.5, 2, 1), "row must be a whole number, got 1.5"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_saved(tmp_path: Path, change, message: str) -> None:
    path = tmp_path / "clicks.csv"
    editor = PointEditor(path, SHAPES)
    with pytest.raises(ValueError, match=message):
        change(editor)
    assert not path.exists() and editor.annotations == {} and not editor.can_undo


def test_whole_numbers_of_any_type_are_fine_and_a_round_is_never_negative(tmp_path: Path) -> None:
    editor = PointEditor(tmp_path / "clicks.csv", SHAPES)
    editor.add_many("tile_a", np.array([3.0, 4.0]), [np.int64(4), 5], np.array([2.0, 1.0], np.float32))
    assert _on_disk(tmp_path / "clicks.csv") == {"tile_a": {(3, 4, 2), (4, 5, 1)}}
    with pytest.raises(ValueError, match="labelling_round must be 0 or more, got -1"):
        PointEditor(tmp_path / "clicks.csv", SHAPES, labelling_round=-1)
