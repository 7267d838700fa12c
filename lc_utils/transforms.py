"""Paired transforms for (image, label map) samples, and the normalisation the backbones expect.

Geometric transforms only move pixels (crops, flips, 90-degree rotations): a sparse label map keeps
every labelled point, and nothing is ever resized.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .classes import IGNORE_INDEX
from .windows import class_balanced_window, labelled_window

CROP_SAMPLING = ("labelled", "class-balanced")
"""Where training crops fall: uniformly among the windows that hold a label, or centred on a
class drawn uniformly among each image's labelled classes."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomRotate90(v2.Transform):
    """Rotate images and masks together by a random multiple of 90 degrees (exact, no resampling)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(4, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["k"] == 0:
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt, params["k"], dims=(-2, -1)), like=inpt)

    # torchvision < 0.21 calls the private names.
    _get_params = make_params
    _transform = transform


class LabelledRandomCrop(v2.Transform):
    """A random crop that always holds a labelled pixel of the sample's mask when it has one.

    The window is uniform over all windows that hold at least one label (:func:`labelled_window`):
    plain random cropping with the label-free windows, which teach nothing to a partial loss,
    left out. With dense labels every window qualifies and it is plain random cropping. Images
    smaller than the crop are padded at the bottom and right (image 0, labels 255), as
    ``RandomCrop(pad_if_needed=True)`` would. With ``balance_classes`` the window is centred on a
    pixel of a class drawn uniformly among the labels' classes instead
    (:func:`~lc_utils.windows.class_balanced_window`).
    """

    def __init__(self, size: int | tuple[int, int], ignore_index: int = IGNORE_INDEX,
                 balance_classes: bool = False) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.ignore_index = ignore_index
        self.balance_classes = balance_classes

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        masks = [x for x in flat_inputs if isinstance(x, tv_tensors.Mask)]
        height, width = v2.functional.get_size(masks[0] if masks else
                                               next(x for x in flat_inputs if isinstance(x, torch.Tensor)))
        pad = (max(0, self.size[0] - height), max(0, self.size[1] - width))
        if masks and not any(pad):
            labels = masks[0].as_subclass(torch.Tensor)
        else:  # padding is unlabelled; without a mask every window is as good
            labels = torch.full((height + pad[0], width + pad[1]), self.ignore_index, dtype=torch.uint8)
            if masks:
                labels[:height, :width] = masks[0]
        place = class_balanced_window if self.balance_classes else labelled_window
        top, left = place(labels, self.size, self.ignore_index)
        return {"pad": pad, "top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        pad_h, pad_w = params["pad"]
        out = inpt
        if pad_h or pad_w:
            fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
            out = torch.nn.functional.pad(inpt.as_subclass(torch.Tensor), (0, pad_w, 0, pad_h), value=fill)
        top, left = params["top"], params["left"]
        out = out[..., top:top + self.size[0], left:left + self.size[1]]
        return tv_tensors.wrap(out.as_subclass(torch.Tensor), like=inpt)

    _get_params = make_params
    _transform = transform


def make_transforms(
    crop_size: int | None = None,
    *,
    train: bool = True,
    labelled_crops: bool = True,
    crop_sampling: str = "labelled",
    flips: bool = True,
    rotate90: bool = True,
    color_jitter: float = 0.0,
) -> v2.Transform:
    """Paired transforms for a (``tv_tensors.Image``, ``tv_tensors.Mask``) sample.

    Training: a random crop (padding with label 255 where the image is smaller), horizontal and
    vertical flips, 90-degree rotations, optional colour jitter on the image only. With
    ``labelled_crops`` (the default) the crop is a :class:`LabelledRandomCrop`: it always holds a
    labelled pixel, so that a few points on a large image still reach every batch; otherwise a
    plain ``RandomCrop``. ``crop_sampling="class-balanced"`` centres each crop on a class drawn
    uniformly among the image's labelled classes (:data:`CROP_SAMPLING`). Evaluation
    (``train=False``): a centre crop, or nothing without
    ``crop_size``. Geometric transforms only move pixels, so a sparse label map keeps every
    labelled point.
    """
    if crop_sampling not in CROP_SAMPLING:
        raise ValueError(f"crop_sampling must be one of {list(CROP_SAMPLING)}, got {crop_sampling!r}")
    steps: list[v2.Transform] = []
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
    if crop_size is not None:
        if not train:
            steps.append(v2.CenterCrop(crop_size))
        elif labelled_crops:
            steps.append(LabelledRandomCrop(crop_size, balance_classes=crop_sampling == "class-balanced"))
        else:
            steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill))
    if train and flips:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if train and rotate90:
        steps.append(RandomRotate90())
    if train and color_jitter > 0:
        j = color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5)))
    return v2.Compose(steps) if steps else v2.Identity()


def strong_view(images: torch.Tensor, strength: float = 0.5, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """A photometrically strong view of a batch of normalised images (N, 3, H, W): per image a
    random brightness shift, contrast and saturation change, and pixel noise, each up to
    ``strength``; no pixel moves, so pixel i of the view is pixel i of the image (what a
    consistency loss between the two compares). Drawn from ``generator`` (torch's own by
    default): a generator of its own leaves the crops that follow as they would be without it."""
    shape = (images.shape[0], 1, 1, 1)

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.empty(shape, device=images.device).uniform_(low, high, generator=generator)

    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    grey = images.mean(dim=1, keepdim=True)
    view = (images - mean) * uniform(1 - strength, 1 + strength) + mean  # contrast
    view = (view - grey) * uniform(1 - strength, 1 + strength) + grey  # saturation
    view = view + uniform(-strength, strength)  # brightness, in units of the channels' spread
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return view + strength / 4 * noise


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (…, 3, H, W) to float32 normalised with the ImageNet statistics the backbones expect."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


def denormalize_image(image: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_image` for one (3, H, W) tensor, as (H, W, 3) uint8 for plots."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image.detach().cpu().float() * std + mean).clamp(0, 1) * 255
    return rgb.round().byte().permute(1, 2, 0).numpy()
