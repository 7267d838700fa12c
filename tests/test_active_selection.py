"""The active-selection study (benchmarks/active_selection.py) on a tiny generated set: its
record, the gaps to random picks on the same seed, resuming, and the README's table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import generated_tiles

from benchmarks._common import table_markers
from benchmarks.active_selection import main, markdown_table, readme_text
from lc_utils import settings
from lc_utils.active import summarize_rounds
from lc_utils.synthetic import make_sample_dataset


@pytest.mark.slow
def test_the_study_compares_each_round_with_random_picks_on_the_same_seed(tmp_path: Path) -> None:
    data = make_sample_dataset(tmp_path / "data", n_images=10, size=96, seed=0) / "train"
    out = tmp_path / "active.json"
    args = ["--data", str(data), "--budgets", "3", "6", "--min-distance", "4", "--epochs", "1",
            "--fine-tune-epochs", "1", "--samples-per-epoch", "4", "--crop", "48", "--val-images", "3",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    main([*args, "--seeds", "0"])
    main([*args, "--seeds", "0", "1"])  # seed 0 kept, seed 1 added
    record = json.loads(out.read_text())
    assert len(record["rounds"]) == 2 * 2 * 2 and record["seeds"] == [0, 1]
    summary = {(row["selection"], row["round"]): row for row in record["summary"]}
    rounds = {(r["selection"], r["seed"], r["round"]): r["val_mean_iou"] for r in record["rounds"]}
    gap = [rounds[("margin", seed, 1)] - rounds[("random", seed, 1)] for seed in (0, 1)]
    assert summary[("margin", 1)]["gap_to_random_mean"] == pytest.approx(sum(gap) / 2)
    assert summary[("random", 1)]["gap_to_random_mean"] == 0
    # round 0 is the same for both selections: the same first points, the same model
    assert rounds[("margin", 0, 0)] == rounds[("random", 0, 0)]
    table = markdown_table(record)
    assert table.count("\n") == 3 and "margin minus random, same seed" in table
    # the picks of round 1, each selection on each seed, described against round 0's model
    picks = pd.DataFrame(record["picks"])
    assert sorted(zip(picks["selection"], picks["seed"], picks["round"])) == [
        ("margin", 0, 1), ("margin", 1, 1), ("random", 0, 1), ("random", 1, 1)]
    assert (picks["points"] == 3 * record["train_images"]).all()
    assert picks[["model_wrong", "near_edge"]].apply(lambda share: share.between(0, 1)).all().all()
    class_shares = picks.drop(columns=["selection", "seed", "round", "points_per_image", "points",
                                       "model_wrong", "near_edge"])
    np.testing.assert_allclose(class_shares.sum(axis=1), 1.0)
    assert "the last model wrong there" in readme_text(record)
    assert out.with_suffix(".png").is_file()
    with pytest.raises(SystemExit, match="other settings"):
        main([*args[:3], "4", "8", *args[5:]])


@pytest.mark.slow
def test_the_study_runs_the_new_selections_retrained_with_tile_intervals(tmp_path: Path) -> None:
    out = tmp_path / "protocols.json"
    data = generated_tiles(tmp_path / "data", n_images=10)
    args = ["--data", str(data), "--budgets", "4", "6", "--min-distance", "4", "--epochs", "1",
            "--samples-per-epoch", "4", "--crop", "48", "--val-images", "3", "--seeds", "0",
            "--selections", "random", "pixelpick", "class-balanced", "--top-share", "0.1",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    main([*args, "--retrain"])
    record = json.loads(out.read_text())
    assert record["retrain"] is True and record["fine_tune_epochs"] is None and record["top_share"] == 0.1
    rounds = pd.DataFrame(record["rounds"])
    assert sorted(set(rounds["selection"])) == ["class-balanced", "pixelpick", "random"]
    assert rounds["retrain"].all() and rounds["steps"].nunique() == 1  # every round the whole schedule
    assert all(len(tiles) == record["val_images"] for tiles in rounds["tile_confusions"])
    gaps = {(g["selection"], g["round"]): g for g in record["gaps"]}
    assert set(gaps) == {(s, r) for s in ("pixelpick", "class-balanced") for r in (0, 1)}
    summary = {(row["selection"], row["round"]): row for row in record["summary"]}
    for key, gap in gaps.items():
        assert gap["gap"] == pytest.approx(summary[key]["gap_to_random_mean"])  # the same gap, now with
        assert gap["low"] <= gap["gap"] <= gap["high"] and gap["seeds"] == [0]  # its tile interval
    picks = pd.DataFrame(record["picks"])
    assert (picks["points"] == 2 * record["train_images"]).all()  # exactly k new points per tile
    table = markdown_table(record)
    assert "pixelpick minus random: 90% interval over 3 tiles, seeds pooled" in table
    assert table.count("\n") == 3
    with pytest.raises(SystemExit, match="other settings"):
        main(args)  # the record was retrained: fine-tuned rounds do not join it
    with pytest.raises(SystemExit):
        main([*args, "--retrain", "--fine-tune-epochs", "2"])


COMMITTED = settings.PROJECT_ROOT / "benchmarks" / "results" / "active_deepglobe.json"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed real-tile record")
def test_the_committed_real_tile_record_is_complete_and_in_the_readme() -> None:
    """Every selection ran every round on three seeds or more, the summary is what the rounds say,
    and the README's table is the one made from the record."""
    record = json.loads(COMMITTED.read_text())
    rounds = pd.DataFrame(record["rounds"])
    assert set(record["seeds"]) == set(rounds["seed"]) and len(record["seeds"]) >= 3
    per_run = rounds.groupby(["selection", "seed"])["points_per_image"].apply(list)
    assert all(budgets == record["budgets"] for budgets in per_run)
    assert "random" in set(rounds["selection"])
    assert len(per_run) == len(record["seeds"]) * rounds["selection"].nunique()
    picks = pd.DataFrame(record["picks"])  # every later round of every run described
    assert len(picks.groupby(["selection", "seed", "round"])) == len(per_run) * (len(record["budgets"]) - 1)
    kept = pd.DataFrame(record["summary"])  # a record from before the steps were summarised lacks them
    pd.testing.assert_frame_equal(summarize_rounds(rounds)[kept.columns], kept, check_dtype=False)
    for key in ("command", "date", "machine", "settings"):
        assert record[key], key
    start, end = table_markers(COMMITTED.stem)
    assert f"{start}\n{readme_text(record)}\n{end}" in (settings.PROJECT_ROOT / "README.md").read_text()
    assert COMMITTED.with_suffix(".png").is_file()
