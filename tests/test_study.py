from pathlib import Path

import pandas as pd
import pytest

from lc_utils.datasets import find_pairs
from lc_utils.study import DENSE, StudySettings, run_density_study, sparse_to_dense_ratio


@pytest.mark.slow
def test_density_study_runs_every_setting_with_the_same_steps(sample_root: Path, tmp_path: Path) -> None:
    pairs = find_pairs(sample_root)
    settings = StudySettings(backbone="mobilenet_v3_large", weights=None, crop_size=48, batch_size=2,
                             epochs=1, tile_size=96)
    results = run_density_study(pairs[:4], pairs[4:6], [5, 50], strategies=("uniform",),
                                settings=settings, annotation_dir=tmp_path / "points",
                                results_dir=tmp_path / "rows", progress=False)
    assert list(results["strategy"]) == ["uniform", "uniform", DENSE]
    assert results["steps"].nunique() == 1 and results["steps"].iloc[0] == 2
    fractions = results["labelled_fraction"].tolist()
    assert fractions == pytest.approx([5 / 96**2, 50 / 96**2, 1.0])
    assert results["val_mean_iou"].between(0, 1).all()
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == ["points_uniform_n50_seed0.csv",
                                                                       "points_uniform_n5_seed0.csv"]
    # A second run reuses every finished row instead of training again.
    (tmp_path / "rows" / "run_uniform_5.json").unlink()
    again = run_density_study(pairs[:4], pairs[4:6], [5, 50], strategies=("uniform",), settings=settings,
                              annotation_dir=tmp_path / "points", results_dir=tmp_path / "rows",
                              progress=False)
    pd.testing.assert_frame_equal(again.drop(columns="train_seconds"), results.drop(columns="train_seconds"))
    assert (again["train_seconds"].iloc[1:] == results["train_seconds"].iloc[1:]).all()
    ratios = sparse_to_dense_ratio(results)
    assert len(ratios) == 2 and "miou_vs_dense" in ratios


def test_ratio_needs_a_dense_run() -> None:
    with pytest.raises(ValueError, match="no dense run"):
        sparse_to_dense_ratio(pd.DataFrame({"strategy": ["uniform"], "val_mean_iou": [0.2]}))
