"""The simulated person (lc_utils.simulated_person) and its study (benchmarks/simulated_person.py):
where each policy clicks, the rounds, and the record on tiny generated tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import generated_tiles

from benchmarks._common import table_markers
from benchmarks.simulated_person import FINE_TUNE, FOREST, LIVE, main, markdown_table
from lc_utils.classes import DEEPGLOBE
from lc_utils.run_spec import RunSpec
from lc_utils.simulated_person import next_click
from lc_utils.sparse import PointAnnotation

UNKNOWN = DEEPGLOBE.unknown_index
NONE = PointAnnotation([], [], [])


def test_largest_wrong_clicks_deep_inside_the_largest_wrong_region() -> None:
    truth = np.zeros((40, 40), np.uint8)
    prediction = truth.copy()
    prediction[2:6, 2:6] = 1  # a small wrong patch
    prediction[10:31, 10:31] = 2  # the largest, centred at (20, 20)
    row, col = next_click("largest-wrong", truth, prediction, NONE, np.random.default_rng(0))
    assert (row, col) == (20, 20) and prediction[row, col] != truth[row, col]


def test_no_policy_clicks_a_clicked_or_unknown_pixel() -> None:
    rng = np.random.default_rng(0)
    truth = np.full((8, 8), UNKNOWN, np.uint8)
    truth[:, :2] = 3  # 16 pixels of a known class
    prediction = np.zeros_like(truth)
    probs = np.full((7, 8, 8), 1 / 7, np.float32)
    for policy in ("random", "largest-wrong", "suggestions"):
        clicked = NONE
        for _ in range(16):
            row, col = next_click(policy, truth, prediction, clicked, rng, probs=probs, unknown_index=UNKNOWN)
            assert truth[row, col] == 3
            assert not ((clicked.rows == row) & (clicked.cols == col)).any()
            clicked = PointAnnotation([*clicked.rows, row], [*clicked.cols, col], [*clicked.labels, 3])
        with pytest.raises(ValueError, match="no pixel left"):
            next_click(policy, truth, prediction, clicked, rng, probs=probs, unknown_index=UNKNOWN)


def test_suggestions_click_the_least_sure_pixel() -> None:
    probs = np.zeros((7, 10, 10), np.float32)
    probs[0] = 1.0
    probs[:, 4, 7] = [0.5, 0.5, 0, 0, 0, 0, 0]  # a tie: the smallest margin
    truth = np.zeros((10, 10), np.uint8)
    assert next_click("suggestions", truth, truth, NONE, np.random.default_rng(0), probs=probs) == (4, 7)


@pytest.mark.slow
def test_the_study_scores_every_learner_on_the_same_clicks_and_resumes(tmp_path: Path) -> None:
    data = generated_tiles(tmp_path / "data")
    spec = RunSpec(data=str(data), val_images=4, strategy="uniform", points_per_mp=2000,
                   backbone="mobilenet_v3_large", weights=None, crop=48, batch_size=4, epochs=1,
                   samples_per_epoch=8, val_window=48, val_overlap=0.5, val_windows=0)
    like = tmp_path / "like.json"
    like.write_text(json.dumps({"spec": spec.to_dict()}))
    out = tmp_path / "person.json"
    args = ["--like", str(like), "--points-per-mp", "2000", "--clicked-tiles", "2",
            "--score-at", "0", "1", "3", "--fine-tune-at", "3", "--fine-tune-epochs", "1",
            "--policies", "largest-wrong", "random",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    main([*args, "--seeds", "0"])
    record = json.loads(out.read_text())
    runs = record["runs"]
    cells = {(r["policy"], r["learner"], r["clicks_per_tile"], r["tiles"]) for r in runs}
    for policy in ("largest-wrong", "random"):
        for tiles in ("clicked_tiles", "unseen_tiles"):
            assert {(policy, LIVE, c, tiles) for c in (0, 1, 3)} <= cells
            assert {(policy, FOREST, c, tiles) for c in (1, 3)} <= cells
            assert (policy, FOREST, 0, tiles) not in cells
            assert (policy, FINE_TUNE, 3, tiles) in cells and (policy, FINE_TUNE, 1, tiles) not in cells
    start = {r["policy"]: r["val_mean_iou"] for r in runs
             if r["clicks_per_tile"] == 0 and r["tiles"] == "clicked_tiles"}
    assert start["largest-wrong"] == start["random"]  # the same trained start for every policy
    clicked = [r for r in runs if r["tiles"] == "clicked_tiles"]
    assert {len(r["tile_confusions"]) for r in clicked} == {2}
    assert {len(r["tile_confusions"]) for r in runs if r["tiles"] == "unseen_tiles"} == {2}
    gaps = {(g["policy"], g["clicks_per_tile"], g["tiles"], g["method"]) for g in record["gaps"]}
    assert ("random", 3, "clicked_tiles", FINE_TUNE) in gaps and ("random", 1, "unseen_tiles", FOREST) in gaps
    assert out.with_suffix(".png").is_file() and "| largest-wrong | 3 |" in markdown_table(record)
    main([*args, "--seeds", "0", "1"])  # seed 0 kept, seed 1 added
    again = json.loads(out.read_text())
    assert again["runs"][:len(runs)] == runs and again["seeds"] == [0, 1]


COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "simulated_person_deepglobe.json"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed real-tile record")
def test_the_committed_real_tile_record_starts_from_the_teachers_and_is_in_the_readme() -> None:
    """Every policy on every seed so far; the clicked and unseen tiles are together the validation
    tiles of the self-training study's teacher it starts from, and every policy starts from the same
    map; the README's table is the one made from the record."""
    record = json.loads(COMMITTED.read_text())
    runs = record["runs"]
    policies = ("random", "largest-wrong", "suggestions")
    assert {(r["seed"], r["policy"]) for r in runs} == {(s, p) for s in record["seeds"] for p in policies}
    like = json.loads((COMMITTED.parent / record["like"]).read_text())
    teachers = {r["seed"]: r for r in like["runs"]
                if r["model"] == "teacher" and r["points_per_mp"] == record["points_per_mp"]}
    for seed in record["seeds"]:
        start = {r["tiles"]: r["tile_confusions"] for r in runs
                 if (r["seed"], r["policy"], r["clicks_per_tile"], r["learner"]) == (seed, "random", 0, LIVE)}
        tiles = set(start["clicked_tiles"]) | set(start["unseen_tiles"])
        assert tiles == set(teachers[seed]["tile_confusions"])
        assert not set(start["clicked_tiles"]) & set(start["unseen_tiles"])
        starts = [r["tile_confusions"] for r in runs if (r["seed"], r["clicks_per_tile"]) == (seed, 0)]
        assert len(starts) == 6 and all(m in (start["clicked_tiles"], start["unseen_tiles"]) for m in starts)
    start, end = table_markers(COMMITTED.stem)
    assert f"{start}\n{markdown_table(record)}\n{end}" in (COMMITTED.parents[2] / "README.md").read_text()
    assert COMMITTED.with_suffix(".png").is_file()
