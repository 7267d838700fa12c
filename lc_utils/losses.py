"""Losses over labelled pixels only: the partial cross-entropy, and a soft Dice term that keeps
rare classes from vanishing; and the one loss over the *unlabelled* pixels, consistency between a
weak and a strong view of a crop."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classes import IGNORE_INDEX


class PartialCrossEntropyLoss(nn.Module):
    """Cross-entropy over the labelled pixels of a sparse label map, ignoring the rest.

    ``loss = sum_{labelled i} w_{y_i} * CE(logits_i, y_i) / sum_{labelled i} w_{y_i}``

    with ``w`` the optional class ``weight`` (all ones by default), so the mean is over labelled
    pixels, not over all pixels: dividing by every pixel would shrink the loss (and the gradients)
    by the labelled fraction, e.g. 1,000x at 0.1% labels. A batch without any labelled pixel gives
    a zero loss that is still connected to the logits (``backward`` works, gradients are zero),
    never NaN. Unlabelled pixels (``ignore_index``) get exactly zero gradient.

    ``logit_adjustment`` (C,) is added to the logits inside the loss only (Menon et al., 2021,
    "Long-tail learning via logit adjustment"). With ``log(sampled prior / true prior)`` from
    :func:`prior_correction`, a model trained on points whose class shares differ from the
    image's (stratified points: equal shares) learns logits for the *true* class prior, so
    prediction needs no change.

    ``dice_weight`` adds that multiple of :func:`partial_soft_dice` over the same labelled pixels,
    a term in which every class present counts alike.
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        logit_adjustment: torch.Tensor | None = None,
        dice_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if dice_weight < 0:
            raise ValueError(f"dice_weight cannot be negative, got {dice_weight}")
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        self.label_smoothing = label_smoothing
        weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", weight)
        adjustment = None if logit_adjustment is None else torch.as_tensor(logit_adjustment,
                                                                           dtype=torch.float32)
        if adjustment is not None and (adjustment.ndim != 1 or not torch.isfinite(adjustment).all()):
            raise ValueError(f"logit_adjustment must be a finite (C,) vector, got {adjustment}")
        self.register_buffer("logit_adjustment", adjustment)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (N, C, H, W), ``target`` (N, H, W) class indices with ``ignore_index`` elsewhere."""
        if logits.ndim != target.ndim + 1 or logits.shape[2:] != target.shape[1:]:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
        target = target.long()
        labelled = target != self.ignore_index
        num_classes = logits.shape[1]
        if self.logit_adjustment is not None:
            if len(self.logit_adjustment) != num_classes:
                raise ValueError(f"logit_adjustment has {len(self.logit_adjustment)} values for "
                                 f"{num_classes} classes")
            logits = logits + self.logit_adjustment.to(logits.dtype).view(1, -1, *([1] * (logits.ndim - 2)))
        bad = labelled & ((target < 0) | (target >= num_classes))
        if bad.any():
            raise ValueError(f"target holds labels outside 0..{num_classes - 1} and "
                             f"{self.ignore_index}: {torch.unique(target[bad]).tolist()[:10]}")
        per_pixel = F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                    reduction="none", label_smoothing=self.label_smoothing)
        if self.weight is None:
            denominator = labelled.sum()
        else:
            denominator = self.weight.to(logits.dtype)[target[labelled]].sum()
        # sum() keeps the graph even when nothing is labelled; clamp avoids 0/0.
        loss = per_pixel.sum() / denominator.clamp_min(1e-12 if self.weight is not None else 1)
        if self.dice_weight:
            loss = loss + self.dice_weight * partial_soft_dice(logits, target, self.ignore_index)
        return loss


def partial_soft_dice(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                      smooth: float = 1.0) -> torch.Tensor:
    """``1 - mean soft Dice`` over the classes the batch's labelled pixels hold, unlabelled pixels
    left out.

    Each class counts once whatever its number of pixels, so a class on 2% of the pixels weighs as
    much as one on 60%: the gradient that cross-entropy gives a rare class grows with its
    mistakes instead of its pixels (Milletari et al., 2016; the DeepGlobe 2018 land cover entries
    paired cross-entropy with such a region term). Classes absent from the batch's labels are left
    out rather than pushed to zero. Zero, still connected to the logits, without labelled pixels.
    """
    target = target.long()
    labelled = (target != ignore_index).unsqueeze(1)  # (N, 1, H, W)
    if not labelled.any():
        return logits.sum() * 0.0
    # Masks and sums over the whole map: indexing the labelled pixels out is several times slower
    # on a CPU, forwards and backwards.
    probs = F.softmax(logits.float(), dim=1) * labelled
    onehot = torch.zeros_like(probs).scatter_(1, target.masked_fill(~labelled[:, 0], 0).unsqueeze(1), 1.0)
    onehot = onehot * labelled
    dims = (0, *range(2, probs.ndim))
    counts = onehot.sum(dims)
    present = counts > 0
    intersection = (probs * onehot).sum(dims)
    dice = (2 * intersection + smooth) / (probs.sum(dims) + counts + smooth)
    return 1 - dice[present].mean()


def class_weights_from_counts(counts: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """Inverse-frequency class weights ``(total / count) ** power``, normalised to mean 1.

    Classes never seen get weight 0. ``power=0.5`` (the square root) softens the extremes.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    weights = torch.where(counts > 0, (counts.sum() / counts.clamp_min(1)) ** power, 0.0)
    seen = counts > 0
    weights[seen] /= weights[seen].mean()
    return weights.float()


def prior_correction(sampled_counts: torch.Tensor | np.ndarray, true_counts: torch.Tensor | np.ndarray
                     ) -> torch.Tensor:
    """``log(sampled share / true share)`` per class: the ``logit_adjustment`` that undoes a
    sampling bias in the labels.

    ``sampled_counts``: labelled points per class (what the loss sees); ``true_counts``: how
    common each class really is (pixels of the training masks, or the points of a small uniform
    pilot annotation, which estimate the same shares without dense masks). Both shares are taken
    over the classes present in both; any other class gets 0 (no point of it is ever in the loss,
    or its true share is unknown).
    """
    sampled = torch.tensor(np.asarray(sampled_counts, dtype=np.float64))
    true = torch.tensor(np.asarray(true_counts, dtype=np.float64))
    if sampled.shape != true.shape or sampled.ndim != 1:
        raise ValueError(f"need two (C,) count vectors, got {tuple(sampled.shape)} and {tuple(true.shape)}")
    if (sampled < 0).any() or (true < 0).any():
        raise ValueError("counts cannot be negative")
    both = (sampled > 0) & (true > 0)
    if not both.any():
        raise ValueError("no class has both sampled and true counts")
    adjustment = torch.zeros_like(sampled)
    adjustment[both] = (torch.log(sampled[both] / sampled[both].sum())
                        - torch.log(true[both] / true[both].sum()))
    return adjustment.float()


def consistency_loss(strong_logits: torch.Tensor, weak_logits: torch.Tensor, target: torch.Tensor,
                     threshold: float = 0.95, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy of the strong view's logits against the weak view's confident predictions, on
    the unlabelled pixels only (FixMatch's rule, Sohn et al. 2020, per pixel as CRGNet and UniMatch
    use it on segmentation).

    ``weak_logits`` (N, C, H, W; no gradient flows into them) give each pixel a target class and a
    confidence; a pixel counts where ``target`` is ``ignore_index`` (unlabelled: the points have
    the partial loss) and the confidence is at least ``threshold``. The mean is over the counted
    pixels; with none, the loss is zero and still connected to ``strong_logits``. Both views must
    show the same pixels (a photometric change only: colour, noise), so that pixel i of one is
    pixel i of the other.
    """
    if strong_logits.shape != weak_logits.shape or strong_logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"views {tuple(strong_logits.shape)}, {tuple(weak_logits.shape)} and target "
                         f"{tuple(target.shape)} do not match")
    with torch.no_grad():
        confidence, pseudo = weak_logits.detach().float().softmax(dim=1).max(dim=1)
        counted = (target == ignore_index) & (confidence >= threshold)
    per_pixel = F.cross_entropy(strong_logits.float(), pseudo, reduction="none")
    return (per_pixel * counted).sum() / counted.sum().clamp_min(1)
