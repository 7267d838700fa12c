import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX
from lc_utils.inference import predict_tiled
from lc_utils.metrics import ConfusionMatrix
from lc_utils.models import build_deeplabv3
from lc_utils.point_scores import (
    POINT_COLUMNS,
    _mean_iou,
    point_sampling_error,
    point_table,
    points_at,
    points_needed,
    predict_points,
    score_points,
    wilson_interval,
)
from lc_utils.sparse import PointAnnotation

UNKNOWN = DEEPGLOBE.unknown_index
KNOWN = [i for i in range(DEEPGLOBE.num_classes) if i != UNKNOWN]


def _width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


def _noisy_points(rng: np.random.Generator, n_groups: int, per_group: int, error: float) -> pd.DataFrame:
    """Points whose prediction is wrong (a random other known class) with probability ``error``."""
    labels = rng.choice(KNOWN, size=n_groups * per_group)
    wrong = rng.random(labels.size) < error
    shift = rng.integers(1, len(KNOWN), labels.size)
    predicted = np.where(wrong, (labels + shift) % len(KNOWN), labels)
    return pd.DataFrame({"image_id": np.repeat([f"img{g}" for g in range(n_groups)], per_group),
                         "label": labels, "predicted": predicted})


# --- Wilson interval ------------------------------------------------------------------------------

def test_wilson_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert isinstance(low, float)
    assert round(low, 3) == 0.490
    assert round(high, 3) == 0.943


def test_wilson_no_trials_is_nan() -> None:
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_wilson_no_successes_is_not_empty() -> None:
    low, high = wilson_interval(0, 20)
    assert low == 0.0
    assert 0.1 < high < 0.2


def test_wilson_elementwise() -> None:
    low, high = wilson_interval(np.array([8, 0, 5, 0]), np.array([10, 20, 5, 0]))
    for i, (k, n) in enumerate([(8, 10), (0, 20), (5, 5)]):
        assert (low[i], high[i]) == pytest.approx(wilson_interval(k, n))
    assert high[2] == 1.0
    assert np.isnan(low[3]) and np.isnan(high[3])


def test_wilson_narrows_with_trials_and_widens_with_confidence() -> None:
    assert _width(wilson_interval(80, 100)) < _width(wilson_interval(8, 10))
    assert _width(wilson_interval(8, 10, 0.99)) > _width(wilson_interval(8, 10, 0.95))


def test_wilson_rejects_more_successes_than_trials() -> None:
    with pytest.raises(ValueError, match="between 0 and trials"):
        wilson_interval(11, 10)


# --- point scores against the confusion matrix ----------------------------------------------------

def test_point_scores_equal_the_confusion_matrix_of_the_same_pixels() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, DEEPGLOBE.num_classes, (40, 50))  # the unknown class among them
    prediction = np.where(rng.random(truth.shape) < 0.3, rng.integers(0, 7, truth.shape), truth)
    points = pd.DataFrame({"image_id": np.repeat(["a", "b"], truth.size // 2),
                           "label": truth.ravel(), "predicted": prediction.ravel()})
    scores = score_points(points, n_boot=0)

    confusion = ConfusionMatrix(DEEPGLOBE.num_classes, schema=DEEPGLOBE)
    confusion.update(prediction, np.where(truth == UNKNOWN, IGNORE_INDEX, truth))  # unknown points dropped
    summary = confusion.summary()
    assert scores.miou == pytest.approx(summary["mean_iou"])
    assert scores.accuracy == pytest.approx(summary["pixel_accuracy"])
    assert scores.n_points == int((truth != UNKNOWN).sum()) == summary["labelled_pixels"]
    np.testing.assert_array_equal(scores.confusion.matrix, confusion.matrix)
    table = confusion.per_class().iloc[KNOWN]
    np.testing.assert_allclose(scores.per_class["iou"], table["iou"])
    np.testing.assert_allclose(scores.per_class["precision"], table["precision"])
    np.testing.assert_allclose(scores.per_class["recall"], table["recall"])
    np.testing.assert_array_equal(scores.per_class["points"], table["support"])


def test_vectorised_mean_iou_equals_the_confusion_matrix() -> None:
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 5, (200, 7, 7)) * (rng.random((200, 7, 7)) < 0.4)
    counts[0] = 0  # nothing at all: NaN
    counts[1, :, 3] = counts[1, 3, :] = 0  # a class absent from truth and prediction: skipped
    means = _mean_iou(counts, np.array(KNOWN))
    for matrix, mean in zip(counts, means):
        expected = ConfusionMatrix.from_counts(matrix, schema=DEEPGLOBE).summary()["mean_iou"]
        np.testing.assert_allclose(mean, expected, equal_nan=True)


def test_handmade_per_class_counts_with_unknown_dropped() -> None:
    urban, agriculture, rangeland, water = (DEEPGLOBE.index(n) for n in
                                            ("urban", "agriculture", "rangeland", "water"))
    pairs = [(urban, urban), (urban, urban), (urban, agriculture),
             (agriculture, agriculture), (agriculture, agriculture),
             (water, urban),
             (rangeland, UNKNOWN),  # predicted unknown: wrong, and rangeland never predicted
             (UNKNOWN, urban), (UNKNOWN, UNKNOWN)]  # unknown truth: dropped
    points = pd.DataFrame(pairs, columns=["label", "predicted"]).assign(image_id="only")
    scores = score_points(points, n_boot=0)

    assert scores.n_points == 7
    assert scores.n_groups == 1
    assert scores.accuracy == pytest.approx(4 / 7)
    assert scores.accuracy_interval == pytest.approx(wilson_interval(4, 7))
    table = scores.per_class
    assert list(table.index) == [DEEPGLOBE.names[i] for i in KNOWN]  # no row for unknown
    assert table.loc["urban", "points"] == 3
    assert table.loc["urban", "precision"] == pytest.approx(2 / 3)  # 2 of the 3 called urban (1 water)
    assert table.loc["urban", "recall"] == pytest.approx(2 / 3)
    assert table.loc["urban", "iou"] == pytest.approx(2 / 4)
    assert table.loc["agriculture", "precision"] == pytest.approx(2 / 3)
    assert table.loc["agriculture", "recall"] == 1.0
    assert table.loc["agriculture", "iou"] == pytest.approx(2 / 3)
    assert (table.loc["agriculture", ["precision_low", "precision_high"]].to_list()
            == pytest.approx(wilson_interval(2, 3)))
    assert (table.loc["agriculture", ["recall_low", "recall_high"]].to_list()
            == pytest.approx(wilson_interval(2, 2)))
    assert np.isnan(table.loc["rangeland", "precision"])
    assert table.loc["rangeland", "recall"] == 0.0
    assert table.loc["water", "iou"] == 0.0
    low, high = wilson_interval(2, 3)
    compact = scores.table()
    assert compact.loc["agriculture", "precision"] == f"0.67 [{low:.2f}, {high:.2f}]"
    assert compact.loc["rangeland", "precision"] == "-" and compact.loc["urban", "points"] == 3
    assert table.loc["forest", "points"] == 0 and np.isnan(table.loc["forest", "iou"])
    # urban, agriculture, rangeland, water; forest and barren absent; unknown left out
    assert scores.miou == pytest.approx((1 / 2 + 2 / 3 + 0 + 0) / 4)
    text = scores.describe()
    assert "from 7 points on 1 image " in text and "unknown" in text
    assert str(scores) == text


def test_bad_points_are_refused() -> None:
    with pytest.raises(ValueError, match="image_id"):
        score_points(pd.DataFrame({"label": [0], "predicted": [0]}))
    with pytest.raises(ValueError, match="known class"):
        score_points(pd.DataFrame({"label": [UNKNOWN], "predicted": [0], "image_id": ["a"]}))
    with pytest.raises(ValueError, match="predicted classes outside"):
        score_points(pd.DataFrame({"label": [0], "predicted": [7], "image_id": ["a"]}))


# --- the bootstrap --------------------------------------------------------------------------------

def test_bootstrap_is_seeded_and_holds_the_estimate() -> None:
    points = _noisy_points(np.random.default_rng(3), 16, 30, error=0.3)
    first = score_points(points, seed=5)
    assert score_points(points, seed=5).miou_interval == first.miou_interval
    assert score_points(points, seed=6).miou_interval != first.miou_interval
    low, high = first.miou_interval
    assert low < first.miou < high
    assert first.n_groups == 16
    assert set(first.summary()) >= {"accuracy", "accuracy_low", "mean_iou", "mean_iou_low", "mean_iou_high"}


def test_more_points_give_a_narrower_interval() -> None:
    rng = np.random.default_rng(4)
    small = score_points(_noisy_points(rng, 16, 50, error=0.3), n_boot=500)
    large = score_points(_noisy_points(rng, 16, 500, error=0.3), n_boot=500)
    assert _width(large.miou_interval) < 0.6 * _width(small.miou_interval)
    assert _width(large.accuracy_interval) < 0.6 * _width(small.accuracy_interval)


def test_clustered_errors_widen_the_group_interval() -> None:
    rng = np.random.default_rng(5)
    n_images, per_image = 20, 50
    labels = rng.choice(KNOWN, size=(n_images, per_image))
    error = np.where(np.arange(n_images) % 2 == 0, 0.0, 0.8)[:, None]  # an image is all right or mostly wrong
    wrong = rng.random(labels.shape) < error
    predicted = np.where(wrong, (labels + rng.integers(1, len(KNOWN), labels.shape)) % len(KNOWN), labels)
    points = pd.DataFrame({"image_id": np.repeat(np.arange(n_images), per_image),
                           "label": labels.ravel(), "predicted": predicted.ravel()})
    by_image = score_points(points, n_boot=500)
    by_point = score_points(points, n_boot=500, group=None)
    assert by_image.miou == by_point.miou
    assert by_point.n_groups is None
    assert _width(by_image.miou_interval) > 1.5 * _width(by_point.miou_interval)


def test_group_bootstrap_covers_the_true_miou() -> None:
    rng = np.random.default_rng(6)
    n_images, side, per_image = 20, 64, 30
    truths, predictions = [], []
    for _ in range(n_images):
        # land cover in 8 x 8 blocks; errors in 4 x 4 patches at a rate of its own per image
        truth = np.kron(rng.choice(KNOWN, size=(8, 8)), np.ones((8, 8), dtype=np.int64))
        wrong = np.kron(rng.random((16, 16)) < rng.uniform(0.1, 0.5), np.ones((4, 4), dtype=bool))
        other = (truth + rng.integers(1, len(KNOWN), truth.shape)) % len(KNOWN)
        truths.append(truth)
        predictions.append(np.where(wrong, other, truth))
    confusion = ConfusionMatrix(DEEPGLOBE.num_classes, schema=DEEPGLOBE)
    confusion.update(np.stack(predictions), np.stack(truths))
    true_miou = confusion.summary()["mean_iou"]

    covered = 0
    for trial in range(100):
        picks = [rng.choice(side * side, per_image, replace=False) for _ in range(n_images)]
        points = pd.DataFrame({
            "image_id": np.repeat(np.arange(n_images), per_image),
            "label": np.concatenate([t.ravel()[p] for t, p in zip(truths, picks)]),
            "predicted": np.concatenate([q.ravel()[p] for q, p in zip(predictions, picks)]),
        })
        low, high = score_points(points, n_boot=300, seed=trial).miou_interval
        covered += low <= true_miou <= high
    assert covered >= 85, f"the interval held the true mIoU {true_miou:.3f} in {covered} of 100"


# --- points from a model --------------------------------------------------------------------------

def test_points_at_reads_the_pixels_and_checks_bounds() -> None:
    prediction = np.arange(12, dtype=np.uint8).reshape(3, 4)
    annotation = PointAnnotation([0, 2, 1], [3, 0, 1], [0, 0, 0])
    np.testing.assert_array_equal(points_at(prediction, annotation), [3, 8, 5])
    with pytest.raises(ValueError, match="tile_7"):
        points_at(prediction, PointAnnotation([3], [0], [0]), source="tile_7")


def test_predict_points_matches_tiled_prediction() -> None:
    torch.manual_seed(0)
    model = build_deeplabv3(7, "mobilenet_v3_large", None).eval()
    with torch.no_grad():  # fresh batch-norm statistics give one class everywhere: points read
        for module in model.modules():  # at the wrong pixel would go unnoticed
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.fill_(1e-2)
    rng = np.random.default_rng(7)
    images = {name: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for name in ("a", "b")}
    annotations = {name: PointAnnotation(rng.integers(0, 64, n), rng.integers(0, 64, n), rng.choice(KNOWN, n))
                   for name, n in (("a", 20), ("b", 15), ("unused", 3))}
    table = predict_points(model, images, annotations)

    assert list(table.columns) == list(POINT_COLUMNS)
    assert len(table) == 35
    assert table["predicted"].nunique() > 1
    for name, image in images.items():
        rows = table[table["image_id"] == name]
        expected = predict_tiled(model, image)
        annotation = annotations[name]
        np.testing.assert_array_equal(rows["row"], annotation.rows)
        np.testing.assert_array_equal(rows["col"], annotation.cols)
        np.testing.assert_array_equal(rows["label"], annotation.labels)
        np.testing.assert_array_equal(rows["predicted"], expected[annotation.rows, annotation.cols])
    assert score_points(table, n_boot=50).n_points == 35

    with pytest.raises(ValueError, match="'c'"):
        predict_points(model, [("c", images["a"])], annotations)


def test_point_sampling_error_narrows_with_more_points_around_the_pixel_miou() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 7, (4, 128, 128))
    predicted = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 6, truth.shape))
    table = point_sampling_error(zip(truth, predicted), [50, 400, 3200], repeats=100, seed=1)
    scored = truth != DEEPGLOBE.unknown_index
    pixels = ConfusionMatrix(7)
    pixels.update(torch.as_tensor(predicted[scored]), torch.as_tensor(truth[scored]))
    assert table["pixel_miou"].iloc[0] == pytest.approx(pixels.summary()["mean_iou"])
    assert table["error_sd"].is_monotonic_decreasing and table["within"].iloc[-1] > table["within"].iloc[0]
    assert table["error_low"].iloc[-1] < 0 < table["error_high"].iloc[-1]
    assert table["within"].iloc[-1] > 0.9  # 3,200 points: within ±0.03 almost always
    again = point_sampling_error(zip(truth, predicted), [50, 400, 3200], repeats=100, seed=1)
    assert again.equals(table)


def test_points_needed_is_the_fewest_that_stay_within_the_tolerance() -> None:
    sampling = pd.DataFrame({"n_points": [50, 400, 800], "within": [0.6, 0.96, 1]})
    assert points_needed(sampling) == 400 and points_needed(sampling, share=0.99) == 800
    assert points_needed(sampling[:1]) is None


# --- what cannot be estimated, and maps that do not fit -------------------------------------------

def test_one_image_or_one_point_gives_no_interval_rather_than_a_zero_width_one() -> None:
    points = _noisy_points(np.random.default_rng(8), 1, 400, error=0.4)
    with pytest.warns(UserWarning, match="1 image"):
        scores = score_points(points)
    assert np.isnan(scores.miou_interval).all() and 0 < scores.miou < 1
    assert "point mIoU" in scores.describe() and "no interval from 1 image" in scores.describe()
    assert "(nan" not in scores.describe() and scores.summary()["mean_iou_note"] == scores.miou_note
    with pytest.warns(UserWarning, match="1 point"):
        single = score_points(pd.DataFrame({"image_id": ["a"], "label": [1], "predicted": [1]}), group=None)
    assert np.isnan(single.miou_interval).all() and "no interval from 1 point" in single.describe()
    all_right = pd.DataFrame({"image_id": ["a", "a", "b"], "label": [1, 2, 1], "predicted": [1, 2, 1]})
    with pytest.warns(UserWarning, match="every resample"):
        same = score_points(all_right)
    assert np.isnan(same.miou_interval).all() and same.miou == 1.0
    enough = score_points(_noisy_points(np.random.default_rng(8), 4, 50, error=0.4))
    assert enough.miou_note is None and enough.miou_interval[0] < enough.miou_interval[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no interval asked for: nothing to warn about
        assert score_points(points, n_boot=0).miou_note is None


def test_a_prediction_map_must_be_integer_classes_of_the_image_size() -> None:
    annotation = PointAnnotation([0, 5], [1, 6], [2, 2])
    fits = np.full((8, 8), 2, np.uint8)
    shapes = {"a": (8, 8)}
    assert point_table({"a": fits}, {"a": annotation}, image_shapes=shapes)["predicted"].tolist() == [2, 2]
    upscaled = np.kron(fits, np.ones((2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"'a': the prediction is 16x16 but the image is 8x8"):
        point_table({"a": upscaled}, {"a": annotation}, image_shapes=shapes)
    with pytest.raises(ValueError, match=r"'a': the prediction holds float32 values, not integer classes"):
        point_table({"a": np.full((8, 8), 0.7, np.float32)}, {"a": annotation})
    with pytest.raises(ValueError, match=r"prediction\(s\) for image\(s\) without points: '0009'"):
        point_table({"a": fits, "0009": fits}, {"a": annotation})
    table = point_table({"a": fits, "0009": fits}, {"a": annotation}, skip_unannotated=True)
    assert set(table["image_id"]) == {"a"}


def test_classes_outside_the_schema_name_their_images() -> None:
    points = pd.DataFrame({"image_id": ["a", "b", "b"], "label": [0, 0, 1], "predicted": [0, 255, 255]})
    with pytest.raises(ValueError, match=r"predicted classes outside 0..6: 255 on image\(s\) 'b' \(2 points"):
        score_points(points)
    points = pd.DataFrame({"image_id": ["a", "c"], "label": [0, 9], "predicted": [0, 0]})
    with pytest.raises(ValueError, match=r"labels outside 0..6 .*: 9 on image\(s\) 'c' \(1 point\)"):
        score_points(points)
