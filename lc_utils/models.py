"""DeepLabV3 from torchvision, with the offline fallback for pretrained weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchvision.models.segmentation import (
    DeepLabV3_MobileNet_V3_Large_Weights,
    DeepLabV3_ResNet50_Weights,
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
)

from .checkpoints import Checkpoint, weights_in
from .devices import resolve_device
from .user_warnings import warn

Backbone = Literal["resnet50", "mobilenet_v3_large"]
BACKBONES: tuple[str, ...] = get_args(Backbone)

_BUILDERS = {"resnet50": deeplabv3_resnet50, "mobilenet_v3_large": deeplabv3_mobilenet_v3_large}
_IMAGENET = {"resnet50": ResNet50_Weights.IMAGENET1K_V1,
             "mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V1}
_COCO = {"resnet50": DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
         "mobilenet_v3_large": DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1}


_UNAVAILABLE: set[tuple[str, str]] = set()
"""(weights, backbone) downloads that failed in this process: warned about once, not retried."""


class PretrainedWeightsWarning(UserWarning):
    """Pretrained weights could not be had; the model starts from random weights."""


class SegmentationNet(nn.Module):
    """torchvision's DeepLabV3 returning plain logits (N, C, H, W) at the input's size.

    With an auxiliary head (``aux_loss=True``) it returns ``{"out", "aux"}`` in training mode,
    which :func:`lc_utils.training.fit` understands; in eval mode always the logits.
    """

    def __init__(self, net: nn.Module, backbone: str, num_classes: int, weights: str | None) -> None:
        super().__init__()
        self.net = net
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        output = self.net(x)
        if self.training and "aux" in output:
            return dict(output)
        return output["out"]


def segmentation_logits(output: object, input_size: tuple[int, int] | None = None) -> torch.Tensor:
    """The (N, C, H, W) logits in what a segmentation model returned.

    Accepts a tensor of logits (this course's :class:`SegmentationNet`, most hand-written models)
    and torchvision's dict ``{"out", "aux"}`` (``deeplabv3_*``, ``fcn_*``, ``lraspp_*``), whose
    ``"out"`` holds the logits. Anything else, or logits that are not at ``input_size`` (H, W),
    is a ``TypeError`` / ``ValueError`` saying what came back.
    """
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, Mapping) and isinstance(output.get("out"), torch.Tensor):
        logits = output["out"]
    else:
        got = (f"a {type(output).__name__} with keys {list(output)}" if isinstance(output, Mapping)
               else f"a {type(output).__name__}")
        raise TypeError(f"the model returned {got}; expected a tensor of logits (N, C, H, W) or a dict "
                        "with the logits under 'out' (torchvision's segmentation models). Wrap the model "
                        "in a module whose forward returns the logits.")
    if logits.ndim != 4:
        raise ValueError(f"the model returned logits of shape {tuple(logits.shape)}; expected (N, C, H, W)")
    if input_size is not None and tuple(logits.shape[-2:]) != tuple(input_size):
        raise ValueError(f"the model returned logits of {tuple(logits.shape[-2:])} for an input of "
                         f"{tuple(input_size)}; upsample them to the input's size inside the model "
                         "(torchvision's segmentation models do)")
    return logits


def _replace_heads(net: nn.Module, num_classes: int) -> None:
    """Give the last 1x1 convolution of the head (and aux head) ``num_classes`` outputs."""
    for head in (net.classifier, getattr(net, "aux_classifier", None)):
        if head is None:
            continue
        last = head[-1]
        head[-1] = nn.Conv2d(last.in_channels, num_classes, kernel_size=1)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> int:
    """Set ``momentum`` on every batch-norm layer of ``model``; return how many there are."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    state = weights_in(torch.load(path, map_location="cpu", weights_only=True))  # a checkpoint too
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _load_local(model: SegmentationNet, path: Path, strict: bool) -> None:
    """Load a full-model state dict (ours or torchvision's) or a backbone-only one."""
    state = _load_file(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("net.") for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items()}
    net = model.net
    if any(k.startswith(("backbone.", "classifier.")) for k in state):
        own = net.state_dict()
        mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        if mismatched and strict:
            raise ValueError(f"{path}: shapes differ for {mismatched[:4]} (another number of classes?)")
        for key in mismatched:  # another number of classes: keep our freshly made heads
            del state[key]
        if net.aux_classifier is None:
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
        result = net.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if k not in mismatched and not k.startswith("aux_")]
    else:
        backbone_state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
        result = net.backbone.load_state_dict(backbone_state, strict=False)
        missing = list(result.missing_keys)
    if strict and (missing or result.unexpected_keys):
        raise ValueError(f"{path}: missing keys {missing[:4]}, unexpected keys "
                         f"{list(result.unexpected_keys)[:4]}")
    if not strict and len(missing) > 0:
        warn(f"{path}: {len(missing)} weights not in the file kept their random start "
             f"(e.g. {missing[:3]})", PretrainedWeightsWarning)


def build_deeplabv3(
    num_classes: int = 7,
    backbone: Backbone = "resnet50",
    weights: str | Path | None = None,
    *,
    strict: bool = False,
    aux_loss: bool = False,
    bn_momentum: float | None = 0.1,
) -> SegmentationNet:
    """DeepLabV3 with a ResNet-50 (or MobileNetV3-Large) backbone and ``num_classes`` outputs.

    ``weights``:

    - ``None``: random initialisation;
    - ``"imagenet"``: the backbone pretrained on ImageNet;
    - ``"coco"``: the whole model pretrained on COCO (VOC labels), heads replaced for ``num_classes``;
    - a path: a local file, either a full model (a checkpoint of ``lc_utils.training`` or a
      torchvision segmentation state dict) or a backbone state dict (e.g. ``resnet50-0676ba61.pth``).

    Where pretrained weights cannot be downloaded (no network), one
    :class:`PretrainedWeightsWarning` says so (once per process: later calls fall back without
    trying the network again) and the model starts from random weights; with ``strict=True``
    that is an error instead. The forward pass returns logits at the input's size.

    ``bn_momentum`` is given to every batch-norm layer (``None`` keeps torchvision's). torchvision
    builds MobileNetV3 with momentum 0.01: the running statistics then average the last ~100
    batches, and after a short run they still describe the random start, so the eval-mode model
    (which uses them) scores far below the training-mode one. 0.1 (PyTorch's default, ResNet-50's)
    tracks the weights within ~10 batches.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    builder = _BUILDERS[backbone]
    net = None
    label = None if weights is None else str(weights)
    if weights in ("imagenet", "coco") and (weights, backbone) in _UNAVAILABLE and not strict:
        label = None  # already warned in this process; do not try the network again
    elif weights in ("imagenet", "coco"):
        # The attempt draws its random heads from a copy of the generator: a failed download then
        # leaves the seed's random model exactly as a process that knew the weights were unavailable
        # would build it (the first model of a process and the next one agree).
        try:
            with torch.random.fork_rng(devices=[]):
                if weights == "imagenet":
                    net = builder(weights=None, weights_backbone=_IMAGENET[backbone], num_classes=num_classes,
                                  aux_loss=aux_loss)
                else:
                    net = builder(weights=_COCO[backbone], aux_loss=True)
                    _replace_heads(net, num_classes)
                    if not aux_loss:
                        net.aux_classifier = None
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            if strict:
                raise RuntimeError(f"could not load {weights} weights for {backbone}: {error}") from error
            warn(
                f"Could not download the {weights} weights for DeepLabV3-{backbone} ({error}); the "
                "model starts from random weights and needs far more training. Pass weights="
                "'path/to/file.pth' to use a local copy.", PretrainedWeightsWarning)
            _UNAVAILABLE.add((weights, backbone))
            net, label = None, None
    elif weights is not None and not isinstance(weights, Path) and weights in BACKBONES:
        raise ValueError(f"weights={weights!r} looks like a backbone name; use backbone=")
    if net is None:
        net = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)
    if bn_momentum is not None:
        set_batchnorm_momentum(net, bn_momentum)
    model = SegmentationNet(net, backbone, num_classes, label)
    if weights is not None and weights not in ("imagenet", "coco"):
        _load_local(model, Path(weights), strict)
    return model


def load_trained_model(path: str | Path, device: str | torch.device | None = None) -> SegmentationNet:
    """Rebuild the DeepLabV3 saved in a checkpoint of :func:`lc_utils.training.fit` and load its
    weights (eval mode). ``crop_size`` on the model is the training crop the checkpoint's run spec
    names (None where it names none): the window it predicts best in (notebook 05)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here. Train a model first (notebook 04 writes one).")
    return model_from_checkpoint(Checkpoint.read(path), path, device)


def model_from_checkpoint(checkpoint: Checkpoint, source: str | Path,
                          device: str | torch.device | None = None) -> SegmentationNet:
    """The trained model of a checkpoint already read (:func:`load_trained_model` without reading
    the file); ``source`` names it in errors."""
    if not checkpoint.model_config.get("backbone"):
        raise ValueError(f"{source}: the checkpoint does not say which model it holds")
    model = build_deeplabv3(checkpoint.model_config["num_classes"], checkpoint.model_config["backbone"])
    # the aux head helps training only; a model rebuilt for prediction has none
    model.load_state_dict({k: v for k, v in checkpoint.weights.items()
                           if not k.startswith("net.aux_classifier.")})
    model.crop_size = checkpoint.config.get("crop")
    return model.to(resolve_device(device)).eval()
