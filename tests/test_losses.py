import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lc_utils.classes import IGNORE_INDEX
from lc_utils.losses import (
    PartialCrossEntropyLoss,
    class_weights_from_counts,
    partial_soft_dice,
    prior_correction,
)


def _batch(seed: int, labelled_share: float = 0.1, n: int = 2, c: int = 7, size: int = 12):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, size, size, generator=g)
    target = torch.randint(0, c, (n, size, size), generator=g)
    unlabelled = torch.rand(n, size, size, generator=g) >= labelled_share
    target[unlabelled] = IGNORE_INDEX
    return logits, target


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 1.0))
def test_equals_cross_entropy_on_the_labelled_pixels_alone(seed: int, share: float) -> None:
    logits, target = _batch(seed, share)
    labelled = target != IGNORE_INDEX
    if not labelled.any():
        return
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[labelled], target[labelled])
    torch.testing.assert_close(PartialCrossEntropyLoss()(logits, target), expected)


def test_not_divided_by_all_pixels() -> None:
    logits, target = _batch(0, 0.01)
    loss = PartialCrossEntropyLoss()(logits, target)
    diluted = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum") / target.numel()
    assert loss > 20 * diluted


def test_class_weights_match_torch_weighted_mean() -> None:
    logits, target = _batch(1, 0.3)
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 0.1, 0.0])
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(PartialCrossEntropyLoss(weight=weight)(logits, target), expected)


def test_label_smoothing_matches_torch() -> None:
    logits, target = _batch(2, 0.3)
    labelled = target != IGNORE_INDEX
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[labelled], target[labelled], label_smoothing=0.1)
    torch.testing.assert_close(PartialCrossEntropyLoss(label_smoothing=0.1)(logits, target), expected)


def test_unlabelled_logits_do_not_matter() -> None:
    logits, target = _batch(3, 0.2)
    changed = logits.clone()
    changed[(target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)] = 1e3
    loss_fn = PartialCrossEntropyLoss()
    assert loss_fn(logits, target) == loss_fn(changed, target)


def test_gradients_are_zero_on_unlabelled_pixels() -> None:
    logits, target = _batch(4, 0.2)
    logits.requires_grad_(True)
    PartialCrossEntropyLoss()(logits, target).backward()
    unlabelled = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    assert (logits.grad[unlabelled] == 0).all()
    assert (logits.grad[~unlabelled].abs() > 0).any()


@pytest.mark.parametrize("weight", [None, torch.ones(7)])
def test_batch_without_labels_gives_zero_loss_with_a_gradient_path(weight) -> None:
    logits = torch.randn(2, 7, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), IGNORE_INDEX)
    loss = PartialCrossEntropyLoss(weight=weight)(logits, target)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and (logits.grad == 0).all()


def test_bad_targets_are_refused() -> None:
    logits = torch.randn(1, 7, 4, 4)
    target = torch.full((1, 4, 4), IGNORE_INDEX)
    target[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"outside 0..6 and 255: \[7\]"):
        PartialCrossEntropyLoss()(logits, target)
    with pytest.raises(ValueError, match="do not match"):
        PartialCrossEntropyLoss()(logits, target[:, :3])


def test_class_weights_from_counts() -> None:
    weights = class_weights_from_counts(torch.tensor([100, 25, 0, 1]))
    assert weights[2] == 0
    assert weights[3] > weights[1] > weights[0]
    assert weights[[0, 1, 3]].mean() == pytest.approx(1.0)


def test_prior_correction_is_log_of_sampled_over_true_share() -> None:
    adjustment = prior_correction([10, 10, 0, 20], [60, 20, 5, 20])
    # Shares over the classes present in both (0, 1, 3): sampled 1/4, 1/4, 1/2; true 0.6, 0.2, 0.2.
    expected = torch.log(torch.tensor([0.25 / 0.6, 0.25 / 0.2, 1.0, 0.5 / 0.2]))
    expected[2] = 0.0
    torch.testing.assert_close(adjustment, expected)
    with pytest.raises(ValueError, match="negative"):
        prior_correction([1, -1], [1, 1])
    with pytest.raises(ValueError, match="no class"):
        prior_correction([1, 0], [0, 1])


def test_logit_adjustment_makes_the_fitted_prior_the_true_one() -> None:
    """A model that is one bias vector, fitted to labels drawn with equal shares (stratified), learns
    those equal shares with the plain loss and the true shares once the loss is prior-corrected."""
    true_prior = torch.tensor([0.7, 0.2, 0.1])
    labels = torch.tensor([0] * 100 + [1] * 100 + [2] * 100).view(1, 1, -1)  # equal shares
    sampled_counts = torch.bincount(labels.flatten(), minlength=3)

    def fitted_prior(loss_fn: PartialCrossEntropyLoss) -> torch.Tensor:
        bias = torch.zeros(3, requires_grad=True)
        optimizer = torch.optim.LBFGS([bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = loss_fn(bias.view(1, 3, 1, 1).expand(1, 3, 1, labels.shape[-1]), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        return torch.softmax(bias.detach(), 0)

    plain = fitted_prior(PartialCrossEntropyLoss())
    torch.testing.assert_close(plain, torch.full((3,), 1 / 3), atol=1e-4, rtol=0)
    corrected = fitted_prior(PartialCrossEntropyLoss(logit_adjustment=prior_correction(sampled_counts,
                                                                                         true_prior)))
    torch.testing.assert_close(corrected, true_prior, atol=1e-4, rtol=0)


def test_logit_adjustment_must_fit_the_logits() -> None:
    logits, target = _batch(2, 0.5)
    with pytest.raises(ValueError, match="3 values for 7 classes"):
        PartialCrossEntropyLoss(logit_adjustment=torch.zeros(3))(logits, target)
    with pytest.raises(ValueError, match="finite"):
        PartialCrossEntropyLoss(logit_adjustment=torch.tensor([0.0, float("-inf")]))


def test_soft_dice_is_zero_for_a_perfect_prediction_and_ignores_unlabelled_pixels() -> None:
    target = torch.full((1, 6, 6), IGNORE_INDEX)
    target[0, :2] = 0
    target[0, 4, 4] = 3  # one pixel of a rare class
    logits = torch.full((1, 7, 6, 6), -30.0)
    logits[0, 0, :2] = 30.0
    logits[0, 3, 4, 4] = 30.0
    logits[0, 5, 2:] = 30.0  # whatever the model says on unlabelled pixels does not count
    logits[0, 5, 4, 4] = -30.0
    assert float(partial_soft_dice(logits, target, smooth=0.0)) == pytest.approx(0.0, abs=1e-6)
    logits[0, 3, 4, 4], logits[0, 0, 4, 4] = -30.0, 30.0  # the rare pixel called class 0
    # class 3: dice 0; class 0: 2 * 12 / (13 + 12): the one wrong pixel costs as much as a class
    expected = 1 - (0 + 24 / 25) / 2
    assert float(partial_soft_dice(logits, target, smooth=0.0)) == pytest.approx(expected, abs=1e-5)


def test_dice_term_pulls_harder_on_the_pixels_of_a_rare_class() -> None:
    """Cross-entropy pulls every pixel's true class alike, so a class's share of the pull is its
    share of the pixels; the Dice term pulls a rare class's pixels harder."""
    target = torch.zeros(1, 20, 20, dtype=torch.long)
    target[0, :2, :2] = 4  # 1% of the pixels
    logits = torch.zeros(1, 7, 20, 20, requires_grad=True)

    def rare_over_common(loss_fn) -> float:
        """How much harder a rare pixel's true-class logit is pulled than a common pixel's."""
        (grad,) = torch.autograd.grad(loss_fn(logits, target), logits)
        pull = grad.gather(1, target[:, None]).abs()[:, 0]
        return float(pull[target == 4].mean() / pull[target == 0].mean())

    assert rare_over_common(PartialCrossEntropyLoss()) == pytest.approx(1.0)
    assert rare_over_common(partial_soft_dice) > 5
    combined = PartialCrossEntropyLoss(dice_weight=1.0)
    torch.testing.assert_close(combined(logits, target),
                               PartialCrossEntropyLoss()(logits, target) + partial_soft_dice(logits, target))
    empty = torch.full((1, 20, 20), IGNORE_INDEX)
    loss = combined(logits, empty)
    loss.backward()
    assert float(loss) == 0.0
    with pytest.raises(ValueError, match="dice_weight"):
        PartialCrossEntropyLoss(dice_weight=-1.0)
