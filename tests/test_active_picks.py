"""Where to label next (lc_utils.active_picks): uncertainty measures, the spacing rule, never a
labelled or no-data pixel, exactly k picks, PixelPick's random picks among the most uncertain,
class-balanced picks, and the random baseline under the same rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lc_utils.active_picks import (
    PICK_COLUMNS,
    SELECTIONS,
    answer_picks,
    class_balanced_picks,
    describe_picks,
    measure_of,
    next_picks,
    predict_uncertainty,
    random_scores,
    select_points,
    top_share_picks,
    uncertainty,
)
from lc_utils.classes import DEEPGLOBE
from lc_utils.models import build_deeplabv3
from lc_utils.sparse import PointAnnotation, image_seed


def _scattered(rng: np.random.Generator, shape: tuple[int, int], n: int) -> PointAnnotation:
    """``n`` labelled points on distinct random pixels."""
    cells = rng.choice(shape[0] * shape[1], n, replace=False)
    return PointAnnotation(cells // shape[1], cells % shape[1], np.zeros(n))


def _check_rules(picks: tuple[np.ndarray, np.ndarray], k: int, valid: np.ndarray, labelled: PointAnnotation,
                 distance: float) -> None:
    """The rules every selection keeps: exactly k picks, inside ``valid``, at least ``distance``
    from each other and from every labelled point (so never on one)."""
    rows, cols = picks
    assert len(rows) == len(cols) == k
    assert valid[rows, cols].all()
    picked = np.stack([rows, cols], axis=1)
    gaps = np.hypot(*(picked[:, None] - picked[None]).transpose(2, 0, 1))
    assert (gaps[~np.eye(k, dtype=bool)] >= distance).all()
    if len(labelled):
        others = np.stack([labelled.rows, labelled.cols], axis=1)
        assert (np.hypot(*(picked[:, None] - others[None]).transpose(2, 0, 1)) >= distance).all()


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
    labelled = _scattered(rng, scores.shape, n_labelled)
    picks = select_points(scores, k, labelled=labelled, valid=valid, min_distance=distance)
    _check_rules(picks, k, valid, labelled, distance)


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


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12), distance=st.floats(1.0, 4.0),
       n_labelled=st.integers(0, 15))
def test_pixelpick_draws_among_the_top_share_only_keeping_the_spacing(seed: int, k: int, distance: float,
                                                                      n_labelled: int) -> None:
    rng = np.random.default_rng(seed)
    # uncertainty rising to the right: the top 5% is a band with room for every k here
    scores = np.arange(200)[None, :] + 0.5 * rng.random((60, 200))
    valid = np.ones(scores.shape, bool)
    valid[:8] = False  # no data
    labelled = _scattered(rng, scores.shape, n_labelled)
    picks = top_share_picks(scores, k, seed=[seed, 1], labelled=labelled, valid=valid, min_distance=distance)
    _check_rules(picks, k, valid, labelled, distance)
    free = valid.copy()
    free[labelled.rows, labelled.cols] = False
    top = np.sort(scores[free])[-int(np.ceil(0.05 * free.sum())):]
    assert (scores[picks] >= top[0]).all()  # never outside the top 5% of the unlabelled pixels
    again = top_share_picks(scores, k, seed=[seed, 1], labelled=labelled, valid=valid, min_distance=distance)
    assert all(np.array_equal(a, b) for a, b in zip(picks, again))  # seeded


def test_pixelpick_picks_are_random_not_the_most_uncertain() -> None:
    scores = np.random.default_rng(0).random((64, 64))
    draws = [top_share_picks(scores, 10, seed=[s, 1], min_distance=2) for s in range(2)]
    best = select_points(scores, 10, min_distance=2)
    assert not np.array_equal(draws[0][0], draws[1][0])  # another seed, other picks
    ranks = scores.ravel().argsort().argsort().reshape(scores.shape) / scores.size
    assert ranks[draws[0]].mean() < ranks[best].mean()  # spread over the top 5%, not its top
    with pytest.raises(ValueError, match="top_share"):
        top_share_picks(scores, 1, seed=0, top_share=0)


def test_pixelpick_goes_beyond_the_top_share_only_where_it_has_no_room() -> None:
    scores = np.random.default_rng(1).random((40, 40)) * 0.5
    scores[:8, :10] += 1  # the top 5%: 80 pixels in one corner, room for two picks 10 apart
    picks = top_share_picks(scores, 4, seed=3, min_distance=10)
    _check_rules(picks, 4, np.ones_like(scores, bool), PointAnnotation([], [], []), 10)
    inside = scores[picks] >= 1
    assert inside[0] and not inside.all()
    assert (np.diff(inside.astype(int)) <= 0).all()  # the top share first, then beyond it


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), per_class=st.integers(1, 3), distance=st.floats(1.0, 4.0),
       n_labelled=st.integers(0, 8), data=st.data())
def test_class_balanced_picks_cover_the_predicted_classes(seed: int, per_class: int, distance: float,
                                                        n_labelled: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    predicted = np.kron(rng.integers(0, 6, (4, 4)), np.ones((16, 20), np.int64))
    valid = np.ones(predicted.shape, bool)
    valid[:, :4] = False
    predicted[:, :4] = 6  # a class predicted on no data only: not present
    present, counts = np.unique(predicted[valid], return_counts=True)
    extra = data.draw(st.integers(0, len(present) - 1))
    k = per_class * len(present) + extra
    labelled = _scattered(rng, predicted.shape, n_labelled)
    picks = class_balanced_picks(rng.random(predicted.shape), predicted, k, labelled=labelled, valid=valid,
                                 min_distance=distance)
    _check_rules(picks, k, valid, labelled, distance)
    taken = np.bincount(predicted[picks], minlength=7)
    assert taken[6] == 0 and (taken[present] >= per_class).all()  # every predicted class, evenly
    rarest = present[np.argsort(counts, kind="stable")][:extra]
    assert (taken[rarest] == per_class + 1).all()  # the picks left over go to the rarest classes


def test_class_balanced_picks_take_each_class_most_uncertain_first() -> None:
    predicted = np.zeros((20, 20), np.int64)
    predicted[:, 15:] = 2  # class 2 is the rarer
    scores = np.zeros((20, 20))
    scores[3, 3], scores[4, 4], scores[10, 10] = 0.9, 0.8, 0.7  # class 0
    scores[5, 16], scores[15, 18] = 0.6, 0.5  # class 2
    rows, cols = class_balanced_picks(scores, predicted, 4, min_distance=1)
    assert list(zip(rows.tolist(), cols.tolist())) == [(5, 16), (3, 3), (15, 18), (4, 4)]
    with pytest.raises(ValueError, match="differ in size"):
        class_balanced_picks(scores, predicted[:10], 2)


def test_next_picks_runs_every_selection_under_the_same_seed_rule_and_rules() -> None:
    rng = np.random.default_rng(4)
    unsure, predicted = rng.random((48, 48)), np.kron(rng.integers(0, 3, (2, 2)), np.ones((24, 24), np.int64))
    valid = np.ones((48, 48), bool)
    valid[40:] = False
    labelled = _scattered(rng, (48, 48), 5)
    rules = {"image_id": "a", "valid": valid, "seed": 3, "labelled": labelled, "min_distance": 3}
    maps = {"uncertainty": unsure, "predicted": predicted}
    for selection in SELECTIONS:
        _check_rules(next_picks(selection, 6, round_number=1, **maps, **rules), 6, valid, labelled, 3)
    drawn = next_picks("pixelpick", 6, round_number=2, **maps, **rules)
    expected = top_share_picks(unsure, 6, seed=image_seed(3 + 2000, "a"), labelled=labelled, valid=valid,
                               min_distance=3)
    assert all(np.array_equal(a, b) for a, b in zip(drawn, expected))  # the random picks' seed rule
    assert not np.array_equal(drawn[0], next_picks("pixelpick", 6, round_number=1, **maps, **rules)[0])
    with pytest.raises(ValueError, match="need the image's predicted class map"):
        next_picks("class-balanced", 2, round_number=1, uncertainty=unsure, **rules)
    with pytest.raises(ValueError, match="need the image's uncertainty map"):
        next_picks("pixelpick", 2, round_number=1, **rules)
    assert [measure_of(s) for s in SELECTIONS] == ["margin", "entropy", "margin", "margin", None]
