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
from .datasets import normalize_image, read_pair
from .masks import OnInvalid
from .metrics import ConfusionMatrix
from .settings import autocast, resolve_device


def inference_memory_format(device: torch.device) -> torch.memory_format:
    """The memory format prediction runs in: channels-last on CUDA, the plain contiguous one
    elsewhere. Channels-last speeds up *training* on a CPU too, but made CPU inference slower
    here (``benchmarks/bench_inference.py`` measures both)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


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


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of windows of ``tile`` covering ``0..length`` with at most ``stride`` between
    them; the last window ends exactly at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def blend_window(height: int, width: int, ramp: int) -> torch.Tensor:
    """(height, width) weights: 1 in the middle, a raised-cosine ramp over ``ramp`` pixels at
    each edge. Overlapping tiles then fade into each other instead of meeting at a seam; the
    floor (1e-3) keeps pixels that only one tile covers (the image border) well defined."""

    def profile(n: int) -> torch.Tensor:
        w = torch.ones(n)
        r = min(ramp, n // 2)
        if r > 0:
            edge = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(r) + 0.5) / r)
            w[:r] = edge
            w[n - r:] = edge.flip(0)
        return w

    return (profile(height)[:, None] * profile(width)[None, :]).clamp_min(1e-3)


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


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    *,
    tile_size: int = 512,
    overlap: float = 0.25,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    return_probs: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Class map (H, W) uint8 of a whole image of any size, predicted window by window.

    Windows of ``tile_size`` (smaller where the image is) overlap by ``overlap`` of a tile and
    cover every pixel, edges included. Softmax probabilities are blended with
    :func:`blend_window` weights, so no seam shows between tiles. An image that fits in one tile
    gets one plain forward pass. Memory is bounded by ``batch_size`` windows at a time plus the
    (C, H, W) float32 probability sum on the CPU (about 170 MB for 7 classes at 2448 x 2448).
    ``batch_size`` defaults to 4 on CUDA and 1 elsewhere. AMP (bf16/fp16) applies on CUDA.
    ``image``: (H, W, 3) uint8 as read from disk, or a normalised (3, H, W) tensor.
    With ``return_probs``, also returns the (C, H, W) float32 probabilities.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    device = resolve_device(device)
    batch_size = batch_size or (4 if device.type == "cuda" else 1)
    x = _as_input(image)
    _, height, width = x.shape
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    stride = max(1, int(round(tile_size * (1 - overlap))))
    ramp = tile_size - stride
    fmt = inference_memory_format(device)
    was_training = model.training
    model.eval()
    with memory_format(model, fmt):
        try:
            if tile_h == height and tile_w == width:
                with autocast(device, amp):
                    logits = model(x[None].to(device).contiguous(memory_format=fmt))
                probs = F.softmax(logits.float(), dim=1)[0].cpu()
            else:
                weight = blend_window(tile_h, tile_w, ramp)
                boxes = [(top, left) for top in window_starts(height, tile_h, stride)
                         for left in window_starts(width, tile_w, stride)]
                probs = None
                weight_sum = torch.zeros(height, width)
                for first in range(0, len(boxes), batch_size):
                    chunk = boxes[first:first + batch_size]
                    batch = torch.stack([x[:, t:t + tile_h, left:left + tile_w] for t, left in chunk])
                    with autocast(device, amp):
                        logits = model(batch.to(device).contiguous(memory_format=fmt))
                    tile_probs = (F.softmax(logits.float(), dim=1) * weight.to(device)).cpu()
                    if probs is None:
                        probs = torch.zeros(tile_probs.shape[1], height, width)
                    for (t, left), p in zip(chunk, tile_probs):
                        probs[:, t:t + tile_h, left:left + tile_w] += p
                        weight_sum[t:t + tile_h, left:left + tile_w] += weight
                probs /= weight_sum
        finally:
            model.train(was_training)
    class_map = probs.argmax(0).to(torch.uint8).numpy()
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
