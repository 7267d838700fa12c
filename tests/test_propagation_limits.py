"""The propagation-limits study (benchmarks/propagation_limits.py) on tiny generated tiles: its label
sets beside the self-training study's teachers, per-tile scores and paired gaps, resuming, and the
README's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import generated_tiles

from benchmarks._common import table_markers
from benchmarks.propagation_limits import (
    CLEAN,
    LABEL_SETS,
    MAJORITY,
    PROPAGATED,
    gaps,
    main,
    markdown_table,
    summary_rows,
)
from benchmarks.self_training import main as self_training_main
from lc_utils import records


@pytest.mark.slow
def test_the_label_sets_train_beside_the_teachers_they_are_measured_against(tmp_path: Path) -> None:
    data = generated_tiles(tmp_path / "data")
    like = tmp_path / "self_training.json"
    self_training_main(["--data", str(data), "--points-per-mp", "2000", "--crop", "48", "--samples-per-epoch",
                        "16", "--epochs", "1", "--extra-epochs", "1", "--val-images", "3", "--consistency-at",
                        "--seeds", "0", "1", "--work", str(tmp_path / "work"), "--out", str(like)])
    out = tmp_path / "limits.json"
    args = ["--like", str(like), "--points-per-mp", "2000", "--superpixel-area", "64", "--out", str(out)]
    main([*args, "--seeds", "0"])
    first = json.loads(out.read_text())
    main([*args, "--seeds", "0", "1"])  # seed 0 kept, seed 1 added
    record = json.loads(out.read_text())
    assert record["runs"][:len(LABEL_SETS)] == first["runs"]
    runs = {(row["strategy"], row["seed"]): row for row in record["runs"]}
    assert set(runs) == {(name, seed) for name in LABEL_SETS for seed in (0, 1)}
    teachers = {row["seed"]: row for row in json.loads(like.read_text())["runs"] if row["model"] == "teacher"}
    for seed in (0, 1):
        clean, majority, propagated = runs[(CLEAN, seed)], runs[(MAJORITY, seed)], runs[(PROPAGATED, seed)]
        assert clean["label_precision"] == 1.0 and runs[("dense", seed)]["label_precision"] == 1.0
        # the same blobs less their wrong pixels; every superpixel labelled, nearly all correctly
        assert clean["trained_fraction"] <= propagated["trained_fraction"] < majority["trained_fraction"]
        assert majority["trained_fraction"] > 0.95 and majority["label_precision"] > 0.7
        assert propagated["labelled_fraction"] == teachers[seed]["labelled_fraction"]  # the teacher's points
        assert {row["steps"] for row in (clean, majority, propagated)} == {teachers[seed]["steps"]}
        assert set(clean["tile_confusions"]) == set(teachers[seed]["tile_confusions"])
    references = [(row["strategy"], row["seed"]) for row in record["references"]]
    assert references == [("uniform", 0), ("uniform", 1)]
    by_method = {g["method"]: g for g in record["gaps"]}
    assert {name: g["control"] for name, g in by_method.items()} == records.LIMITS_CONTROLS
    for name, gap in by_method.items():
        control = {row["seed"]: row for row in [*record["references"], *record["runs"]]
                   if row["strategy"] == gap["control"]}
        assert gap["seeds"] == [0, 1] and gap["n_tiles"] == 3 and gap["low"] <= gap["gap"] <= gap["high"]
        assert gap["gap"] == pytest.approx(sum(runs[(name, s)]["val_mean_iou"] - control[s]["val_mean_iou"]
                                               for s in (0, 1)) / 2)
    table = markdown_table(record)
    assert table.count("\n") == 6 and f"| {MAJORITY} |" in table and "measurable on 3 tiles" in table
    assert out.with_suffix(".png").is_file() and record["command"] and record["seeds"] == [0, 1]


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
COMMITTED = RESULTS / "propagation_limits_deepglobe.json"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed real-tile record")
def test_the_committed_real_tile_record_is_complete_and_in_the_readme() -> None:
    """Every label set ran on every seed of the teachers it is measured against, the gaps are what
    its runs say, and the README's table is the one made from the record."""
    record = json.loads(COMMITTED.read_text())
    runs = {(row["strategy"], row["seed"]) for row in record["runs"]}
    assert len(record["seeds"]) >= 3
    assert runs == {(name, seed) for name in LABEL_SETS for seed in record["seeds"]}
    assert {row["seed"] for row in record["references"]} == set(record["seeds"])
    assert record["gaps"] == gaps(record) and record["summary"] == summary_rows(record)
    for key in ("command", "date", "machine", "settings"):
        assert record[key], key
    start, end = table_markers(COMMITTED.stem)
    assert f"{start}\n{markdown_table(record)}\n{end}" in (COMMITTED.parents[2] / "README.md").read_text()
    assert COMMITTED.with_suffix(".png").is_file()
