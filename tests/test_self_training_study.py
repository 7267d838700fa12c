"""The self-training study (benchmarks/self_training.py) on a tiny generated set: a teacher per
density and seed, the two arms from its checkpoint, per-tile scores and paired gaps, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import generated_tiles

from benchmarks._common import table_markers
from benchmarks.self_training import gaps, main, readme_table


@pytest.mark.slow
def test_the_study_trains_a_teacher_then_both_arms_and_records_paired_gaps(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    data = generated_tiles(tmp_path / "data")
    args = ["--data", str(data), "--points-per-mp", "2000", "--crop", "48", "--samples-per-epoch", "16",
            "--epochs", "1", "--extra-epochs", "1", "--val-images", "3", "--pseudo-threshold", "0.3",
            "--consistency-at", "2000", "--work", str(tmp_path / "work"), "--out", str(out)]
    main([*args, "--seeds", "0"])
    record = json.loads(out.read_text())
    assert [r["model"] for r in record["runs"]] == ["teacher", "points", "pseudo-labels", "consistency"]
    teacher, control, student, consistency = record["runs"]
    assert consistency["consistency"]["weight"] == 1.0 and consistency["steps"] == control["steps"]
    tiles = [set(run["tile_confusions"]) for run in (teacher, control, student)]
    assert tiles[0] == tiles[1] == tiles[2]
    assert len(teacher["tile_confusions"]) == 3  # every validation tile, one matrix each
    assert control["steps"] == student["steps"] == 2  # equal extra compute
    assert student["trained_fraction"] > control["trained_fraction"]  # the pseudo-labels add pixels
    assert {"precision", "coverage"} <= set(student["pseudo_labels"]["all"])
    (gap, *_) = [g for g in record["gaps"] if g["method"] == "pseudo-labels"]
    assert gap["low"] <= gap["gap"] <= gap["high"] and gap["n_tiles"] == 3
    assert gap["gap"] == pytest.approx(student["val_mean_iou"] - control["val_mean_iou"])
    assert (tmp_path / "work" / "teacher_2000permp_seed0" / "last.pt").is_file()
    assert out.with_suffix(".png").is_file() and record["command"].startswith("python -m benchmarks")
    main([*args, "--seeds", "0", "1"])  # seed 0 kept, seed 1 added
    again = json.loads(out.read_text())
    assert again["runs"][:4] == record["runs"] and len(again["runs"]) == 8
    assert len(gaps(again)[0]["per_seed"]) == 2 and readme_table(again).count("\n") == 5
    with pytest.raises(SystemExit, match="other settings"):
        main([*args, "--seeds", "0", "1", "--color-jitter", "0.1"])


COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "self_training_deepglobe.json"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed real-tile record")
def test_the_committed_real_tile_record_is_complete_and_in_the_readme() -> None:
    """Every density has its teacher and both arms on three seeds, the gaps are what its runs say,
    and the README's table is the one made from the record."""
    record = json.loads(COMMITTED.read_text())
    runs = {(row["points_per_mp"], row["model"], row["seed"]) for row in record["runs"]}
    densities = {density for density, _, _ in runs}
    assert len(record["seeds"]) >= 3 and len(densities) >= 2  # model strength as an axis
    for density in densities:
        for model in ("teacher", "points", "pseudo-labels"):
            assert {(density, model, seed) for seed in record["seeds"]} <= runs, (density, model)
    assert record["gaps"] == gaps(record)
    for key in ("command", "date", "machine", "spec"):
        assert record[key], key
    start, end = table_markers(COMMITTED.stem)
    assert f"{start}\n{readme_table(record)}\n{end}" in (COMMITTED.parents[2] / "README.md").read_text()
    assert COMMITTED.with_suffix(".png").is_file()
