import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks._common import record_text, table_markers
from benchmarks.label_density import RESULTS, draw_figure, markdown_table, update_readme
from lc_utils import study
from lc_utils.classes import DEEPGLOBE
from lc_utils.datasets import DenseLandCoverDataset, read_pair
from lc_utils.layouts import find_pairs
from lc_utils.metrics import majority_baseline
from lc_utils.run_spec import DENSE, RunSpec
from lc_utils.settings import PROJECT_ROOT
from lc_utils.study import (
    PRIOR_CORRECTED,
    read_results_file,
    results_filename,
    run_label_study,
    study_key,
    summarize,
)
from lc_utils.windows import WindowDataset


def _study_spec(root: Path, **changes) -> RunSpec:
    """A tiny study on the 8 generated 96 x 96 images: 6 to train on, 2 scored whole."""
    return RunSpec(**{"data": str(root), "val_images": 2, "backbone": "mobilenet_v3_large",
                      "weights": None, "crop": 48, "batch_size": 2, "epochs": 1, "val_window": 96,
                      "val_windows": 0, **changes})


@pytest.mark.slow
def test_density_study_runs_every_setting_and_seed_with_the_same_steps(sample_root: Path,
                                                                        tmp_path: Path) -> None:
    kwargs = dict(strategies=("uniform", PRIOR_CORRECTED), seeds=(0, 1), runs_dir=tmp_path,
                  results_file=tmp_path / "runs.json", progress=False)
    results = run_label_study(_study_spec(sample_root), [5, 50], **kwargs)
    assert len(results) == 2 * (2 * 2 + 1)
    planned = [(s, n, seed) for s in ("uniform", PRIOR_CORRECTED) for n in (5, 50) for seed in (0, 1)]
    keys = results[["strategy", "points_per_image", "seed"]].fillna(-1).values.tolist()
    assert sorted(map(tuple, keys)) == sorted([*planned, (DENSE, -1, 0), (DENSE, -1, 1)])
    assert results["steps"].nunique() == 1 and results["steps"].iloc[0] == 3  # 6 images, batches of 2
    sparse = results[results.strategy != DENSE]
    assert np.allclose(sparse["labelled_fraction"], sparse["points_per_image"] / 96**2)
    assert results["val_mean_iou"].between(0, 1).all()
    assert results["weights_used"].isna().all()  # weights=None: every run started from random weights
    assert set(results["val_iou"].iloc[0]) == {"urban", "agriculture", "rangeland", "forest", "water",
                                                "barren", "unknown"}
    # Seeds draw other points; the prior-corrected rows reuse the stratified annotation files, which
    # live at the one annotation path of the data (runs/annotations/<data tag>/).
    made = sorted(p.name for p in (tmp_path / "annotations").glob("*/*.csv"))
    assert made == sorted(f"points_{s}_n{n}_seed{seed}.csv"
                          for s in ("uniform", "stratified") for n in (5, 50) for seed in (0, 1))
    # Every finished run is in the results file at once; a second call trains only what is missing.
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert len(saved["runs"]) == len(results)
    saved["runs"] = saved["runs"][1:]
    (tmp_path / "runs.json").write_text(json.dumps(saved))
    again = run_label_study(_study_spec(sample_root), [5, 50], **kwargs)
    columns = ["strategy", "points_per_image", "seed", "labelled_fraction", "val_mean_iou"]
    pd.testing.assert_frame_equal(again[columns], results[columns])
    assert (again["train_seconds"].iloc[1:] == results["train_seconds"].iloc[1:]).all()
    summary = summarize(results)
    assert list(summary["strategy"]) == ["uniform", "uniform", PRIOR_CORRECTED, PRIOR_CORRECTED, DENSE]
    assert (summary["runs"] == 2).all()
    assert summary.loc[summary.strategy == DENSE, "miou_vs_dense"].iloc[0] == pytest.approx(1.0)


def test_a_study_run_is_the_run_its_spec_builds(sample_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Each run of a study is its spec with the labels and the seed set, built by build_run: the
    prior-corrected row is stratified points with the correction in the loss."""
    built = []

    def fake_train_and_score(run, progress=False):
        built.append(run)
        return {"val_mean_iou": 0.5, "val_pixel_accuracy": 0.5, "steps": run.steps, "train_seconds": 0.0}

    monkeypatch.setattr(study, "train_and_score", fake_train_and_score)
    spec = _study_spec(sample_root)
    run_label_study(spec, [5], strategies=("uniform", PRIOR_CORRECTED), seeds=(3,), runs_dir=tmp_path,
                      progress=False)
    uniform, corrected, dense = built
    assert uniform.spec == spec.replace(points_per_image=5, seed=3)
    assert corrected.spec == spec.replace(strategy="stratified", points_per_image=5, prior_correction=True,
                                          seed=3)
    assert dense.spec == spec.replace(strategy=DENSE, seed=3) and dense.annotations is None
    assert uniform.loss_fn.logit_adjustment is None and corrected.loss_fn.logit_adjustment is not None
    assert [run.split for run in built] == [uniform.split] * 3  # the seed never moves the split


def test_settings_with_propagation_and_self_training_build_their_runs(sample_root: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """"uniform+propagation" and "uniform+self-training" are the uniform points' run with the
    study's superpixel size or rounds; a saved row made with another size is not reused."""
    built = []

    def fake_train_and_score(run, progress=False):
        built.append(run)
        return {"val_mean_iou": 0.5, "val_pixel_accuracy": 0.5, "steps": run.steps, "train_seconds": 0.0}

    monkeypatch.setattr(study, "train_and_score", fake_train_and_score)
    spec = _study_spec(sample_root, epochs=2)
    settings = ("uniform", "uniform+propagation", "uniform+propagation+self-training")
    kwargs = dict(strategies=settings, include_dense=False, seeds=(0,), runs_dir=tmp_path,
                  results_file=tmp_path / "runs.json", progress=False)
    results = run_label_study(spec, [5], superpixel_area=64, **kwargs)
    plain, spread, both = built
    assert spread.spec == plain.spec.replace(superpixel_area=64)
    assert both.spec == plain.spec.replace(superpixel_area=64, self_training_rounds=1)
    assert spread.annotations == plain.annotations  # the same points, spread
    assert results["trained_fraction"].iloc[1] > 5 * results["labelled_fraction"].iloc[1]
    assert results["trained_fraction"].iloc[0] == results["labelled_fraction"].iloc[0]
    assert list(results["superpixel_area"].fillna(0)) == [0, 64, 64]
    assert list(summarize(results)["trained_fraction"]) == list(results["trained_fraction"])
    run_label_study(spec, [5], superpixel_area=64, **kwargs)
    assert len(built) == 3  # every row saved
    run_label_study(spec, [5], superpixel_area=100, **kwargs)
    assert len(built) == 5 and built[-1].spec.superpixel_area == 100
    # a propagation study takes the plain points and dense rows of a density study as they are
    density = tmp_path / "density.json"
    run_label_study(spec, [5], strategies=("uniform",), seeds=(0,), runs_dir=tmp_path, results_file=density,
                      progress=False)
    assert len(built) == 7
    reused = run_label_study(spec, [5], strategies=("uniform", "uniform+propagation"), seeds=(0,),
                               runs_dir=tmp_path, results_file=tmp_path / "more.json", reuse=density,
                               superpixel_area=64, progress=False)
    assert len(built) == 8 and built[-1].spec.superpixel_area == 64
    assert list(reused["reused_from"].fillna("")) == ["density.json", "", "density.json"]
    assert reused["trained_fraction"].notna().all()
    with pytest.raises(ValueError, match=r"other settings \(lr: \S+ there, 0.5 now\)"):
        run_label_study(spec.replace(lr=0.5), [5], strategies=("uniform",), seeds=(0,), runs_dir=tmp_path,
                          results_file=tmp_path / "other.json", reuse=density, progress=False)
    for bad in ("uniform+magic", "dense+propagation", "uniform+prior+prior"):
        with pytest.raises(ValueError, match="expected a strategy"):
            study.setting_changes(bad)


def test_density_budgets_follow_the_image_area(sample_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Budgets in points per megapixel: per-image counts from the area, rows and resume keyed by density."""
    trained = []

    def fake_train_and_score(run, progress=False):
        points = None if run.annotations is None else sum(map(len, run.annotations.values()))
        trained.append((run.spec.seed, points))
        return {"val_mean_iou": 0.5, "val_pixel_accuracy": 0.5, "steps": 1, "train_seconds": 0.0}

    monkeypatch.setattr(study, "train_and_score", fake_train_and_score)
    # 96 x 96 images: 0.009216 megapixels; 6 training images
    kwargs = dict(points_per_mp=[1000, 5000], strategies=("uniform",), seeds=(0,), runs_dir=tmp_path,
                  results_file=tmp_path / "runs.json", progress=False)
    results = run_label_study(_study_spec(sample_root), **kwargs)
    assert results["points_per_mp"].tolist()[:2] == [1000, 5000]
    assert results["points_per_image"].tolist()[:2] == [9, 46]
    assert np.allclose(results["labelled_fraction"].iloc[:2], [9 / 96**2, 46 / 96**2])
    assert trained == [(0, 54), (0, 276), (0, None)]
    assert len(list(tmp_path.glob("annotations/*/points_uniform_1000permp_seed0.csv"))) == 1
    again = run_label_study(_study_spec(sample_root), **kwargs)
    assert len(again) == 3 and len(trained) == 3  # all saved
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


RECORDS = sorted(path for pattern in ("label_density_*.json", "more_from_points_*.json")
                 for path in RESULTS.parent.glob(pattern))


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


def test_the_table_of_a_propagation_study_says_what_the_runs_trained_on() -> None:
    runs = pd.DataFrame({"strategy": ["uniform", "uniform+propagation", DENSE] * 2,
                         "points_per_image": [26, 26, None] * 2, "points_per_mp": [100.0, 100.0, None] * 2,
                         "seed": [0, 0, 0, 1, 1, 1], "labelled_fraction": [0.0001, 0.0001, 1.0] * 2,
                         "trained_fraction": [0.0001, 0.11, 1.0] * 2,
                         "val_mean_iou": [0.2, 0.3, 0.4] * 2, "val_pixel_accuracy": [0.5, 0.6, 0.7] * 2})
    record = {"summary": json.loads(summarize(runs).to_json(orient="records")),
              "majority_baseline": {"class": "agriculture", "mean_iou": 0.09, "pixel_accuracy": 0.6}}
    table = markdown_table(record)
    assert "| labels | labelled pixels | trained on | val mIoU" in table
    row = "| uniform+propagation, 100 points per MP (26 per image) | 0.01% | 11.00% | 0.300 ± 0.000 |"
    assert row in table
    assert table.endswith("| majority class (agriculture) everywhere | | | 0.090 | | 0.600 |")


def test_a_results_file_of_another_study_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    split = {"train": [(Path("a_sat.jpg"), Path("a_mask.png"))],
             "val": [(Path("b_sat.jpg"), Path("b_mask.png"))]}
    ours = study_key(RunSpec(epochs=5), split)
    path.write_text(json.dumps({"key": ours, "runs": [{"strategy": DENSE}]}))
    assert read_results_file(path, ours) == [{"strategy": DENSE}]
    with pytest.raises(ValueError, match=r"other settings \(epochs: 5 there, 6 now\)"):
        read_results_file(path, study_key(RunSpec(epochs=6), split))
    # the images in a few words: how many, and a digest of their ids
    with pytest.raises(ValueError, match=r"other settings \(validation images: '1, \w{8}' there, '2, \w{8}'"):
        read_results_file(path, {**ours, "val": ["b", "c"]})
    with pytest.raises(ValueError, match=r"\(training images: '1, \w{8}' there, '1, \w{8}' now\)"):
        read_results_file(path, {**ours, "train": ["c"]})
    # The labels and the seed are each run's, not the study's.
    assert study_key(RunSpec(epochs=5, strategy="grid", seed=4), split) == ours
    older = {**ours, "spec": {k: v for k, v in ours["spec"].items() if k != "label_smoothing"}}
    path.write_text(json.dumps({"key": older, "runs": [{"strategy": DENSE}]}))
    assert read_results_file(path, ours) == [{"strategy": DENSE}]  # made before that field existed
    assert results_filename(RunSpec(epochs=5)) != results_filename(RunSpec(epochs=6))
    assert results_filename(RunSpec(epochs=5)) == results_filename(RunSpec(epochs=5, seed=2))


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


def test_per_class_iou_and_the_record_description_name_every_setting() -> None:
    record = json.loads((RESULTS.parent / "label_density_sample.json").read_text())
    runs = pd.DataFrame(record["runs"])
    table = study.per_class_iou(runs)
    assert list(table.index) == ["uniform, 100 per image", "stratified, 100 per image",
                                 "stratified+prior, 100 per image", "dense"]
    assert "unknown" not in table.columns and "water" in table.columns
    dense = runs[runs.strategy == DENSE]
    assert table.loc["dense", "water"] == pytest.approx(np.mean([r["water"] for r in dense["val_iou"]]))
    assert study.setting_label("uniform", 262, 1000.0) == "uniform, 1,000/MP"
    text = study.describe_record(record, width=40)
    command_lines = [line.removesuffix(" \\").strip() for line in text.splitlines()[4:]]
    assert record["date"] in text  # lines fit the width, and no word (a path) is cut to make them
    assert all(len(line) <= 40 or " " not in line for line in command_lines)
    assert text.replace(" \\\n    ", " ").endswith(record["command"])


def test_a_committed_record_loads_with_its_summary() -> None:
    path = RESULTS.parent / "label_density_sample.json"
    loaded = study.load_record(path)
    record = json.loads(path.read_text())
    assert loaded.majority_miou == record["majority_baseline"]["mean_iou"] < loaded.summary["miou_mean"].min()
    np.testing.assert_allclose(loaded.summary["miou_mean"], [s["miou_mean"] for s in record["summary"]])
    assert loaded.describe().startswith(record["date"])
    assert list(loaded.per_class_iou().index)[-1] == DENSE
    with pytest.raises(FileNotFoundError, match="nothing.json: no study record"):
        study.load_record(path.parent / "nothing.json")


@pytest.mark.parametrize("fast", ["0", "1"])
def test_the_course_study_spec_follows_the_mode_and_the_data(fast: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LC_FAST", fast)
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.delenv("LC_SMOKE", raising=False)
    sample = study.course_spec()
    real = study.course_spec(tmp_path)
    if fast == "1":  # notebook 06's fast run: 200 steps of MobileNetV3, the sample's rate
        assert sample == RunSpec(backbone="mobilenet_v3_large", weights="imagenet", crop=128, batch_size=8,
                                 epochs=40, samples_per_epoch=40, lr=2e-3, warmup_steps=30, val_windows=0)
        assert (real.lr, real.dice_weight) == (3e-4, 1.0) and real.data == str(tmp_path)
    else:
        assert sample.backbone == "resnet50" and sample.crop == 256 and real.lr == sample.lr == 1e-3
    monkeypatch.setenv("LC_SMOKE", "1")
    assert study.course_spec().replace(self_training_rounds=1).epochs == 2


def test_paired_gaps_compare_settings_seed_by_seed() -> None:
    runs = pd.DataFrame({"strategy": ["uniform"] * 3 + [DENSE] * 3, "points_per_image": [10] * 3 + [None] * 3,
                         "seed": [0, 1, 2] * 2, "val_mean_iou": [0.30, 0.42, 0.36, 0.35, 0.45, 0.40]})
    gaps = study.paired_gaps(runs)
    assert list(gaps.index) == ["uniform, 10 per image"]
    assert gaps.iloc[0]["gap_mean"] == pytest.approx(-0.04)
    assert gaps.iloc[0]["gap_sd"] == pytest.approx(np.std([-0.05, -0.03, -0.04], ddof=1))
    assert gaps.iloc[0]["seeds_below"] == 3 and gaps.iloc[0]["seeds"] == 3
    # the means' spread over seeds (0.06) hides a gap every seed shows
    assert runs[runs.strategy == DENSE]["val_mean_iou"].std() > abs(gaps.iloc[0]["gap_mean"])
    committed = study.load_record(RESULTS.parent / "label_density_sample.json")
    assert list(committed.paired_gaps()["seeds"]) == [3] * 3


def test_paired_gaps_against_the_points_alone_pair_each_method_with_its_own_budget() -> None:
    runs = pd.DataFrame({
        "strategy": ["uniform"] * 4 + ["uniform+propagation"] * 4 + [DENSE] * 2,
        "points_per_image": [3, 3, 26, 26] * 2 + [None] * 2,
        "points_per_mp": [10, 10, 100, 100] * 2 + [None] * 2,
        "seed": [0, 1] * 5,
        "val_mean_iou": [0.20, 0.30, 0.30, 0.34, 0.25, 0.28, 0.36, 0.40, 0.41, 0.45]})
    gaps = study.paired_gaps(runs, reference="uniform")
    assert list(gaps.index) == ["uniform+propagation, 10/MP", "uniform+propagation, 100/MP"]
    assert gaps["gap_mean"].to_list() == pytest.approx([0.015, 0.06])
    assert gaps["seeds_below"].to_list() == [1, 0] and gaps["seeds"].to_list() == [2, 2]
    assert study.paired_gaps(runs).loc["uniform, 100/MP", "gap_mean"] == pytest.approx(-0.11)
    with pytest.raises(ValueError, match="no run of the reference 'stratified'"):
        study.paired_gaps(runs, reference="stratified")


def test_a_summary_lists_each_strategy_then_its_modified_forms_then_dense() -> None:
    strategies = [DENSE, "uniform+propagation+self-training", "stratified", "uniform+self-training",
                  "stratified+prior", "uniform+propagation", "uniform"]
    runs = pd.DataFrame({"strategy": strategies, "points_per_image": [None] + [10] * 6, "seed": 0,
                         "labelled_fraction": [1.0] + [0.01] * 6, "val_mean_iou": 0.3,
                         "val_pixel_accuracy": 0.5})
    assert list(study.summarize(runs)["strategy"]) == [
        "uniform", "uniform+propagation", "uniform+self-training", "uniform+propagation+self-training",
        "stratified", "stratified+prior", DENSE]


def test_the_notebook_table_names_each_setting_and_shows_grown_labels_only_where_there_are() -> None:
    record = study.load_record(RESULTS.parent / "label_density_sample.json")
    table = record.table()
    assert list(table.index) == list(record.per_class_iou().index)
    assert "trained on %" not in table and table.loc["dense", "vs dense"] == 1.0
    assert table.loc["uniform, 100 per image", "labelled %"] == pytest.approx(100 * 100 / 256**2, rel=0.01)
    runs = pd.DataFrame({"strategy": ["uniform", "uniform+propagation"], "points_per_image": [26, 26],
                         "points_per_mp": [100.0, 100.0], "seed": [0, 0], "labelled_fraction": [1e-4, 1e-4],
                         "trained_fraction": [1e-4, 0.11], "val_mean_iou": [0.2, 0.3],
                         "val_pixel_accuracy": [0.5, 0.6]})
    assert study.summary_table(summarize(runs)).loc["uniform+propagation, 100/MP", "trained on %"] == 11.0
    assert "trained_fraction" not in summarize(runs.iloc[:1])


def test_the_record_figure_sets_grown_labels_side_by_side_and_densities_on_a_curve(tmp_path: Path) -> None:
    from PIL import Image

    record = json.loads((RESULTS.parent / "label_density_deepglobe.json").read_text())
    draw_figure(record, tmp_path / "curve.png")
    grown = {**record, "summary": [{**row, "trained_fraction": row["labelled_fraction"] * (
        50 if row["strategy"] == "uniform" else 1)} for row in record["summary"]]}
    draw_figure(grown, tmp_path / "bars.png")
    curve, bars = (np.asarray(Image.open(tmp_path / name).convert("L")) for name in ("curve.png", "bars.png"))
    assert curve.shape == bars.shape == (504, 840)  # 7 x 4.2 inches at 120 dpi: a notebook column
    # bars fill far more of the plot than a curve's markers do
    assert (bars < 128).mean() > 3 * (curve < 128).mean()


def test_a_record_file_keeps_every_value_and_puts_number_lists_on_one_line() -> None:
    """What ``save_record`` writes reads back as the record, every list of numbers one line, and no
    text touched, even text that looks like a list."""
    record = {"command": "python -m x --seeds [  0, 1  ]", "names": ["a", "b"],
              "tile_confusions": {"0032": [[1, 0], [2, 3]]}, "curve": [0.25, -1e-05], "empty": []}
    text = record_text(record)
    assert json.loads(text) == record
    assert '"0032": [\n   [1, 0],\n   [2, 3]\n  ]' in text and '"curve": [0.25, -1e-05]' in text
    assert '"command": "python -m x --seeds [  0, 1  ]"' in text and '"a",\n' in text
    assert text.endswith("}\n")
