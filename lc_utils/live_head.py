"""Live learning from clicks: a trained model's last layer refitted on the clicked points in a
fraction of a second, the way Microsoft's land cover mapping tool retrains its last layer from a
person's corrections (Robinson et al., AAAI 2020).

DeepLabV3 ends in one 1x1 convolution, a linear map from the decoder's feature vector at every
pixel to the classes' logits. :class:`LiveHead` computes an image's features once (window by
window, as :func:`lc_utils.inference.predict_tiled` slides its windows), keeps them, and then only
that last layer changes: fitted on the features under the clicked points, pulled towards the
model's own layer by a prior, and every prediction after a click is the cached features through
the new layer (no network pass). With no click it predicts exactly what the model predicts.

The prior is the mean squared change of the logits over the images learned from: the fit
minimises the clicks' summed cross-entropy plus ``prior_strength / 2`` times that mean. Measured
in the logits it is independent of the features' scale and spares the pixels that look unlike
the clicks: one click moves its own pixel far (a few hundred times further than the image's mean
change, for 256 features) and the pixels whose features resemble it, little else. A clicked
pixel may still show another class where the prior outweighs it (the status line counts them);
with ``relaxations`` the prior is divided by 4, up to that many times, until every click shows its
class. That is off by default: on the real tiles, a prior relaxed to fit every one of hundreds of
clicks (some on class edges, some against their neighbours) scored worse on the clicked tiles and
on the tiles never clicked alike (one seed of the simulated person of
:mod:`lc_utils.simulated_person`, 50 random clicks per tile). The trade-off of ``prior_strength``:
a weaker prior follows the clicks more closely, and forgets more of what the model knew about
images nobody clicked.
"""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checkpoint, save_checkpoint, state_digest
from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .devices import autocast, device_of, inference_memory_format, memory_format
from .files import read_rgb
from .inference import WindowLayout, argmax_classes, blend_windows, model_input, window_layout
from .saved_files import refuse_other_settings
from .sparse import PointAnnotation
from .windows import DEFAULT_OVERLAP

PRIOR_STRENGTH = 1.0
"""The prior's weight against the clicks' summed cross-entropy (see the module's docstring)."""
RELAXATIONS = 0
"""How many times the prior is divided by 4 while a clicked pixel shows another class (default)."""
HEAD_FORMAT = "lc_utils live head 1"

Pixel = tuple[str, int, int]


def image_of(images: dict[str, str | Path | np.ndarray], image_id: str, image: str | Path | np.ndarray | None,
             owner: str) -> np.ndarray:
    """The (H, W, 3) uint8 image ``image_id``: ``image`` (then also remembered in ``images``), else
    the file or array ``images`` holds for it; a clear error naming ``owner`` where neither does."""
    source = image if image is not None else images.get(image_id)
    if source is None:
        raise KeyError(f"no image for {image_id!r}: pass it, or give {owner} its file in images=")
    if image is not None:
        images.setdefault(image_id, image)
    return source if isinstance(source, np.ndarray) else read_rgb(source, what="image")


def keep(cache: OrderedDict, key: str, value: object, limit: int) -> object:
    """``value`` put into ``cache`` under ``key``, the least recently used dropped beyond ``limit``."""
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)
    return value


def head_path(annotations: str | Path) -> Path:
    """Where the head learned from an annotation file is saved: beside it, ``<name>.head.pt``."""
    return Path(annotations).with_suffix(".head.pt")


@dataclass(frozen=True)
class ImageFeatures:
    """One image's decoder features, window by window as whole-image prediction slides them.

    Memory, float32 (float16 halves it): 256 features per pixel at stride 8 (ResNet-50) take
    4 MB for a 512² tile and 100 MB for a 2448² original (25 windows of 512); at stride 16
    (MobileNetV3) 1 MB and 25 MB."""

    layout: WindowLayout
    windows: torch.Tensor
    """(windows, C, h, w), in the memory format and on the device the model computed them."""
    moment: torch.Tensor
    """(C + 1, C + 1) float64 mean of f fᵀ over every feature pixel, f the features and a 1."""

    @property
    def megabytes(self) -> float:
        return self.windows.numel() * self.windows.element_size() / 2**20


class HeadState(NamedTuple):
    """One head: the 1x1 convolution's weight (classes, C) and bias, what it was learned from."""

    weight: torch.Tensor
    bias: torch.Tensor
    points: int
    """How many points it learned from (points of the unknown class left out)."""
    prior: float
    """The prior strength its fit ended with (after relaxation)."""
    key: tuple[tuple[str, int, int, int], ...]
    """The points it learned from (:func:`points_key`)."""


class Learned(NamedTuple):
    """What one :meth:`LiveHead.learn` did."""

    points: int
    seconds: float
    prior: float
    unfitted: int
    """Learned points whose pixel still shows another class (clicks that contradict each other)."""


def points_key(annotations: Mapping[str, PointAnnotation], schema: ClassSchema = DEEPGLOBE
               ) -> tuple[tuple[str, int, int, int], ...]:
    """The points a head learns from, sorted: (image id, row, col, class), without the unknown
    class and unlabelled (255) points."""
    skip = {IGNORE_INDEX, schema.unknown_index}
    return tuple(sorted((image_id, int(r), int(c), int(k)) for image_id, a in annotations.items()
                        for r, c, k in zip(a.rows, a.cols, a.labels) if int(k) not in skip))


def _deeplab_parts(model: nn.Module) -> tuple[nn.Module, nn.Conv2d]:
    """The torchvision DeepLabV3 inside ``model`` and its last 1x1 convolution."""
    net = getattr(model, "net", model)
    classifier = getattr(net, "classifier", None)
    last = classifier[-1] if isinstance(classifier, nn.Sequential) and len(classifier) else None
    if (not isinstance(getattr(net, "backbone", None), nn.Module) or not isinstance(last, nn.Conv2d)
            or last.kernel_size != (1, 1)):
        raise TypeError("a live head needs a DeepLabV3 (a backbone, and a classifier ending in a 1x1 "
                        "convolution) as lc_utils.models.build_deeplabv3 builds it; got a "
                        f"{type(model).__name__}")
    return net, last


def _identity(model: nn.Module, tile_size: int, overlap: float) -> dict[str, object]:
    """What a head fits: the model (its features' weights by digest) and the windows."""
    net, last = _deeplab_parts(model)
    last_name = str(len(net.classifier) - 1)
    features = {f"backbone.{k}": v for k, v in net.backbone.state_dict().items()}
    features.update({f"classifier.{k}": v for k, v in net.classifier.state_dict().items()
                     if k.split(".")[0] != last_name})
    return {"backbone": getattr(model, "backbone_name", type(net.backbone).__name__),
            "num_classes": last.out_channels, "feature_channels": last.in_channels,
            "features_digest": state_digest(features), "tile_size": tile_size, "overlap": overlap}


class LiveHead:
    """A model's last layer, refitted on clicked points in milliseconds (the module's docstring).

    ``model``: a DeepLabV3 of :mod:`lc_utils.models` (ResNet-50 or MobileNetV3; a fresh model, or
    a trained one from :func:`lc_utils.models.load_trained_model`), left unchanged; it must not
    change while the head is in use (the cached features are its). ``images``: image id -> file
    or (H, W, 3) uint8 array, for images whose features are computed when first needed.
    ``tile_size``, ``overlap``, ``batch_size`` and ``amp`` are :func:`predict_tiled`'s, so that
    with no click the head predicts exactly as the model does there (with float32 features;
    ``dtype=torch.float16`` halves their memory, and near-ties may then fall the other way).
    ``prior_strength``, ``steps`` (L-BFGS iterations) and ``relaxations`` set the fit (the module's
    docstring).
    Features of up to ``cache_images`` images are kept, the least recently used dropped first;
    the features under learned points are kept apart, so a dropped image is computed again only
    to be predicted or clicked on again.
    """

    def __init__(self, model: nn.Module, images: Mapping[str, str | Path | np.ndarray] | None = None, *,
                 schema: ClassSchema = DEEPGLOBE, prior_strength: float = PRIOR_STRENGTH, steps: int = 50,
                 tile_size: int = 512, overlap: float = DEFAULT_OVERLAP, batch_size: int | None = None,
                 amp: bool = True, dtype: torch.dtype = torch.float32, cache_images: int = 3,
                 relaxations: int = RELAXATIONS) -> None:
        self.model = model
        _, last = _deeplab_parts(model)
        if last.out_channels != schema.num_classes:
            raise ValueError(f"the model has {last.out_channels} classes but the schema "
                             f"{schema.name!r} has {schema.num_classes}")
        if prior_strength <= 0 or steps < 1 or cache_images < 1:
            raise ValueError(f"prior_strength must be > 0, steps and cache_images >= 1; got "
                             f"{prior_strength}, {steps}, {cache_images}")
        self.images = dict(images or {})
        self.schema, self.prior_strength, self.steps = schema, prior_strength, steps
        self.relaxations = relaxations
        self.tile_size, self.overlap, self.amp, self.dtype = tile_size, overlap, amp, dtype
        self.device = device_of(model)
        self.batch_size = batch_size or (4 if self.device.type == "cuda" else 1)
        self.cache_images = cache_images
        self._start = HeadState(last.weight.detach().reshape(last.out_channels, -1).float().cpu().clone(),
                                last.bias.detach().float().cpu().clone(), 0, prior_strength, ())
        self.state = self._start
        self.history: list[HeadState] = []
        """Earlier heads, the latest last: :meth:`undo` takes it back."""
        self._cache: OrderedDict[str, ImageFeatures] = OrderedDict()
        self._samples: dict[Pixel, tuple[torch.Tensor, torch.Tensor]] = {}
        self._moments: dict[str, tuple[torch.Tensor, int]] = {}
        self._identity: dict[str, object] | None = None

    @property
    def identity(self) -> dict[str, object]:
        """The model and windows this head fits (saved with it, checked on loading)."""
        if self._identity is None:
            self._identity = _identity(self.model, self.tile_size, self.overlap)
        return self._identity

    @property
    def can_undo(self) -> bool:
        return bool(self.history)

    @torch.no_grad()
    def features(self, image_id: str, image: str | Path | np.ndarray | None = None) -> ImageFeatures:
        """The features of image ``image_id`` (``image``, else the one ``images`` names), computed
        once and kept (:class:`ImageFeatures` says how much memory they take)."""
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            return self._cache[image_id]
        x = model_input(image_of(self.images, image_id, image, "LiveHead"))
        layout = window_layout(*x.shape[1:], self.tile_size, self.overlap)
        (tile_h, tile_w), net = layout.size, _deeplab_parts(self.model)[0]
        fmt = inference_memory_format(self.device)
        chunks = []
        was_training = self.model.training
        self.model.eval()
        with memory_format(self.model, fmt):
            try:  # the model's own forward pass up to its last layer, in predict_tiled's batches
                for first in range(0, len(layout.corners), self.batch_size):
                    batch = torch.stack([x[:, t:t + tile_h, left:left + tile_w]
                                         for t, left in layout.corners[first:first + self.batch_size]])
                    with autocast(self.device, self.amp):
                        out = net.backbone(batch.to(self.device).contiguous(memory_format=fmt))["out"]
                        for layer in list(net.classifier)[:-1]:
                            out = layer(out)
                    chunks.append(out.to(self.dtype))
            finally:
                self.model.train(was_training)
        windows = torch.cat(chunks)
        flat = windows.permute(0, 2, 3, 1).reshape(-1, windows.shape[1]).float()
        flat = torch.cat([flat, torch.ones(len(flat), 1, device=flat.device)], 1)
        moment = (flat.T @ flat).double().cpu() / len(flat)
        self._moments[image_id] = (moment, len(flat))
        return keep(self._cache, image_id, ImageFeatures(layout, windows, moment), self.cache_images)

    def learn(self, annotations: Mapping[str, PointAnnotation],
              images: Mapping[str, str | Path | np.ndarray] | None = None) -> Learned:
        """Fit the head on every point of ``annotations`` (image id -> points; the schema's
        unknown class and 255 are not learned from), starting from the model's own head; the head
        before goes onto :attr:`history`. ``images`` names the files of images whose features are
        not known yet."""
        started = time.perf_counter()
        self.images.update(images or {})
        key = points_key(annotations, self.schema)
        for image_id in sorted({k[0] for k in key}):
            missing = [(r, c) for i, r, c, _ in key if i == image_id and (i, r, c) not in self._samples]
            if missing:
                self._sample(image_id, missing)
        weight, bias, prior, unfitted = self._fit(key)
        self.history.append(self.state)
        self.state = HeadState(weight, bias, len(key), prior, key)
        return Learned(len(key), time.perf_counter() - started, prior, unfitted)

    def undo(self) -> bool:
        """Go back to the head before the last :meth:`learn` (exactly); False where there is none."""
        if not self.history:
            return False
        self.state = self.history.pop()
        return True

    @torch.no_grad()
    def predict(self, image_id: str, image: str | Path | np.ndarray | None = None, *,
                return_probs: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The (H, W) uint8 class map of image ``image_id`` from its cached features through the
        current head, upsampled and blended as the model's prediction is; with ``return_probs``
        also the (C, H, W) float32 probabilities."""
        features = self.features(image_id, image)
        index = {corner: i for i, corner in enumerate(features.layout.corners)}
        weight = self.state.weight.to(self.device)[..., None, None]
        bias = self.state.bias.to(self.device)
        compute = torch.float32 if self.dtype == torch.float16 and self.device.type == "cpu" else None

        def window_logits(corners: Sequence[tuple[int, int]]) -> torch.Tensor:
            first = index[corners[0]]
            windows = features.windows[first:first + len(corners)]
            with autocast(self.device, self.amp):
                logits = F.conv2d(windows if compute is None else windows.to(compute), weight, bias)
                return F.interpolate(logits, size=features.layout.size, mode="bilinear", align_corners=False)

        probs = blend_windows(window_logits, features.layout, batch_size=self.batch_size,
                              normalise=return_probs)
        class_map = argmax_classes(probs).numpy()
        return (class_map, probs.numpy()) if return_probs else class_map

    def write_into(self, model: nn.Module) -> nn.Module:
        """Put the current head into ``model``'s last layer (a model with the same features: the
        one the head was made with, or a copy), so that a full fine-tune starts from it; returns
        ``model``."""
        other = _identity(model, self.tile_size, self.overlap)
        own = {k: v for k, v in self.identity.items() if k not in ("tile_size", "overlap")}
        refuse_other_settings("the model", other, own, what="is not the head's: it was built",
                              fix="write the head into the model it was learned on")
        last = _deeplab_parts(model)[1]
        with torch.no_grad():
            last.weight.copy_(self.state.weight.reshape(last.weight.shape))
            last.bias.copy_(self.state.bias)
        return model

    def save(self, path: str | Path) -> Path:
        """Write the head to ``path`` (atomically): its weights, the model it fits, the points it
        learned from and the features under them, so that a head loaded later learns on without
        computing those images' features again."""
        pixels = list(self._samples)
        samples = [self._samples[p] for p in pixels]
        moments = sorted(self._moments)
        return save_checkpoint({
            "format": HEAD_FORMAT, "weight": self.state.weight, "bias": self.state.bias,
            "points": self.state.points, "prior": self.state.prior, "key": [list(k) for k in self.state.key],
            "model": self.identity, "schema": list(self.schema.names),
            "pixels": [list(p) for p in pixels],
            "sample_counts": torch.tensor([len(w) for _, w in samples], dtype=torch.int64),
            "sample_features": torch.cat([f for f, _ in samples]) if samples else torch.zeros(0),
            "sample_weights": torch.cat([w for _, w in samples]) if samples else torch.zeros(0),
            "moment_images": moments,
            "moments": torch.stack([self._moments[i][0] for i in moments]) if moments else torch.zeros(0),
            "moment_pixels": [self._moments[i][1] for i in moments]}, path)

    def load(self, path: str | Path) -> None:
        """Take the head saved at ``path`` (refused, naming the file and each difference, where it
        was made for another model, class count or windows); the history starts again."""
        path = Path(path)
        not_a_head = f"{path}: not a live head file of lc_utils (written by LiveHead.save)"
        try:
            saved = load_checkpoint(path)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:  # not torch.save's, or cut short
            raise ValueError(f"{not_a_head}: {type(error).__name__}") from error
        if not isinstance(saved, dict) or saved.get("format") != HEAD_FORMAT:
            raise ValueError(not_a_head)
        refuse_other_settings(path, saved["model"], self.identity, what="was made for another model",
                              fix=f"delete {path.name} to start from this model's own head")
        if saved["schema"] != list(self.schema.names):
            raise ValueError(f"{path}: made for the classes {saved['schema']}, not {list(self.schema.names)}")
        counts = saved["sample_counts"].tolist()
        features = torch.split(saved["sample_features"], counts) if counts else []
        weights = torch.split(saved["sample_weights"], counts) if counts else []
        self._samples = {(str(i), int(r), int(c)): (f, w)
                         for (i, r, c), f, w in zip(saved["pixels"], features, weights)}
        self._moments = {str(i): (m, int(n)) for i, m, n in zip(saved["moment_images"], saved["moments"],
                                                                 saved["moment_pixels"])}
        key = tuple((str(i), int(r), int(c), int(k)) for i, r, c, k in saved["key"])
        self.state = HeadState(saved["weight"].float(), saved["bias"].float(), int(saved["points"]),
                               float(saved["prior"]), key)
        self.history = []

    def _sample(self, image_id: str, pixels: Sequence[tuple[int, int]]) -> None:
        """Keep the features under ``pixels``: in every window that covers a pixel, bilinearly
        interpolated at its centre as the model upsamples its logits, with the window's blend
        weight (the logit a head gives a pixel is then exactly its logit in :meth:`predict`)."""
        features = self.features(image_id)
        (tile_h, tile_w), (height, width) = features.layout.size, features.windows.shape[-2:]
        for row, col in pixels:
            rows, weights = [], []
            for i, (top, left) in enumerate(features.layout.corners):
                if not (top <= row < top + tile_h and left <= col < left + tile_w):
                    continue
                y = max((row - top + 0.5) * height / tile_h - 0.5, 0.0)
                x = max((col - left + 0.5) * width / tile_w - 0.5, 0.0)
                y0, x0 = min(int(y), height - 1), min(int(x), width - 1)
                y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
                dy, dx = y - y0, x - x0
                grid = features.windows[i].double().cpu()
                rows.append((1 - dy) * ((1 - dx) * grid[:, y0, x0] + dx * grid[:, y0, x1])
                            + dy * ((1 - dx) * grid[:, y1, x0] + dx * grid[:, y1, x1]))
                weights.append(float(features.layout.weight[row - top, col - left]))
            total = sum(weights)
            self._samples[(image_id, row, col)] = (torch.stack(rows).float(),
                                                   torch.tensor([w / total for w in weights]))

    def _fit(self, key: Sequence[tuple[str, int, int, int]]) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """The head fitted on the points of ``key``: weight, bias, the prior it ended with and how
        many points still show another class."""
        start = self._start
        if not key:
            return start.weight.clone(), start.bias.clone(), self.prior_strength, 0
        samples = [self._samples[(i, r, c)] for i, r, c, _ in key]
        features = torch.cat([f for f, _ in samples]).double()
        share = torch.cat([w for _, w in samples]).double()
        point = torch.repeat_interleave(torch.arange(len(key)), torch.tensor([len(w) for _, w in samples]))
        labels = torch.tensor([k for *_, k in key])[point]
        augmented = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], 1)
        # whitened by the images' feature moment: the prior becomes a plain ridge on theta, and the
        # fit is well conditioned whatever the features' scale
        images = sorted({i for i, *_ in key})
        pixels = sum(self._moments[i][1] for i in images)
        moment = sum(self._moments[i][0] * self._moments[i][1] for i in images) / pixels
        ridge = 1e-4 * moment.diagonal().mean() * torch.eye(len(moment), dtype=torch.float64)
        lower = torch.linalg.cholesky(moment + ridge)
        whitened = torch.linalg.solve_triangular(lower, augmented.T, upper=False).T
        base = augmented @ torch.cat([start.weight, start.bias[:, None]], 1).double().T
        theta = torch.zeros(base.shape[1], whitened.shape[1], dtype=torch.float64, requires_grad=True)

        def objective(prior: float) -> torch.Tensor:
            loss = F.cross_entropy(base + whitened @ theta.T, labels, reduction="none")
            return (share * loss).sum() + prior / 2 * theta.square().sum()

        prior = self.prior_strength
        for relaxation in range(self.relaxations + 1):
            _minimise(partial(objective, prior), theta, self.steps)
            with torch.no_grad():  # the blended probabilities at each point, as predict blends them
                probs = torch.zeros(len(key), base.shape[1], dtype=torch.float64)
                probs.index_add_(0, point, share[:, None] * F.softmax(base + whitened @ theta.T, 1))
                own = probs[torch.arange(len(key)), torch.tensor([k for *_, k in key])]
                others = probs.scatter(1, torch.tensor([[k] for *_, k in key]), -1.0).max(1).values
                unfitted = int((own <= others + 1e-3).sum())
            if unfitted == 0 or relaxation == self.relaxations:
                break
            prior /= 4
        with torch.no_grad():
            change = torch.linalg.solve_triangular(lower.T, theta.T, upper=True).T
        weight = (start.weight.double() + change[:, :-1]).float()
        bias = (start.bias.double() + change[:, -1]).float()
        return weight, bias, prior, unfitted


def _minimise(objective: Callable[[], torch.Tensor], parameter: torch.Tensor, steps: int) -> None:
    """Up to ``steps`` L-BFGS iterations on a smooth convex ``objective`` of ``parameter``."""
    optimizer = torch.optim.LBFGS([parameter], lr=1, max_iter=steps, history_size=20, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = objective()
        value.backward()
        return value

    optimizer.step(closure)
