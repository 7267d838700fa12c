"""The real-tile check of scores from points (benchmarks/scores_from_points.py) on a tiny
generated set: the record it writes, resuming, and the table it puts in the README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks._common import table_markers
from benchmarks.scores_from_points import main, markdown_table
from lc_utils import layouts, point_files, settings
from lc_utils.point_editor import SIMULATED
from lc_utils.synthetic import make_sample_dataset


@pytest.mark.slow
def test_the_study_trains_from_simulated_clicks_and_scores_from_points_and_masks(tmp_path: Path) -> None:
    data = make_sample_dataset(tmp_path / "data", n_images=12, size=96, seed=0) / "train"
    out = tmp_path / "record.json"
    args = ["--data", str(data), "--points-per-tile", "20", "--crop", "48", "--epochs", "1",
            "--samples-per-epoch", "8", "--val-images", "3", "--repeats", "20",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    main([*args, "--seeds", "0"])
    record = json.loads(out.read_text())
    (row,) = record["runs"]
    images = sorted((tmp_path / "work" / "images").iterdir())
    assert [p.name for p in images] == [i.name for i, _ in layouts.find_pairs(data)]
    assert not any(p.name.endswith("_mask.png") for p in images)  # the masks are set aside
    clicks = point_files.load_annotations(tmp_path / "work" / "clicks_seed0.csv")
    assert {len(a) for a in clicks.values()} == {20} and set(clicks["0000"].sources) == {SIMULATED}
    assert row["val_images"] == 3 and row["train_images"] == 9
    assert row["held_out_points"] == 20 * 3  # every clicked point of the validation tiles
    assert row["point_miou_low"] <= row["point_miou"] <= row["point_miou_high"]
    assert 0 <= row["mask_miou"] <= 1 and [r["n_points"] for r in row["sampling"]][0] == 50
    assert out.with_suffix(".png").is_file() and record["command"].startswith("python -m benchmarks")
    main([*args, "--seeds", "0", "1"])  # seed 0 is kept, seed 1 added
    again = json.loads(out.read_text())
    assert [r["seed"] for r in again["runs"]] == [0, 1] and again["runs"][0] == row
    assert markdown_table(again).count("\n") == 3
    with pytest.raises(SystemExit, match="other settings"):
        main([*args[:-2], "--out", str(out), "--points-per-tile", "10"])



COMMITTED = settings.PROJECT_ROOT / "benchmarks" / "results" / "scores_from_points_deepglobe.json"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed real-tile record")
def test_the_committed_real_tile_record_is_complete_and_in_the_readme() -> None:
    """Three seeds, each scored from points and masks on the same tiles; the README's table is
    the one made from the record."""
    record = json.loads(COMMITTED.read_text())
    runs = record["runs"]
    assert sorted(row["seed"] for row in runs) == [0, 1, 2]
    for row in runs:
        assert row["held_out_points"] == record["points_per_tile"] * row["val_images"]
        assert row["train_points"] == record["points_per_tile"] * row["train_images"]
        inside = row["point_miou_low"] <= row["mask_miou"] <= row["point_miou_high"]
        assert row["mask_within_point_interval"] == inside
        assert [r["n_points"] for r in row["sampling"]] == sorted(r["n_points"] for r in row["sampling"])
    for key in ("command", "date", "machine", "settings"):
        assert record[key], key
    start, end = table_markers(COMMITTED.stem)
    assert f"{start}\n{markdown_table(record)}\n{end}" in (settings.PROJECT_ROOT / "README.md").read_text()
    assert COMMITTED.with_suffix(".png").is_file()
