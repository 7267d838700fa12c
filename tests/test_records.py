"""Study records read back as tables (lc_utils.records): the numbers come from the runs, the gaps
from the tiles, on records whose answer is known; and the committed self-training record read
the same way."""

from __future__ import annotations

import numpy as np
import pytest

from lc_utils import records
from lc_utils.classes import ClassSchema
from lc_utils.settings import PROJECT_ROOT

CLASSES = ["a", "b", "unknown"]


def _tiles(right: list[int], wrong: list[int]) -> dict[str, list[list[int]]]:
    """Tiles of classes a and b, ``right[t]`` pixels of each class right and ``wrong[t]`` of each
    taken for the other, on tile t."""
    return {f"t{t}": [[r, w, 0], [w, r, 0], [0, 0, 0]] for t, (r, w) in enumerate(zip(right, wrong))}


def _run(model: str, seed: int, tiles: dict[str, list[list[int]]], **fields: object) -> dict[str, object]:
    return {"points_per_mp": 100.0, "seed": seed, "model": model, "steps": 10, "tile_confusions": tiles,
            **records.scores_from_tiles(tiles, _schema()), **fields}


def _schema() -> ClassSchema:
    return ClassSchema(names=tuple(CLASSES), colors=((0, 0, 0), (255, 255, 255), (9, 9, 9)), unknown_index=2)


def test_scores_come_from_the_summed_tiles() -> None:
    scores = records.scores_from_tiles(_tiles([9, 1], [1, 9]), _schema())
    assert scores["val_pixel_accuracy"] == pytest.approx(0.5)
    assert scores["val_iou"]["a"] == pytest.approx(10 / 30)
    assert scores["val_mean_iou"] == pytest.approx(10 / 30)


def test_a_method_as_good_as_its_control_has_a_zero_gap_and_one_better_on_every_tile_is_measurable() -> None:
    base, better = _tiles([8, 7, 6, 9], [2, 3, 4, 1]), _tiles([10, 9, 9, 10], [0, 1, 1, 0])
    runs = [_run("teacher", 0, base, points_per_image=3, labelled_fraction=1e-4),
            _run("points", 0, base, trained_fraction=1e-4),
            _run("pseudo-labels", 0, better, trained_fraction=0.3)]
    gaps = {g["method"]: g for g in records.gaps_against(runs, records.SELF_TRAINING_CONTROLS, name="model",
                                                        classes=CLASSES, group="points_per_mp")}
    same, gain = gaps["points"], gaps["pseudo-labels"]
    assert (same["gap"], same["low"], same["high"], same["measurable"]) == (0, 0, 0, False)
    assert gain["measurable"] and 0 < gain["low"] <= gain["gap"] <= gain["high"]
    assert gain["gap"] == pytest.approx(runs[2]["val_mean_iou"] - runs[1]["val_mean_iou"])
    assert records.describe_gap(same) == "+0.000 (90% interval +0.000 to +0.000): not measurable on 4 tiles"
    table = records.gap_table(list(gaps.values()))
    assert table.loc[("pseudo-labels", "points"), "verdict"] == "measurable on 4 tiles"
    assert table.loc[("points", "teacher"), "per seed"] == "+0.000"


def test_the_self_training_summary_counts_the_teachers_steps_and_pixels() -> None:
    base = _tiles([8, 7], [2, 3])
    runs = [_run("teacher", seed, base, points_per_image=3, labelled_fraction=1e-4, steps=1200)
            for seed in (0, 1)]
    runs += [_run("points", seed, base, trained_fraction=1e-4, steps=600) for seed in (0, 1)]
    summary = records.self_training_summary({"runs": runs}).set_index("model")
    assert summary.loc["teacher", "total_steps"] == 1200 and summary.loc["points", "total_steps"] == 1800
    assert summary.loc["points", "labelled_fraction"] == 1e-4 and summary.loc["points", "runs"] == 2
    assert summary.loc["teacher", "miou_sd"] == 0 and list(summary.index) == ["teacher", "points"]


def test_the_committed_self_training_record_reads_back_with_its_own_gaps() -> None:
    record = records.load(PROJECT_ROOT / "benchmarks" / "results" / "self_training_deepglobe.json")
    again = records.gaps_against(record["runs"], records.SELF_TRAINING_CONTROLS, name="model",
                                 classes=record["classes"], group="points_per_mp")
    assert [(g["method"], g["gap"], g["low"]) for g in again] == [
        (g["method"], g["gap"], g["low"]) for g in record["gaps"]]
    quality = records.pseudo_label_table(record)
    assert ((quality["precision"] >= 0) & (quality["precision"] <= 1)).all()
    assert np.isfinite(records.self_training_summary(record)["miou_mean"]).all()
    per_class = records.self_training_per_class(record)
    models = list(records.SELF_TRAINING_MODELS)
    assert list(per_class.index) == sorted(per_class.index, key=lambda key: (key[0], models.index(key[1])))
    assert "unknown" not in per_class
    with pytest.raises(FileNotFoundError, match="no study record"):
        records.load(PROJECT_ROOT / "benchmarks" / "results" / "nothing.json")
