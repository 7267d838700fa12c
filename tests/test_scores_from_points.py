"""The real-tile check of scores from points (benchmarks/scores_from_points.py) on a tiny
generated set: the record it writes, resuming, and the table it puts in the README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.scores_from_points import main, markdown_table, points_needed
from lc_utils import layouts, sparse
from lc_utils.point_editor import SIMULATED
from lc_utils.synthetic import make_sample_dataset


@pytest.mark.slow
def test_the_study_trains_from_simulated_clicks_and_scores_from_points_and_masks(tmp_path: Path) -> None:
    data = make_sample_dataset(tmp_path / "data", n_images=12, size=96, seed=0) / "train"
    out = tmp_path / "record.json"
    args = ["--data", str(data), "--points-per-tile", "20", "--crop", "48", "--epochs", "1",
            "--samples-per-epoch", "8", "--repeats", "20", "--work", str(tmp_path / "work"),
            "--out", str(out)]
    main([*args, "--seeds", "0"])
    record = json.loads(out.read_text())
    (row,) = record["runs"]
    images = sorted((tmp_path / "work" / "images").iterdir())
    assert [p.name for p in images] == [i.name for i, _ in layouts.find_pairs(data)]
    assert not any(p.name.endswith("_mask.png") for p in images)  # the masks are set aside
    clicks = sparse.load_annotations(tmp_path / "work" / "clicks_seed0.csv")
    assert {len(a) for a in clicks.values()} == {20} and set(clicks["0000"].sources) == {SIMULATED}
    assert row["held_out_points"] == 20 * row["val_images"]  # every clicked point of the validation tiles
    assert row["point_miou_low"] <= row["point_miou"] <= row["point_miou_high"]
    assert 0 <= row["mask_miou"] <= 1 and [r["n_points"] for r in row["sampling"]][0] == 50
    assert out.with_suffix(".png").is_file() and record["command"].startswith("python -m benchmarks")
    main([*args, "--seeds", "0", "1"])  # seed 0 is kept, seed 1 added
    again = json.loads(out.read_text())
    assert [r["seed"] for r in again["runs"]] == [0, 1] and again["runs"][0] == row
    assert markdown_table(again).count("\n") == 3
    with pytest.raises(SystemExit, match="other settings"):
        main([*args[:-2], "--out", str(out), "--points-per-tile", "10"])


def test_points_needed_is_the_fewest_that_stay_within_the_tolerance() -> None:
    sampling = [{"n_points": 50, "within": 0.6}, {"n_points": 400, "within": 0.96},
                {"n_points": 800, "within": 1}]
    assert points_needed(sampling) == 400 and points_needed(sampling, share=0.99) == 800
    assert points_needed(sampling[:1]) is None
