"""Suggested points: uncertainty measures, the spacing rule, never a labelled or no-data pixel,
exactly k picks, and the random baseline under the same rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lc_utils.active import (
    PICK_COLUMNS,
    answer_picks,
    describe_picks,
    next_picks,
    predict_uncertainty,
    random_scores,
    round_files,
    run_active_rounds,
    select_points,
    summarize_rounds,
    uncertainty,
)
from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX
from lc_utils.layouts import find_pairs
from lc_utils.masks import read_mask
from lc_utils.models import build_deeplabv3
from lc_utils.point_files import load_annotations
from lc_utils.run_spec import RunSpec
from lc_utils.runs import build_run, load_run
from lc_utils.sparse import PointAnnotation, annotatable
from lc_utils.study import score_images


def test_uncertainty_is_zero_where_sure_and_one_where_undecided() -> None:
    sure = np.zeros((4, 2, 2))
    sure[1] = 1
    undecided = np.full((4, 2, 2), 0.25)
    for measure in ("margin", "entropy"):
        assert uncertainty(sure, measure) == pytest.approx(np.zeros((2, 2)))
        assert uncertainty(undecided, measure) == pytest.approx(np.ones((2, 2)))
    two_way = np.zeros((4, 1, 1))
    two_way[:2] = 0.5  # torn between two classes: the margin says so more than the entropy
    assert uncertainty(two_way, "margin")[0, 0] == pytest.approx(1.0)
    assert uncertainty(two_way, "entropy")[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="measure must be one of"):
        uncertainty(sure, "variance")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        uncertainty(np.ones((2, 2)))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12), distance=st.floats(1.0, 9.0),
       n_labelled=st.integers(0, 15))
def test_picks_keep_their_distance_and_avoid_labelled_and_no_data_pixels(seed: int, k: int, distance: float,
                                                                          n_labelled: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random((64, 80))
    valid = np.ones((64, 80), bool)
    valid[:, :20] = False  # a strip of no data
    cells = rng.choice(64 * 80, n_labelled, replace=False)
    labelled = PointAnnotation(cells // 80, cells % 80, np.zeros(n_labelled))
    rows, cols = select_points(scores, k, labelled=labelled, valid=valid, min_distance=distance)
    assert len(rows) == k  # exactly k
    assert valid[rows, cols].all()
    picked = np.stack([rows, cols], axis=1)
    others = np.stack([labelled.rows, labelled.cols], axis=1)
    gaps = np.hypot(*(picked[:, None] - picked[None]).transpose(2, 0, 1))
    assert (gaps[~np.eye(k, dtype=bool)] >= distance).all()
    if n_labelled:
        assert (np.hypot(*(picked[:, None] - others[None]).transpose(2, 0, 1)) >= distance).all()


def test_picks_follow_the_scores_where_the_spacing_allows() -> None:
    scores = np.zeros((20, 20))
    scores[5, 5], scores[5, 6], scores[15, 15], scores[10, 2] = 0.9, 0.8, 0.7, 0.6
    rows, cols = select_points(scores, 3, min_distance=1)
    assert list(zip(rows, cols)) == [(5, 5), (5, 6), (15, 15)]
    rows, cols = select_points(scores, 3, min_distance=3)  # (5, 6) is too close to (5, 5)
    assert list(zip(rows, cols)) == [(5, 5), (15, 15), (10, 2)]
    taken = PointAnnotation([5], [5], [1])
    rows, cols = select_points(scores, 1, labelled=taken, min_distance=1)
    assert (rows[0], cols[0]) == (5, 6)  # never the labelled pixel itself
    with pytest.raises(ValueError, match="only 1 of 2 picks fit 30 pixels apart"):
        select_points(scores, 2, min_distance=30)


def test_the_random_baseline_is_seeded() -> None:
    assert np.array_equal(random_scores((8, 8), [1, 2]), random_scores((8, 8), [1, 2]))
    assert not np.array_equal(random_scores((8, 8), [1, 2]), random_scores((8, 8), [1, 3]))


def test_next_picks_follow_the_selection_under_one_seed_rule_and_the_spacing() -> None:
    unsure = np.zeros((20, 20))
    unsure[5, 5], unsure[5, 6], unsure[15, 15], unsure[10, 2] = 0.9, 0.8, 0.7, 0.6
    valid = np.ones((20, 20), bool)
    valid[10, 2] = False  # no data: never picked, however unsure
    rules = {"image_id": "a", "valid": valid, "seed": 3, "labelled": PointAnnotation([15], [15], [0]),
             "min_distance": 3}
    rows, cols = next_picks("margin", 2, uncertainty=unsure, round_number=1, **rules)
    assert list(zip(rows.tolist(), cols.tolist()))[:1] == [(5, 5)]
    assert (rows[1], cols[1]) not in {(5, 6), (15, 15), (10, 2)}  # too close, labelled, no data
    first = next_picks("random", 5, round_number=1, **rules)
    again = next_picks("random", 5, round_number=1, uncertainty=unsure, **rules)  # no model asked
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    later = next_picks("random", 5, round_number=2, **rules)
    other_image = next_picks("random", 5, round_number=1, **{**rules, "image_id": "b"})
    assert not np.array_equal(first[0], later[0]) and not np.array_equal(first[0], other_image[0])
    assert valid[first].all() and not ((first[0] == 15) & (first[1] == 15)).any()
    with pytest.raises(ValueError, match="need the image's uncertainty map"):
        next_picks("entropy", 2, round_number=1, **rules)
    with pytest.raises(ValueError, match="selection must be one of"):
        next_picks("variance", 2, uncertainty=unsure, round_number=1, **rules)


def test_picks_are_described_by_what_the_mask_answers() -> None:
    truth = np.zeros((12, 12), np.int64)
    truth[:, 8:] = 3  # a class edge between columns 7 and 8
    predicted = np.zeros_like(truth)
    picks = {"a": (np.array([0, 5, 5, 11]), np.array([0, 6, 9, 11]))}
    answered = answer_picks(picks["a"], truth, round_number=2)
    assert answered.labels.tolist() == [0, 0, 3, 3] and answered.rounds.tolist() == [2] * 4
    described = describe_picks(picks, {"a": truth}, {"a": predicted}, DEEPGLOBE, edge_distance=2)
    assert described["points"] == 4
    assert described["model_wrong"] == pytest.approx(0.5)  # wrong on both class-3 picks
    assert described["near_edge"] == pytest.approx(0.5)  # columns 6 and 9 lie within 2 px of the edge
    assert described["urban"] == pytest.approx(0.5) and described["forest"] == pytest.approx(0.5)
    assert "unknown" not in described and list(described.index[:3]) == list(PICK_COLUMNS)
    assert np.isnan(describe_picks({}, {}, {}, DEEPGLOBE)["model_wrong"])


def test_predict_uncertainty_gives_a_class_map_and_an_uncertainty_map() -> None:
    model = build_deeplabv3(7, "mobilenet_v3_large", None).eval()
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    predicted, unsure = predict_uncertainty(model, image, "entropy", tile_size=64)
    assert predicted.shape == unsure.shape == (48, 64)
    assert unsure.min() >= 0 and unsure.max() <= 1


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
