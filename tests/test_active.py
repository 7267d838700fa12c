"""Active rounds (lc_utils.active): k points per image and round recorded with their round, the
masks answering, resuming, a start run as round 0, fine-tuning or training afresh, and each
selection's gap to random picks on the same seed (with paired tile intervals). The picks
themselves are tested in test_active_picks.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lc_utils import tile_bootstrap
from lc_utils.active import (
    gaps_to_random,
    next_picks,
    round_files,
    run_active_rounds,
    summarize_rounds,
    weights_digest,
)
from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX
from lc_utils.layouts import find_pairs
from lc_utils.masks import read_mask
from lc_utils.models import load_trained_model
from lc_utils.point_files import load_annotations
from lc_utils.run_spec import RunSpec
from lc_utils.runs import Run, build_run, load_run
from lc_utils.saved_files import OtherSettingsError
from lc_utils.sparse import annotatable
from lc_utils.study import score_images


@pytest.mark.slow
def test_active_rounds_add_k_points_per_image_recorded_with_their_round(sample_root: Path,
                                                                       tmp_path: Path) -> None:
    spec = RunSpec(data=str(sample_root), backbone="mobilenet_v3_large", weights=None, crop=48, batch_size=2,
                   epochs=1, samples_per_epoch=4, val_windows=0, val_window=96, seed=3)
    results = {s: run_active_rounds(spec, [5, 8], s, work_dir=tmp_path, min_distance=4, runs_dir=tmp_path)
               for s in ("margin", "random")}
    for selection, rows in results.items():
        assert rows["round"].tolist() == [0, 1] and rows["points_per_image"].tolist() == [5, 8]
        assert rows["val_mean_iou"].between(0, 1).all()
        first = load_annotations(tmp_path / "seed3_round0.csv")
        second = load_annotations(tmp_path / f"{selection}_seed3_round1.csv")
        for image_id, points in second.items():
            truth = read_mask(next(m for i, m in find_pairs(sample_root) if i.name.startswith(image_id)))
            assert len(points) == 8 and points.rounds.tolist() == [0] * 5 + [1] * 3
            assert (truth[points.rows, points.cols] == points.labels).all()  # the mask answered
            old, new = points.subset(points.rounds == 0), points.subset(points.rounds == 1)
            assert old == first[image_id]
            gaps = np.hypot(new.rows[:, None] - points.rows[None], new.cols[:, None] - points.cols[None])
            assert (np.sort(gaps, axis=1)[:, 1] >= 4).all()  # apart from every other point
            if selection == "random":  # the picks notebook 09 shows for round 1 are the round's own
                picks = next_picks("random", 3, image_id=image_id, valid=annotatable(truth) != IGNORE_INDEX,
                                   seed=3, round_number=1, labelled=first[image_id], min_distance=4)
                assert (new.rows.tolist(), new.cols.tolist()) == (picks[0].tolist(), picks[1].tolist())
    # both start from the same points and the same model, made once
    assert results["margin"]["val_mean_iou"][0] == results["random"]["val_mean_iou"][0]
    assert not (tmp_path / "margin_seed3" / "round0").exists() and (tmp_path / "seed3" / "round0").is_dir()
    margin_new, random_new = (load_annotations(tmp_path / f"{s}_seed3_round1.csv") for s in results)
    assert any(margin_new[i] != random_new[i] for i in margin_new)
    # round 1 fine-tunes round 0's model: it starts from round 0's trained weights
    assert results["margin"]["start_weights"][1] == weights_digest(
        load_trained_model(tmp_path / "seed3" / "round0" / "last.pt"))
    assert results["margin"]["retrain"].tolist() == [False, False]
    again = run_active_rounds(spec, [5, 8], "margin", work_dir=tmp_path, min_distance=4, runs_dir=tmp_path)
    assert again["val_mean_iou"].tolist() == results["margin"]["val_mean_iou"].tolist()  # resumed, not redone
    with pytest.raises(ValueError, match="grow round by round"):
        run_active_rounds(spec, [5, 5], "margin", work_dir=tmp_path)


@pytest.mark.slow
def test_rounds_can_start_from_a_trained_run_its_points_and_model(sample_root: Path, tmp_path: Path) -> None:
    spec = RunSpec(data=str(sample_root), backbone="mobilenet_v3_large", weights=None, crop=48, batch_size=2,
                   epochs=1, samples_per_epoch=4, val_windows=0, val_window=96, points_per_image=12, seed=1)
    build_run(spec, runs_dir=tmp_path).train(tmp_path / "first", progress=False)
    start = load_run(tmp_path / "first" / "last.pt", runs_dir=tmp_path)
    rows = run_active_rounds(start.spec, [0, 3], "margin", work_dir=tmp_path / "active", start=start,
                             min_distance=4, runs_dir=tmp_path)
    scored = score_images(start.model, start.split["val"], start.schema, spec.val_window, spec.val_overlap)
    assert rows["val_mean_iou"][0] == scored["mean_iou"]  # round 0 is the start, not trained again
    assert rows["steps"][0] == start.steps and rows["points_per_image"].tolist() == [12, 15]
    first = load_annotations(round_files(tmp_path / "active", "margin", 1, 0, start=start)[0])
    grown = load_annotations(round_files(tmp_path / "active", "margin", 1, 1, start=start)[0])
    assert set(first) == set(grown) == set(start.annotations)
    for image_id, points in grown.items():
        assert points.rounds.tolist() == [0] * 12 + [1] * 3
        kept = points.subset(points.rounds == 0)
        assert (kept.rows.tolist(), kept.labels.tolist()) == (start.annotations[image_id].rows.tolist(),
                                                             start.annotations[image_id].labels.tolist())
    with pytest.raises(ValueError, match="picked with other settings .budget: 3 there, 4 now"):
        run_active_rounds(start.spec, [0, 4], "margin", work_dir=tmp_path / "active", start=start,
                          min_distance=4, runs_dir=tmp_path)
    # the same start loaded again resumes its rounds; a start trained again gets rounds of its own
    reloaded = load_run(tmp_path / "first" / "last.pt", runs_dir=tmp_path)
    assert round_files(tmp_path, "margin", 1, 1, start=reloaded) == round_files(tmp_path, "margin", 1, 1,
                                                                                start=start)
    build_run(spec.replace(seed=2), runs_dir=tmp_path).train(tmp_path / "again", progress=False)
    retrained = load_run(tmp_path / "again" / "last.pt", runs_dir=tmp_path)
    assert round_files(tmp_path, "margin", 1, 1, start=retrained) != round_files(tmp_path, "margin", 1, 1,
                                                                                 start=start)
    with pytest.raises(ValueError, match="count the points added to its own from 0"):
        run_active_rounds(start.spec, [12, 15], "margin", work_dir=tmp_path / "other", start=start)
    with pytest.raises(ValueError, match="trained on other images"):
        run_active_rounds(start.spec.replace(split_seed=5), [0, 3], "margin", work_dir=tmp_path / "other",
                          start=start)


@pytest.mark.slow
def test_retrain_trains_every_round_from_the_specs_fresh_model(sample_root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RunSpec(data=str(sample_root), backbone="mobilenet_v3_large", weights=None, crop=48, batch_size=2,
                   epochs=1, samples_per_epoch=4, val_windows=0, val_window=96, seed=5)
    runs_dir = tmp_path / "runs"
    started_from: dict[str, dict[str, torch.Tensor]] = {}
    train = Run.train

    def recording_train(self: Run, run_dir: Path, **kwargs: object) -> list[dict[str, float]]:
        started_from[Path(run_dir).relative_to(tmp_path).as_posix()] = {
            name: tensor.clone() for name, tensor in self.model.state_dict().items()}
        return train(self, run_dir, **kwargs)

    monkeypatch.setattr(Run, "train", recording_train)
    results = {s: run_active_rounds(spec, [3, 5, 7], s, work_dir=tmp_path, min_distance=4, retrain=True,
                                    runs_dir=runs_dir) for s in ("pixelpick", "class-balanced")}
    fresh = build_run(spec, runs_dir=runs_dir).model
    masks = {image.name.removesuffix("_sat.jpg"): mask for image, mask in find_pairs(sample_root)}
    for selection, rows in results.items():
        second = started_from[f"{selection}_seed5/round2"]  # what round 2 trained from
        assert second.keys() == fresh.state_dict().keys()
        assert all(torch.equal(second[name], value) for name, value in fresh.state_dict().items())
        assert rows["start_weights"].tolist() == [weights_digest(fresh)] * 3
        assert rows["retrain"].all() and rows["steps"].nunique() == 1  # the whole schedule every round
        assert all(len(tiles) == len(build_run(spec, runs_dir=runs_dir).split["val"])
                   for tiles in rows["tile_confusions"])
        for image_id, points in load_annotations(tmp_path / f"{selection}_seed5_round2.csv").items():
            assert points.rounds.tolist() == [0] * 3 + [1] * 2 + [2] * 2  # exactly k per image and round
            truth = annotatable(read_mask(masks[image_id]))
            assert (truth[points.rows, points.cols] != IGNORE_INDEX).all()  # never on no data
            gaps = np.hypot(*(np.subtract.outer(axis, axis) for axis in (points.rows, points.cols)))
            later = points.rounds > 0  # apart from every other point, so never on a labelled one
            assert (np.sort(gaps[later], axis=1)[:, 1] >= 4).all()
    with pytest.raises(OtherSettingsError, match="retrain: True there, False now"):
        run_active_rounds(spec, [3, 5, 7], "pixelpick", work_dir=tmp_path, min_distance=4, runs_dir=runs_dir)
    with pytest.raises(ValueError, match="fine_tune_epochs is for fine-tuning"):
        run_active_rounds(spec, [3, 5], "random", work_dir=tmp_path / "other", retrain=True,
                          fine_tune_epochs=1)


def test_gaps_to_random_pair_each_selection_with_random_on_the_same_seed_and_tiles() -> None:
    rng = np.random.default_rng(0)

    def confusions() -> dict[str, list[list[int]]]:
        return {f"tile{i}": rng.integers(0, 50, (7, 7)).tolist() for i in range(6)}

    rows = []
    for seed in (0, 1):
        first = confusions()  # round 0: one model for every selection
        for selection in ("pixelpick", "random"):
            rows += [{"selection": selection, "seed": seed, "round": 0, "points_per_image": 10,
                      "tile_confusions": first},
                     {"selection": selection, "seed": seed, "round": 1, "points_per_image": 20,
                      "tile_confusions": confusions()}]
    rows.append({"selection": "margin", "seed": 0, "round": 1, "points_per_image": 20})  # kept no tiles
    found = gaps_to_random(pd.DataFrame(rows), DEEPGLOBE, n_boot=200)
    gaps = {(g["selection"], g["round"]): g for g in found}
    assert set(gaps) == {("pixelpick", 0), ("pixelpick", 1)}
    keep = np.arange(7) != DEEPGLOBE.unknown_index
    by = {(r["selection"], r["seed"], r["round"]): r.get("tile_confusions") for r in rows}
    pairs = [(by["pixelpick", seed, 1], by["random", seed, 1]) for seed in (0, 1)]
    pooled, later = tile_bootstrap.pooled_gap(pairs, keep, n_boot=200), gaps[("pixelpick", 1)]
    assert (later["gap"], later["low"], later["high"]) == (pooled.gap, pooled.low, pooled.high)
    assert later["seeds"] == [0, 1] and later["n_tiles"] == 6 and later["points_per_image"] == 20
    assert [s["gap"] for s in later["per_seed"]] == [tile_bootstrap.paired_gap(*p, keep, n_boot=200).gap
                                                    for p in pairs]
    shared = gaps[("pixelpick", 0)]
    assert (shared["gap"], shared["low"], shared["high"], shared["measurable"]) == (0, 0, 0, False)


def test_round_summaries_compare_each_selection_with_random_on_the_same_seed() -> None:
    miou = {("margin", 0): [0.20, 0.30], ("random", 0): [0.20, 0.25],
            ("margin", 1): [0.10, 0.12], ("random", 1): [0.10, 0.16]}
    rounds = pd.DataFrame([{"selection": s, "seed": seed, "round": r, "points_per_image": 5 * (r + 1),
                            "val_mean_iou": scores[r]}
                           for (s, seed), scores in miou.items() for r in (0, 1)])
    summary = summarize_rounds(rounds).set_index(["selection", "round"])
    later = summary.loc[("margin", 1)]
    assert later["miou_mean"] == pytest.approx(0.21) and later["runs"] == 2
    # +0.05 on seed 0, -0.04 on seed 1: a mean gap of +0.005 that one seed of two supports
    assert later["gap_to_random_mean"] == pytest.approx(0.005)
    assert later["gap_to_random_sd"] == pytest.approx(np.std([0.05, -0.04], ddof=1))
    assert later["seeds_above_random"] == 1
    assert summary.loc[("random", 1), "gap_to_random_mean"] == 0
    assert summary.loc[("margin", 0), "seeds_above_random"] == 0  # the shared round 0: no gap at all


def test_round_zero_files_are_shared_by_every_selection(tmp_path: Path) -> None:
    assert round_files(tmp_path, "margin", 2, 0) == round_files(tmp_path, "random", 2, 0)
    margin, random = round_files(tmp_path, "margin", 2, 1), round_files(tmp_path, "random", 2, 1)
    assert margin[0] != random[0] and margin[1] != random[1] and margin[0].suffix == ".csv"
