"""The active-selection study (benchmarks/active_selection.py) on a tiny generated set: its
record, the gaps to random picks on the same seed, resuming, and the README's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.active_selection import main, markdown_table
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
    assert out.with_suffix(".png").is_file()
    with pytest.raises(SystemExit, match="other settings"):
        main([*args[:3], "4", "8", *args[5:]])
