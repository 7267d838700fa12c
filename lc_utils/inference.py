"""Sliding-window prediction over full tiles (a DeepGlobe image is 2448 x 2448)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classes import DEEPGLOBE, ClassSchema
from .datasets import normalize_image, read_pair, window_starts
from .masks import OnInvalid
from .metrics import ConfusionMatrix
from .models import model_device, segmentation_logits
from .settings import autocast


def inference_memory_format(device: torch.device) -> torch.memory_format:
    """The memory format prediction runs in: channels-last on CUDA and on a CPU, the plain
    contiguous one elsewhere (Apple's MPS, not measured). On the 2-core CPU here channels-last runs
    a 512 x 512 window 1.25x (ResNet-50) and 1.8x (MobileNetV3) faster than the contiguous format,
    once model and input are both in it (``benchmarks/bench_inference.py`` measures both)."""
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.contiguous_format


DEFAULT_OVERLAP = 0.05
"""Least share of a window that overlaps its neighbour in :func:`predict_tiled`: at least 26 pixels
of a 512 window, so that a ramp blends every seam. A 2448 x 2448 DeepGlobe tile then takes 5 x 5
windows overlapping by 28 pixels, 1.09 times its area (0.25 took 7 x 7 windows, 2.1 times its
area, for the same mIoU: ``benchmarks/results/tiling_overlap.json``)."""


def device_of(model: nn.Module, device: str | torch.device | None = None) -> torch.device:
    """Where ``model`` runs: the device its weights are on. ``device``, when given, must be that one
    (a model is never moved behind its owner's back: an error says how to move it)."""
    where = model_device(model)
    if device is None or device == "auto":
        return where
    wanted = torch.device(device)
    if wanted.type != where.type or (wanted.index is not None and wanted.index != where.index):
        raise ValueError(f"the model is on {where} but device={str(wanted)!r} was asked for: move it first "
                         f"(model.to({str(wanted)!r})) or leave device out")
    return where


@contextmanager
def memory_format(model: nn.Module, fmt: torch.memory_format) -> Iterator[None]:
    """Run the body with ``model``'s weights in ``fmt``, then put them back as they were."""
    weights = next((p for p in model.parameters() if p.ndim == 4), None)
    before = (torch.channels_last if weights is not None and not weights.is_contiguous()
              and weights.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    model.to(memory_format=fmt)
    try:
        yield
    finally:
        model.to(memory_format=before)


def blend_window(height: int, width: int, ramp: int | tuple[int, int]) -> torch.Tensor:
    """(height, width) weights: 1 in the middle, a raised-cosine ramp over ``ramp`` pixels at
    each edge (``(ramp_y, ramp_x)`` for a ramp per axis). Overlapping tiles then fade into each
    other instead of meeting at a seam; the floor (1e-3) keeps pixels that only one tile covers
    (the image border) well defined."""
    ramp_y, ramp_x = (ramp, ramp) if isinstance(ramp, int) else ramp

    def profile(n: int, ramp: int) -> torch.Tensor:
        w = torch.ones(n)
        r = min(ramp, n // 2)
        if r > 0:
            edge = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(r) + 0.5) / r)
            w[:r] = edge
            w[n - r:] = edge.flip(0)
        return w

    return (profile(height, ramp_y)[:, None] * profile(width, ramp_x)[None, :]).clamp_min(1e-3)


def _argmax_classes(scores: torch.Tensor) -> torch.Tensor:
    """(H, W) uint8 index of the largest of (C, H, W) ``scores``, the first one on ties, as
    ``argmax(0)`` gives; one pass per class (``argmax`` over the outer dimension of a 2448 x 2448
    map takes 0.46 s on a CPU here, this a tenth of that)."""
    best, index = scores[0].clone(), torch.zeros(scores.shape[1:], dtype=torch.uint8)
    for c in range(1, scores.shape[0]):
        larger = scores[c] > best
        best = torch.where(larger, scores[c], best)
        index[larger] = c
    return index


def _seam_overlap(starts: list[int], size: int) -> int:
    """The narrowest overlap between neighbouring windows (0 for a single window)."""
    return min((size - (b - a) for a, b in zip(starts, starts[1:])), default=0)


def _as_input(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(3, H, W) float32 normalised: from an (H, W, 3) uint8 array or an already normalised tensor."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        return normalize_image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"expected a normalised (3, H, W) float tensor, got {tuple(image.shape)} "
                         f"{image.dtype}")
    return image.float()


def tile_starts(height: int, width: int, tile_size: int = 512,
                overlap: float = DEFAULT_OVERLAP) -> tuple[list[int], list[int]]:
    """Row and column offsets of the windows :func:`predict_tiled` uses: the fewest windows of
    ``tile_size`` whose neighbours overlap by at least ``overlap`` of a tile, evenly spaced
    (:func:`lc_utils.datasets.window_starts`)."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    return (window_starts(height, tile_h, min(tile_h - 1, round(overlap * tile_h))),
            window_starts(width, tile_w, min(tile_w - 1, round(overlap * tile_w))))


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    *,
    tile_size: int = 512,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    return_probs: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Class map (H, W) uint8 of a whole image of any size, predicted window by window.

    Windows of ``tile_size`` (smaller where the image is) overlap by at least ``overlap`` of a
    tile and cover every pixel, edges included (:func:`tile_starts`). Softmax probabilities are blended with
    :func:`blend_window` weights, so no seam shows between tiles. An image that fits in one tile
    gets one plain forward pass. Memory is bounded by ``batch_size`` windows at a time plus the
    (C, H, W) float32 probability sum on the CPU (about 170 MB for 7 classes at 2448 x 2448).
    ``batch_size`` defaults to 4 on CUDA and 1 elsewhere. AMP (bf16/fp16) applies on CUDA.
    ``image``: (H, W, 3) uint8 as read from disk, or a normalised (3, H, W) tensor.
    With ``return_probs``, also returns the (C, H, W) float32 probabilities.

    ``model``: any module returning logits at its input's size, or a dict with them under
    ``"out"`` (torchvision's segmentation models), on any device; it runs where its weights are
    (:func:`device_of`).
    """
    device = device_of(model, device)
    batch_size = batch_size or (4 if device.type == "cuda" else 1)
    x = _as_input(image)
    _, height, width = x.shape
    tops, lefts = tile_starts(height, width, tile_size, overlap)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    fmt = inference_memory_format(device)
    was_training = model.training
    model.eval()
    with memory_format(model, fmt):
        try:
            if tile_h == height and tile_w == width:
                with autocast(device, amp):
                    logits = segmentation_logits(model(x[None].to(device).contiguous(memory_format=fmt)),
                                                 (height, width))
                probs = F.softmax(logits.float(), dim=1)[0].cpu()
            else:
                ramps = (_seam_overlap(tops, tile_h), _seam_overlap(lefts, tile_w))
                weight = blend_window(tile_h, tile_w, ramps)
                boxes = [(top, left) for top in tops for left in lefts]
                probs = None
                weight_sum = torch.zeros(height, width)
                for first in range(0, len(boxes), batch_size):
                    chunk = boxes[first:first + batch_size]
                    batch = torch.stack([x[:, t:t + tile_h, left:left + tile_w] for t, left in chunk])
                    with autocast(device, amp):
                        logits = segmentation_logits(model(batch.to(device).contiguous(memory_format=fmt)),
                                                     (tile_h, tile_w))
                    tile_probs = (F.softmax(logits.float(), dim=1) * weight.to(device)).cpu()
                    if probs is None:
                        probs = torch.zeros(tile_probs.shape[1], height, width)
                    for (t, left), p in zip(chunk, tile_probs):
                        probs[:, t:t + tile_h, left:left + tile_w] += p
                        weight_sum[t:t + tile_h, left:left + tile_w] += weight
                if return_probs:  # the class map needs no division: the weights are the same per class
                    probs /= weight_sum
        finally:
            model.train(was_training)
    class_map = _argmax_classes(probs).numpy()
    return (class_map, probs.numpy()) if return_probs else class_map


def predict_pairs(
    model: nn.Module,
    pairs: Sequence[tuple[str | Path, str | Path]],
    schema: ClassSchema = DEEPGLOBE,
    on_invalid: OnInvalid = "unknown",
    **predict_kwargs,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each (image, mask) pair: the image, its true class map and the tiled prediction."""
    for image_path, mask_path in pairs:
        image, truth = read_pair(image_path, mask_path, schema, on_invalid)
        yield image, truth, predict_tiled(model, image, **predict_kwargs)


def evaluate_tiled(
    model: nn.Module,
    pairs: Sequence[tuple[str | Path, str | Path]],
    schema: ClassSchema = DEEPGLOBE,
    on_invalid: OnInvalid = "unknown",
    **predict_kwargs,
) -> ConfusionMatrix:
    """One confusion matrix over whole images predicted with :func:`predict_tiled`."""
    confusion = ConfusionMatrix(schema.num_classes, schema=schema)
    for _, truth, prediction in predict_pairs(model, pairs, schema, on_invalid, **predict_kwargs):
        confusion.update(prediction, truth)
    return confusion
