"""The paired bootstrap over validation tiles: intervals with known answers."""

import numpy as np
import pytest

from lc_utils.metrics import ConfusionMatrix
from lc_utils.tile_bootstrap import mean_iou_of, paired_gap, pooled_gap, tile_confusions

KEEP = np.array([True] * 6 + [False])  # DeepGlobe's headline mIoU leaves "unknown" out


def _tiles(seed: int, n: int = 12, wrong: float = 0.3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tiles = {}
    for k in range(n):
        truth = rng.integers(0, 7, (32, 32))
        prediction = np.where(rng.random(truth.shape) < wrong, rng.integers(0, 7, truth.shape), truth)
        tiles[f"t{k:02d}"] = (truth, prediction)
    return tiles


def test_mean_iou_of_summed_counts_is_the_confusion_matrix_s() -> None:
    tiles = _tiles(0)
    confusions = tile_confusions(tiles, 7)
    whole = ConfusionMatrix(7)
    for truth, prediction in tiles.values():
        whole.update(prediction, truth)
    summed = np.sum([np.array(c) for c in confusions.values()], axis=0)
    assert mean_iou_of(summed, KEEP) == pytest.approx(whole.summary()["mean_iou"])
    assert np.isnan(mean_iou_of(np.zeros((7, 7), dtype=int), KEEP))


def test_identical_predictions_give_a_zero_width_interval_at_zero() -> None:
    confusions = tile_confusions(_tiles(1), 7)
    gap = paired_gap(confusions, confusions, KEEP, n_boot=500)
    assert (gap.gap, gap.low, gap.high) == (0.0, 0.0, 0.0)
    assert not gap.measurable and "not measurable on 12 tiles" in gap.describe()


def test_a_method_better_on_every_tile_is_measurable_and_the_interval_holds_the_gap() -> None:
    truths = _tiles(2, wrong=0.0)
    better = tile_confusions({t: (truth, truth) for t, (truth, _) in truths.items()}, 7)
    every_third = np.arange(32 * 32).reshape(32, 32) % 3 == 0
    worse = tile_confusions({t: (truth, np.where(every_third, 0, truth))
                             for t, (truth, _) in truths.items()}, 7)
    gap = paired_gap(better, worse, KEEP, n_boot=500)
    assert gap.gap > 0.1 and gap.low <= gap.gap <= gap.high and gap.low > 0 and gap.measurable
    reverse = paired_gap(worse, better, KEEP, n_boot=500)
    assert reverse.gap == pytest.approx(-gap.gap) and reverse.high < 0


def test_pairing_removes_what_method_and_control_share() -> None:
    """Hard and easy tiles move both scores alike: the paired interval is far narrower than the
    spread of either score over the same resamples."""
    rng = np.random.default_rng(3)
    method, control = {}, {}
    for k in range(16):
        truth = rng.integers(0, 6, (32, 32))
        hardness = rng.uniform(0.1, 0.7)  # the tile's own difficulty, shared by both
        noisy = rng.random(truth.shape)
        method[f"t{k}"] = (truth, np.where(noisy < hardness, 0, truth))
        control[f"t{k}"] = (truth, np.where(noisy < hardness + 0.05, 0, truth))
    a, b = tile_confusions(method, 7), tile_confusions(control, 7)
    paired = paired_gap(a, b, KEEP, n_boot=1000)
    nothing = {t: np.eye(7, dtype=int) for t in a}  # a control whose score does not move: the method alone
    alone = paired_gap(a, nothing, KEEP, n_boot=1000)
    assert paired.measurable and (paired.high - paired.low) < 0.3 * (alone.high - alone.low)


def test_other_tiles_are_refused_and_seeds_pool() -> None:
    a = tile_confusions(_tiles(4, n=5), 7)
    with pytest.raises(ValueError, match="other tiles"):
        paired_gap(a, {**a, "extra": a["t00"]}, KEEP)
    pooled = pooled_gap([(a, a), (a, a)], KEEP, n_boot=200)
    assert (pooled.gap, pooled.low, pooled.high) == (0.0, 0.0, 0.0) and pooled.n_tiles == 5
