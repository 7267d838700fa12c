"""The consistency term on unlabelled pixels: zero where nothing is confident, never on a labelled
pixel, warmed up, and leaving the crops as they are."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lc_utils.classes import IGNORE_INDEX
from lc_utils.losses import PartialCrossEntropyLoss, consistency_loss
from lc_utils.run_spec import DENSE, RunSpec
from lc_utils.training import Consistency, TrainingStep, fit, make_loader
from lc_utils.transforms import strong_view


def _target(n: int = 2, size: int = 8) -> torch.Tensor:
    target = torch.full((n, size, size), IGNORE_INDEX)
    target[:, 0, :4] = 2  # a few labelled pixels, the rest unlabelled
    return target


def test_nothing_confident_gives_a_zero_term_that_still_back_propagates() -> None:
    weak = torch.zeros(2, 7, 8, 8)  # every class alike: confidence 1/7 everywhere
    strong = torch.randn(2, 7, 8, 8, requires_grad=True)
    loss = consistency_loss(strong, weak, _target(), threshold=0.95)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(strong.grad) == 0


def test_the_term_never_touches_a_labelled_pixel() -> None:
    weak = torch.zeros(2, 7, 8, 8)
    weak[:, 3] = 10.0  # confident everywhere: class 3
    strong = torch.randn(2, 7, 8, 8, requires_grad=True)
    target = _target()
    consistency_loss(strong, weak, target, threshold=0.9).backward()
    per_pixel = strong.grad.abs().sum(dim=1)
    labelled = target != IGNORE_INDEX
    assert torch.count_nonzero(per_pixel[labelled]) == 0  # the points have the partial loss
    assert (per_pixel[~labelled] > 0).all()
    weak_leaf = weak.clone().requires_grad_(True)
    consistency_loss(strong, weak_leaf, target).backward()
    assert weak_leaf.grad is None  # the targets get no gradient


def test_the_term_warms_up_and_is_checked() -> None:
    term = Consistency(weight=2.0, warmup_steps=100)
    assert [term.ramp(s) for s in (0, 50, 100, 400)] == [0.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="threshold"):
        Consistency(threshold=0.0)
    with pytest.raises(ValueError, match="dense labels leave none"):
        RunSpec(strategy=DENSE, consistency_weight=1.0)
    assert RunSpec().consistency() is None
    assert RunSpec(consistency_weight=0.5, seed=3).consistency() == Consistency(0.5, 0.95, 100, seed=3)


def test_a_strong_view_moves_no_pixel_and_follows_its_own_generator() -> None:
    images = torch.randn(2, 3, 8, 8)
    first = strong_view(images, 0.5, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and not torch.equal(first, images)
    assert torch.equal(first, strong_view(images, 0.5, torch.Generator().manual_seed(1)))
    state = torch.get_rng_state()
    strong_view(images, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)  # torch's own generator untouched: crops unchanged


class _Recording(PartialCrossEntropyLoss):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen.append(target.clone())
        return super().forward(logits, target)


def test_training_with_the_term_takes_the_same_batches_and_learns_otherwise() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (16, 8, 8), generator=generator)
    images = nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 2 - 1
    sparse = labels.clone()
    sparse[torch.rand(labels.shape, generator=generator) > 0.1] = IGNORE_INDEX
    loader = make_loader(TensorDataset(images, sparse), 4, shuffle=True)
    runs = {}
    for name, term in (("without", None), ("with", Consistency(weight=1.0, threshold=0.4, warmup_steps=2))):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
        loss = _Recording()
        fit(TrainingStep(model, loss, lr=0.05, consistency=term), loader, epochs=3, seed=1, progress=False)
        runs[name] = (loss.seen, model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(runs["without"][0], runs["with"][0]))  # the same crops
    assert len(runs["with"][0]) == 12
    assert any(not torch.equal(runs["with"][1][k], runs["without"][1][k]) for k in runs["with"][1])
