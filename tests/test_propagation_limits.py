"""The propagation-limits study (benchmarks/propagation_limits.py) on a tiny generated set: its two
label sets, the study's own rows beside them, resuming, and the README's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.label_density import main as density_main
from benchmarks.propagation_limits import CLEAN, MAJORITY, main, markdown_table
from lc_utils.synthetic import make_sample_dataset


@pytest.mark.slow
def test_the_label_sets_train_beside_the_study_they_explain(tmp_path: Path) -> None:
    data = make_sample_dataset(tmp_path / "data", n_images=10, size=96, seed=0) / "train"
    like = tmp_path / "study.json"
    tiny = ["--data", str(data), "--points-per-mp", "2000", "--superpixel-area", "64", "--epochs", "2",
            "--samples-per-epoch", "4", "--crop", "48", "--val-images", "3", "--val-window", "48",
            "--weights", "none"]
    density_main([*tiny, "--strategies", "uniform", "uniform+propagation", "--seeds", "0", "1",
                  "--out", str(like)])
    out = tmp_path / "limits.json"
    args = ["--like", str(like), "--points-per-mp", "2000", "--out", str(out)]
    main([*args, "--seeds", "0"])
    main([*args, "--seeds", "0", "1"])  # seed 0 kept, seed 1 added
    record = json.loads(out.read_text())
    runs = {(row["strategy"], row["seed"]): row for row in record["runs"]}
    assert set(runs) == {(name, seed) for name in (CLEAN, MAJORITY) for seed in (0, 1)}
    study = {(row["strategy"], row["seed"]): row for row in json.loads(like.read_text())["runs"]}
    for seed in (0, 1):
        clean, majority = runs[(CLEAN, seed)], runs[(MAJORITY, seed)]
        assert clean["label_precision"] == 1.0
        # the same blobs less their wrong pixels; every superpixel labelled, nearly all correctly
        propagated = study[("uniform+propagation", seed)]["trained_fraction"]
        assert clean["trained_fraction"] <= propagated < majority["trained_fraction"]
        assert majority["trained_fraction"] > 0.95 and majority["label_precision"] > 0.7
        assert clean["steps"] == study[("uniform", seed)]["steps"]
    assert {(row["strategy"], row["seed"]) for row in record["references"]} == {
        (name, seed) for name in ("uniform", "uniform+propagation", "dense") for seed in (0, 1)}
    table = markdown_table(record)
    assert table.count("\n") == 6 and f"| {MAJORITY} |" in table
    assert out.with_suffix(".png").is_file() and record["command"] and record["seeds"] == [0, 1]
