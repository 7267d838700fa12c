"""Prediction and its scores: sliding windows over whole tiles (a DeepGlobe image is 2448 x 2448),
confusion matrices over a loader or over whole images, and the validation that training calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from . import distributed
from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .datasets import read_pair
from .devices import autocast, device_of, inference_memory_format, memory_format
from .masks import OnInvalid
from .metrics import ConfusionMatrix
from .models import segmentation_logits
from .transforms import normalize_image
from .windows import DEFAULT_OVERLAP, prediction_windows, seam_overlap


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


def argmax_classes(scores: torch.Tensor) -> torch.Tensor:
    """(H, W) uint8 index of the largest of (C, H, W) ``scores``, the first one on ties, as
    ``argmax(0)`` gives; one pass per class (``argmax`` over the outer dimension of a 2448 x 2448
    map takes 0.46 s on a CPU here, this a tenth of that)."""
    best, index = scores[0].clone(), torch.zeros(scores.shape[1:], dtype=torch.uint8)
    for c in range(1, scores.shape[0]):
        larger = scores[c] > best
        best = torch.where(larger, scores[c], best)
        index[larger] = c
    return index


def model_input(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(3, H, W) float32 normalised: from an (H, W, 3) uint8 array or an already normalised tensor."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        return normalize_image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"expected a normalised (3, H, W) float tensor, got {tuple(image.shape)} "
                         f"{image.dtype}")
    return image.float()


class WindowLayout(NamedTuple):
    """The windows whole-image prediction slides over one image (:func:`window_layout`)."""

    shape: tuple[int, int]
    """The image's (height, width)."""
    corners: list[tuple[int, int]]
    """(top, left) of every window, row by row."""
    size: tuple[int, int]
    """Every window's (height, width): ``tile_size``, or the image's side where it is smaller."""
    weight: torch.Tensor
    """(height, width) blend weights of a window (:func:`blend_window`, ramps as wide as the
    narrowest seam)."""


def window_layout(height: int, width: int, tile_size: int = 512, overlap: float = DEFAULT_OVERLAP
                  ) -> WindowLayout:
    """The windows :func:`predict_tiled` predicts an image of ``height`` x ``width`` in
    (:func:`lc_utils.windows.prediction_windows`), with their blend weights."""
    tops, lefts = prediction_windows(height, width, tile_size, overlap)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    weight = blend_window(tile_h, tile_w, (seam_overlap(tops, tile_h), seam_overlap(lefts, tile_w)))
    corners = [(top, left) for top in tops for left in lefts]
    return WindowLayout((height, width), corners, (tile_h, tile_w), weight)


def blend_windows(window_logits: Callable[[Sequence[tuple[int, int]]], torch.Tensor], layout: WindowLayout,
                  *, batch_size: int = 1, normalise: bool = True) -> torch.Tensor:
    """(C, H, W) float32 probabilities of a whole image on the CPU, from its windows' logits:
    ``window_logits(corners)`` gives the (len(corners), C, window height, window width) logits of
    the windows at those corners, asked for ``batch_size`` windows at a time in ``layout``'s
    order. Each window's softmax is weighted by ``layout.weight`` and summed; with ``normalise``
    the sum is divided by the weights' (the class map, the argmax, needs no division: the weights
    are the same per class). An image that is one window gets that window's softmax as it is.
    :func:`predict_tiled` runs a model through it; :class:`lc_utils.live_head.LiveHead` its cached
    features, so that both blend alike."""
    height, width = layout.shape
    tile_h, tile_w = layout.size
    if (tile_h, tile_w) == (height, width):
        return F.softmax(window_logits(layout.corners).float(), dim=1)[0].cpu()
    probs = None
    weight_sum = torch.zeros(height, width)
    for first in range(0, len(layout.corners), batch_size):
        chunk = layout.corners[first:first + batch_size]
        logits = window_logits(chunk)
        tile_probs = (F.softmax(logits.float(), dim=1) * layout.weight.to(logits.device)).cpu()
        if probs is None:
            probs = torch.zeros(tile_probs.shape[1], height, width)
        for (t, left), p in zip(chunk, tile_probs):
            probs[:, t:t + tile_h, left:left + tile_w] += p
            weight_sum[t:t + tile_h, left:left + tile_w] += layout.weight
    if normalise:
        probs /= weight_sum
    return probs


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
    tile and cover every pixel, edges included (:func:`lc_utils.windows.prediction_windows`).
    Softmax probabilities are blended with :func:`blend_window` weights, so no seam shows between
    tiles. An image that fits in one tile gets one plain forward pass. Memory is bounded by
    ``batch_size`` windows at a time plus the (C, H, W) float32 probability sum on the CPU (about
    170 MB for 7 classes at 2448 x 2448).
    ``batch_size`` defaults to 4 on CUDA and 1 elsewhere. AMP (bf16/fp16) applies on CUDA.
    ``image``: (H, W, 3) uint8 as read from disk, or a normalised (3, H, W) tensor.
    With ``return_probs``, also returns the (C, H, W) float32 probabilities.

    ``model``: any module returning logits at its input's size, or a dict with them under
    ``"out"`` (torchvision's segmentation models), on any device; it runs where its weights are
    (:func:`device_of`).
    """
    device = device_of(model, device)
    batch_size = batch_size or (4 if device.type == "cuda" else 1)
    x = model_input(image)
    _, height, width = x.shape
    layout = window_layout(height, width, tile_size, overlap)
    tile_h, tile_w = layout.size
    fmt = inference_memory_format(device)

    def window_logits(corners: Sequence[tuple[int, int]]) -> torch.Tensor:
        batch = torch.stack([x[:, top:top + tile_h, left:left + tile_w] for top, left in corners])
        with autocast(device, amp):
            output = model(batch.to(device).contiguous(memory_format=fmt))
        return segmentation_logits(output, (tile_h, tile_w))

    was_training = model.training
    model.eval()
    with memory_format(model, fmt):
        try:
            probs = blend_windows(window_logits, layout, batch_size=batch_size, normalise=return_probs)
        finally:
            model.train(was_training)
    class_map = argmax_classes(probs).numpy()
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


@dataclass(frozen=True)
class Tiling:
    """One way to predict a whole image: ``window`` squares (None: the whole image in one pass)
    overlapping by at least ``overlap`` of a window, blended as :func:`predict_tiled` does."""

    name: str
    window: int | None
    overlap: float = DEFAULT_OVERLAP

    def window_size(self, height: int, width: int) -> int:
        """The window side on a ``height`` x ``width`` image (the whole image's for None)."""
        return self.window or max(height, width)

    def windows(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of every window this tiling slides over an image."""
        size = self.window_size(height, width)
        tops, lefts = prediction_windows(height, width, size, self.overlap)
        return [(t, left, min(size, height), min(size, width)) for t in tops for left in lefts]

    def predict(self, model: nn.Module, image: np.ndarray, **predict_kwargs) -> np.ndarray:
        """The class map of ``image`` under this tiling."""
        return predict_tiled(model, image, tile_size=self.window_size(*image.shape[:2]), overlap=self.overlap,
                             **predict_kwargs)


def seam_tilings(window: int, image_side: int | None = None) -> list[Tiling]:
    """The tilings notebook 05 compares: ``window`` squares without overlap (the seams bare) and
    with half a window of blended overlap, windows twice as large (where they are smaller than
    ``image_side``, the shorter side of the images), and the whole image in one pass."""
    tilings = [Tiling(f"{window} px, no overlap", window, 0.0),
               Tiling(f"{window} px, overlap 0.5", window, 0.5)]
    if image_side is None or 2 * window < image_side:
        tilings.append(Tiling(f"{2 * window} px, overlap 0.5", 2 * window, 0.5))
    return [*tilings, Tiling("whole image", None)]


def compare_tilings(
    model: nn.Module,
    pairs: Sequence[tuple[str | Path, str | Path]],
    schema: ClassSchema,
    tilings: Sequence[Tiling],
    *,
    on_invalid: OnInvalid = "unknown",
    **predict_kwargs,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every tiling's windows, seconds and scores over the whole images of ``pairs``, and each
    one's prediction of the first image.

    Windows of a weak model disagree: each one sees only its own content (DeepLabV3's image
    pooling sums up the whole window), so neighbouring windows can call one field two classes and
    meet at a straight seam. Overlap with blending, larger windows and the whole image at once are
    the remedies this table measures, a row per tiling (``tiling``, its name): ``windows`` (over
    all images), ``seconds``, ``mean_iou``, ``pixel_accuracy``, and ``agrees_with_whole``, the
    share of pixels predicted as the whole image at once predicts them (NaN without a tiling whose
    ``window`` is None). A tiling that runs out of memory gets NaN scores and ``out_of_memory``
    True.
    """
    confusions = {t.name: ConfusionMatrix(schema.num_classes, schema=schema) for t in tilings}
    seconds = dict.fromkeys(confusions, 0.0)
    windows = dict.fromkeys(confusions, 0)
    agree = dict.fromkeys(confusions, 0.0)
    failed: set[str] = set()
    whole = next((t.name for t in tilings if t.window is None), None)
    first: dict[str, np.ndarray] = {}
    total_pixels = 0
    for index, (image_path, mask_path) in enumerate(pairs):
        image, truth = read_pair(image_path, mask_path, schema, on_invalid)
        predictions = {}
        for tiling in tilings:
            if tiling.name in failed:
                continue
            started = time.perf_counter()
            try:
                predictions[tiling.name] = tiling.predict(model, image, **predict_kwargs)
            except torch.OutOfMemoryError:
                failed.add(tiling.name)
                torch.cuda.empty_cache()
                continue
            seconds[tiling.name] += time.perf_counter() - started
            windows[tiling.name] += len(tiling.windows(*image.shape[:2]))
            confusions[tiling.name].update(predictions[tiling.name], truth)
        if whole in predictions:
            for name, prediction in predictions.items():
                agree[name] += float((prediction == predictions[whole]).sum())
        total_pixels += truth.size
        if index == 0:
            first = predictions
    rows = []
    for tiling in tilings:
        name = tiling.name
        summary = confusions[name].summary() if name not in failed else {}
        rows.append({"tiling": name, "windows": windows[name], "seconds": seconds[name],
                     "mean_iou": summary.get("mean_iou", np.nan),
                     "pixel_accuracy": summary.get("pixel_accuracy", np.nan),
                     "agrees_with_whole": (agree[name] / total_pixels if whole and whole not in failed
                                           and name not in failed else np.nan),
                     "out_of_memory": name in failed})
    return pd.DataFrame(rows), first


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int | None = None, *,
             device: str | torch.device | None = None, amp: bool = True,
             ignore_index: int = IGNORE_INDEX, tile_size: int = 512,
             schema: ClassSchema | None = None) -> ConfusionMatrix:
    """Predict every batch of ``loader`` and accumulate one confusion matrix.

    Batches of images up to ``tile_size`` go through the model whole; larger images (a
    2448 x 2448 DeepGlobe tile) are predicted window by window with
    :func:`predict_tiled`, so memory stays bounded. Either way in the memory
    format :func:`lc_utils.devices.inference_memory_format` picks for the device, on the device
    the model is on. ``num_classes`` defaults to the model's ``num_classes``, else to the
    number of channels its logits have. ``schema`` (names, the class left out of headline means)
    defaults to the schema of the loader's dataset, where it has one.
    """
    device = device_of(model, device)
    if schema is None and isinstance(getattr(loader.dataset, "schema", None), ClassSchema):
        schema = loader.dataset.schema  # every dataset of the package says its classes

    def new_confusion(count: int) -> ConfusionMatrix:
        if schema is None:  # the matrix's own default for ``count`` classes
            return ConfusionMatrix(count, ignore_index)
        return ConfusionMatrix(count, ignore_index, schema)

    fmt = inference_memory_format(device)
    was_training = model.training
    model.eval()
    num_classes = num_classes or getattr(model, "num_classes", None)
    confusion = new_confusion(num_classes) if num_classes else None
    with memory_format(model, fmt):
        for images, labels in loader:
            if max(images.shape[-2:]) > tile_size:
                for image, label in zip(images, labels):
                    if confusion is None:  # the class count from the probabilities, once
                        prediction, probs = predict_tiled(model, image, tile_size=tile_size, amp=amp,
                                                          return_probs=True)
                        confusion = new_confusion(probs.shape[0])
                    else:
                        prediction = predict_tiled(model, image, tile_size=tile_size, amp=amp)
                    confusion.update(torch.from_numpy(prediction), label)
                continue
            with autocast(device, amp):
                logits = segmentation_logits(
                    model(images.to(device, non_blocking=True).contiguous(memory_format=fmt)),
                    tuple(images.shape[-2:]))
            confusion = confusion or new_confusion(logits.shape[1])
            confusion.update(logits.argmax(1), labels.to(device))
    model.train(was_training)
    if confusion is None and distributed.active() and num_classes:
        confusion = new_confusion(num_classes)  # this process's share was empty
    if confusion is None:
        raise ValueError("the loader yielded no batch: nothing to evaluate")
    if distributed.active():  # the counts of every process's images, summed (not averaged means)
        summed = distributed.all_reduce_sum(torch.as_tensor(confusion.matrix))
        confusion = ConfusionMatrix.from_counts(summed, ignore_index, confusion.schema)
    return confusion


def validator(loader: DataLoader, *, amp: bool = True, tile_size: int = 512
              ) -> Callable[[nn.Module], dict[str, float]]:
    """The validation :func:`lc_utils.training.fit` calls after every epoch: the model scored on
    ``loader`` (dense labels, e.g. the fixed windows of :class:`lc_utils.windows.WindowDataset`)
    with :func:`evaluate`, as ``{"val_mean_iou", "val_pixel_accuracy"}`` (the schema's headline
    mean: DeepGlobe's leaves out "unknown")."""

    def validate(model: nn.Module) -> dict[str, float]:
        summary = evaluate(model, loader, amp=amp, tile_size=tile_size).summary()
        return {"val_mean_iou": summary["mean_iou"], "val_pixel_accuracy": summary["pixel_accuracy"]}

    return validate
