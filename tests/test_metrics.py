import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import confusion_matrix, jaccard_score, precision_recall_fscore_support

from lc_utils.classes import IGNORE_INDEX, ClassSchema
from lc_utils.metrics import ConfusionMatrix

LABELS = st.integers(0, 4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200).flatmap(lambda n: st.tuples(
    arrays(np.int64, n, elements=LABELS), arrays(np.int64, n, elements=LABELS))))
def test_agrees_with_scikit_learn(pair) -> None:
    truth, prediction = pair
    confusion = ConfusionMatrix(5, schema=None)
    confusion.update(prediction, truth)
    labels = list(range(5))
    np.testing.assert_array_equal(confusion.matrix, confusion_matrix(truth, prediction, labels=labels))
    table = confusion.per_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, prediction, labels=labels, zero_division=np.nan)
        iou = jaccard_score(truth, prediction, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(table["precision"], precision, equal_nan=True)
    np.testing.assert_allclose(table["recall"], recall, equal_nan=True)
    np.testing.assert_array_equal(table["support"], support)
    # Where a class is absent from truth and prediction sklearn says 0 (or leaves F1 at 0 where
    # precision or recall is undefined); here it is NaN and left out of the means.
    present = ((table["support"] > 0) | (confusion.matrix.sum(axis=0) > 0)).to_numpy()
    np.testing.assert_allclose(table["iou"][present], iou[present])
    np.testing.assert_allclose(table["f1"][present], np.nan_to_num(f1[present]))
    assert table["iou"][~present].isna().all() and table["f1"][~present].isna().all()
    assert confusion.summary(exclude=())["mean_iou"] == pytest.approx(np.mean(iou[present]))
    assert confusion.summary()["pixel_accuracy"] == pytest.approx(np.mean(truth == prediction))


def test_ignore_index_is_really_ignored() -> None:
    truth = torch.tensor([[0, 1, IGNORE_INDEX], [IGNORE_INDEX, 2, 2]])
    prediction = torch.tensor([[0, 2, 3], [1, 2, 2]])
    confusion = ConfusionMatrix(4, schema=None)
    confusion.update(prediction, truth)
    assert confusion.matrix.sum() == 4
    assert confusion.matrix[1, 2] == 1 and confusion.matrix[:, 3].sum() == 0


def test_unknown_is_left_out_of_the_means_by_default() -> None:
    truth = np.array([0, 0, 1, 1, 6, 6])
    prediction = np.array([0, 0, 1, 1, 0, 0])
    confusion = ConfusionMatrix(7)
    confusion.update(prediction, truth)
    table = confusion.per_class()
    assert table.index[6] == "unknown" and table.loc["unknown", "iou"] == 0
    # Classes 2..5 are absent from truth and prediction: NaN, skipped, not 0 or 1.
    assert table.loc[["rangeland", "forest", "water", "barren"], "iou"].isna().all()
    default = confusion.summary()
    assert default["mean_iou"] == pytest.approx((0.5 + 1.0) / 2)
    assert confusion.summary(exclude=())["mean_iou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert default["pixel_accuracy"] == pytest.approx(4 / 6)


def test_custom_schema_names_and_exclusion() -> None:
    schema = ClassSchema(("road", "grass", "void"), ((0, 0, 0), (0, 255, 0), (255, 255, 255)),
                         unknown_index=2)
    confusion = ConfusionMatrix(3, schema=schema)
    confusion.update(np.array([0, 1, 2]), np.array([0, 1, 1]))
    assert list(confusion.per_class().index) == ["road", "grass", "void"]
    assert confusion.default_exclude == (2,)
    with pytest.raises(ValueError, match="schema has 3 classes"):
        ConfusionMatrix(4, schema=schema)


def test_accumulating_batches_equals_one_big_batch() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 7, (6, 16, 16))
    truth[rng.random(truth.shape) < 0.3] = IGNORE_INDEX
    prediction = rng.integers(0, 7, (6, 16, 16))
    whole, parts = ConfusionMatrix(7), ConfusionMatrix(7)
    whole.update(torch.from_numpy(prediction), torch.from_numpy(truth))
    parts.update_many(zip(prediction, truth))
    np.testing.assert_array_equal(whole.matrix, parts.matrix)
    # Not the same as averaging per-image IoUs:
    per_image = []
    for p, t in zip(prediction, truth):
        single = ConfusionMatrix(7)
        single.update(p, t)
        per_image.append(single.summary()["mean_iou"])
    assert whole.summary()["mean_iou"] != pytest.approx(np.mean(per_image), abs=1e-9)


def test_empty_and_bad_inputs() -> None:
    confusion = ConfusionMatrix(7)
    assert math.isnan(confusion.summary()["mean_iou"])
    assert confusion.per_class()["iou"].isna().all()
    with pytest.raises(ValueError, match="differ"):
        confusion.update(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="prediction holds classes outside"):
        confusion.update(np.array([9]), np.array([1]))
    with pytest.raises(ValueError, match="target holds labels outside"):
        confusion.update(np.array([1]), np.array([8]))


def test_normalized_rows() -> None:
    confusion = ConfusionMatrix(3, schema=None)
    confusion.update(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    normalized = confusion.normalized()
    np.testing.assert_allclose(normalized[0], [0.5, 0.5, 0])
    assert np.isnan(normalized[2]).all()
