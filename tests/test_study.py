import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.label_density import RESULTS, markdown_table, table_markers, update_readme
from lc_utils import study
from lc_utils.classes import DEEPGLOBE
from lc_utils.datasets import DenseLandCoverDataset, WindowDataset, find_pairs, read_pair
from lc_utils.settings import PROJECT_ROOT
from lc_utils.study import (
    DENSE,
    PRIOR_CORRECTED,
    StudySettings,
    majority_baseline,
    read_results_file,
    results_filename,
    run_density_study,
    summarize,
)


@pytest.mark.slow
def test_density_study_runs_every_setting_and_seed_with_the_same_steps(sample_root: Path,
                                                                        tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)
    settings = StudySettings(backbone="mobilenet_v3_large", weights=None, crop_size=48, batch_size=2,
                             epochs=1, tile_size=96)
    kwargs = dict(strategies=("uniform", PRIOR_CORRECTED), seeds=(0, 1), settings=settings,
                  annotation_dir=tmp_path / "points", results_file=tmp_path / "runs.json", progress=False)
    results = run_density_study(pairs[:4], pairs[4:6], [5, 50], **kwargs)
    assert len(results) == 2 * (2 * 2 + 1)
    planned = [(s, n, seed) for s in ("uniform", PRIOR_CORRECTED) for n in (5, 50) for seed in (0, 1)]
    keys = results[["strategy", "points_per_image", "seed"]].fillna(-1).values.tolist()
    assert sorted(map(tuple, keys)) == sorted([*planned, (DENSE, -1, 0), (DENSE, -1, 1)])
    assert results["steps"].nunique() == 1 and results["steps"].iloc[0] == 2
    sparse = results[results.strategy != DENSE]
    assert np.allclose(sparse["labelled_fraction"], sparse["points_per_image"] / 96**2)
    assert results["val_mean_iou"].between(0, 1).all()
    assert results["weights_used"].isna().all()  # weights=None: every run started from random weights
    assert set(results["val_iou"].iloc[0]) == {"urban", "agriculture", "rangeland", "forest", "water",
                                                "barren", "unknown"}
    # Seeds draw other points; the prior-corrected rows reuse the stratified annotation files.
    made = sorted(p.name for p in (tmp_path / "points").iterdir())
    assert made == sorted(f"points_{s}_n{n}_seed{seed}.csv"
                          for s in ("uniform", "stratified") for n in (5, 50) for seed in (0, 1))
    # Every finished run is in the results file at once; a second call trains only what is missing.
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert len(saved["runs"]) == len(results)
    saved["runs"] = saved["runs"][1:]
    (tmp_path / "runs.json").write_text(json.dumps(saved))
    again = run_density_study(pairs[:4], pairs[4:6], [5, 50], **kwargs)
    columns = ["strategy", "points_per_image", "seed", "labelled_fraction", "val_mean_iou"]
    pd.testing.assert_frame_equal(again[columns], results[columns])
    assert (again["train_seconds"].iloc[1:] == results["train_seconds"].iloc[1:]).all()
    summary = summarize(results)
    assert list(summary["strategy"]) == ["uniform", "uniform", PRIOR_CORRECTED, PRIOR_CORRECTED, DENSE]
    assert (summary["runs"] == 2).all()
    assert summary.loc[summary.strategy == DENSE, "miou_vs_dense"].iloc[0] == pytest.approx(1.0)


def test_density_budgets_follow_the_image_area(sample_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Budgets in points per megapixel: per-image counts from the area, rows and resume keyed by density."""
    trained = []

    def fake_train_once(train_pairs, val_pairs, settings, seed, annotations, adjustment, schema):
        trained.append((seed, None if annotations is None else sum(map(len, annotations.values()))))
        return {"val_mean_iou": 0.5, "val_pixel_accuracy": 0.5, "steps": 1, "train_seconds": 0.0}

    monkeypatch.setattr(study, "train_once", fake_train_once)
    pairs = find_pairs(sample_root)  # 96 x 96 images: 0.009216 megapixels
    kwargs = dict(points_per_mp=[1000, 5000], strategies=("uniform",), seeds=(0,), annotation_dir=tmp_path,
                  results_file=tmp_path / "runs.json", progress=False)
    results = run_density_study(pairs[:4], pairs[4:6], **kwargs)
    assert results["points_per_mp"].tolist()[:2] == [1000, 5000]
    assert results["points_per_image"].tolist()[:2] == [9, 46]
    assert np.allclose(results["labelled_fraction"].iloc[:2], [9 / 96**2, 46 / 96**2])
    assert trained == [(0, 36), (0, 184), (0, None)]
    assert (tmp_path / "points_uniform_1000permp_seed0.csv").is_file()
    assert len(run_density_study(pairs[:4], pairs[4:6], **kwargs)) == 3 and len(trained) == 3  # all saved
    assert list(summarize(results)["points_per_image"].astype(float).fillna(-1)) == [9, 46, -1]


def test_summary_mean_sd_and_ratio() -> None:
    runs = pd.DataFrame({"strategy": ["uniform"] * 3 + [DENSE] * 3, "points_per_image": [10] * 3 + [None] * 3,
                         "seed": [0, 1, 2] * 2, "labelled_fraction": [0.01] * 3 + [1.0] * 3,
                         "val_mean_iou": [0.2, 0.3, 0.4, 0.5, 0.5, 0.5], "val_pixel_accuracy": [0.5] * 6})
    summary = summarize(runs).set_index("strategy")
    assert summary.loc["uniform", "miou_mean"] == pytest.approx(0.3)
    assert summary.loc["uniform", "miou_sd"] == pytest.approx(0.1)  # sample sd over the 3 seeds
    assert summary.loc["uniform", "miou_vs_dense"] == pytest.approx(0.6)
    assert summary.loc[DENSE, "miou_sd"] == 0


RECORDS = sorted(RESULTS.parent.glob("label_density_*.json"))


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_committed_study_records_are_complete_and_in_the_readme(path: Path) -> None:
    """A committed record holds every run (each setting once per seed, three seeds or more), its
    summary is what its runs say, and the README's table is the one made from it."""
    record = json.loads(path.read_text())
    runs = pd.DataFrame(record["runs"])
    assert set(record["seeds"]) == set(runs["seed"]) and len(record["seeds"]) >= 3
    per_setting = runs.groupby(["strategy", runs["points_per_image"].fillna(-1)]).size()
    assert (per_setting == len(record["seeds"])).all()
    assert runs[["strategy", "seed", "val_mean_iou", "steps"]].notna().all().all()
    assert runs["steps"].nunique() == 1
    summary = summarize(runs)
    recorded = pd.DataFrame(record["summary"])
    assert list(recorded["strategy"]) == list(summary["strategy"])
    np.testing.assert_allclose(recorded["miou_mean"], summary["miou_mean"])
    np.testing.assert_allclose(recorded["miou_sd"], summary["miou_sd"])
    for key in ("command", "date", "machine", "settings", "majority_baseline"):
        assert record[key], key
    start, end = table_markers(path.stem)
    assert f"{start}\n{markdown_table(record)}\n{end}" in (PROJECT_ROOT / "README.md").read_text()
    assert path.with_suffix(".png").is_file()


def test_readme_table_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    runs = pd.DataFrame({"strategy": ["uniform"] * 3 + [DENSE] * 3,
                         "points_per_image": [262] * 3 + [None] * 3, "seed": [0, 1, 2] * 2,
                         "labelled_fraction": [0.001] * 3 + [1.0] * 3,
                         "val_mean_iou": [0.3, 0.35, 0.4, 0.5, 0.52, 0.54], "val_pixel_accuracy": [0.7] * 6})
    record = {"summary": json.loads(summarize(runs).to_json(orient="records")),
              "majority_baseline": {"class": "agriculture", "mean_iou": 0.09, "pixel_accuracy": 0.6}}
    start, end = table_markers("study")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{start}\nold table\n{end}\noutro\n")
    update_readme(record, "study", readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old table" not in text
    assert "| uniform, 262 points per image | 0.10% | 0.350 ± 0.050 | 0.67 | 0.700 |" in text
    assert "| dense masks | 100.00% | 0.520 ± 0.020 | 1.00 | 0.700 |" in text
    assert "| majority class (agriculture) everywhere | | 0.090 | | 0.600 |" in text
    with pytest.raises(SystemExit, match="markers"):
        update_readme(record, "another", readme)


def test_a_results_file_of_another_study_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    ours = {"settings": asdict(StudySettings(epochs=5)), "train": ["a"], "val": ["b"]}
    path.write_text(json.dumps({"key": ours, "runs": [{"strategy": DENSE}]}))
    assert read_results_file(path, ours) == [{"strategy": DENSE}]
    with pytest.raises(ValueError, match="other settings epochs"):
        read_results_file(path, {**ours, "settings": asdict(StudySettings(epochs=6))})
    with pytest.raises(ValueError, match="other images"):
        read_results_file(path, {**ours, "val": ["c"]})
    older = {**ours, "settings": {k: v for k, v in ours["settings"].items() if k != "samples_per_epoch"}}
    path.write_text(json.dumps({"key": older, "runs": [{"strategy": DENSE}]}))
    assert read_results_file(path, ours) == [{"strategy": DENSE}]  # made before that setting existed
    assert results_filename(StudySettings(epochs=5)) != results_filename(StudySettings(epochs=6))
    assert results_filename(StudySettings(epochs=5)) == results_filename(StudySettings(epochs=5))


def test_majority_baseline_on_pairs_and_on_windows(sample_root: Path) -> None:
    pairs = find_pairs(sample_root)
    train, val = pairs[:6], pairs[6:]
    whole = majority_baseline(train, val)
    maps = [read_pair(*pair)[1] for pair in val]
    majority_index = DEEPGLOBE.names.index(whole["class"])
    share = sum((m == majority_index).sum() for m in maps) / sum(m.size for m in maps)
    assert whole["pixel_accuracy"] == pytest.approx(share)
    dense = DenseLandCoverDataset(val)
    assert majority_baseline(train, WindowDataset(dense, size=96)) == whole  # windows of whole images
    corner = WindowDataset(dense, size=40, count=1, seed=0)
    index, top, left = corner.windows[0]
    window = maps[index][top:top + 40, left:left + 40]
    expected = (window == majority_index).mean()
    assert majority_baseline(train, corner)["pixel_accuracy"] == pytest.approx(expected)
