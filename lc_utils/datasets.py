"""The torch datasets, the split every notebook shares, data statistics and paired transforms.

Finding the images and masks of a data set, in whatever layout, is :mod:`lc_utils.layouts`
(its :func:`~lc_utils.layouts.find_pairs`, :func:`~lc_utils.layouts.scan_dataset` and
:func:`~lc_utils.layouts.load_schema` are importable from here too, as the notebooks do).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .files import image_id_of, read_rgb, source_id
from .layouts import Sample as Sample
from .layouts import find_pairs as find_pairs
from .layouts import find_unlabelled_images as find_unlabelled_images
from .layouts import load_schema as load_schema
from .layouts import scan_dataset as scan_dataset
from .masks import OnInvalid, read_mask
from .settings import fast_mode, sample_dir, smoke_mode
from .sparse import PointAnnotation, points_to_label_map
from .synthetic import SAMPLE_SIZES, SMOKE_IMAGES, ensure_sample_dataset

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
"""Train / validation / test shares of :func:`split_pairs`, shared by every notebook."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare_data(data_dir: str | Path | None = None) -> Path:
    """The dataset folder to use: ``data_dir``, else ``$DATA_DIR``, else the generated sample.

    The sample (``data/sample/``) is generated on first use, sized for the current mode
    (:data:`lc_utils.synthetic.SAMPLE_SIZES`; :data:`~lc_utils.synthetic.SMOKE_IMAGES` of them in
    smoke mode), and reused afterwards.
    """
    chosen = data_dir or os.environ.get("DATA_DIR")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: DATA_DIR is not a folder (a relative path is read from "
                                    f"{Path.cwd()})")
        return root
    size = dict(SAMPLE_SIZES["fast" if fast_mode() else "full"])
    if smoke_mode():
        size["n_images"] = min(size["n_images"], SMOKE_IMAGES)
    return ensure_sample_dataset(sample_dir(), **size)


def dataset_summary(samples: Sequence[Sample]) -> pd.DataFrame:
    """Per split: how many images, how many with masks, and the image sizes found."""
    rows = {}
    for split in sorted({s.split for s in samples}):
        chosen = [s for s in samples if s.split == split]
        sizes = set()
        for sample in chosen[:50]:  # headers only; 50 are enough to see the sizes
            with Image.open(sample.image) as image:
                sizes.add(f"{image.size[0]}x{image.size[1]}")
        labelled = sum(s.mask is not None for s in chosen)
        rows[split or "(flat)"] = {"images": len(chosen), "with masks": labelled,
                                   "sizes": ", ".join(sorted(sizes))}
    return pd.DataFrame.from_dict(rows, orient="index")


def image_shapes(pairs: Sequence[tuple[Path, Path]]) -> dict[str, tuple[int, int]]:
    """Image id -> (height, width), read from the file headers only."""
    shapes = {}
    for image, _ in pairs:
        with Image.open(image) as opened:
            shapes[image_id_of(image)] = (opened.size[1], opened.size[0])
    return shapes


def split_pairs(pairs: Sequence[tuple[Path, Path]], seed: int = 0,
                fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, list[tuple[Path, Path]]]:
    """``{"train", "val", "test"}`` lists of pairs: the seeded split all the notebooks share.

    Tiles cut from one image (:mod:`lc_utils.tiles`) stay together in one part: neighbouring
    tiles look alike, and a test tile whose neighbour was trained on would flatter the model.
    """
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for pair in pairs:
        groups.setdefault(source_id(image_id_of(pair[0])), []).append(pair)
    if len(groups) < len(fractions) <= len(pairs):
        warnings.warn(f"the {len(pairs)} tiles come from {len(groups)} image(s), too few to keep each "
                      "image's tiles in one part: tiles of one image are split apart", stacklevel=2)
        groups = {str(i): [pair] for i, pair in enumerate(pairs)}
    parts = split_items(list(groups), fractions, seed)
    return {name: [pair for group in part for pair in groups[group]]
            for name, part in zip(("train", "val", "test"), parts)}


def class_statistics(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                     on_invalid: OnInvalid = "unknown") -> pd.DataFrame:
    """Per class: pixel count and share, and how many images (and what share) contain it."""
    pixels = np.zeros(schema.num_classes, dtype=np.int64)
    images = np.zeros(schema.num_classes, dtype=np.int64)
    for _, mask in pairs:
        class_map = read_mask(mask, schema, on_invalid=on_invalid)
        counts = np.bincount(class_map.ravel(), minlength=256)[: schema.num_classes]
        pixels += counts
        images += counts > 0
    return pd.DataFrame({"pixels": pixels, "pixel_share": pixels / max(1, pixels.sum()),
                         "images": images, "image_share": images / max(1, len(pairs))},
                        index=pd.Index(schema.names, name="class"))


def channel_statistics(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                       on_invalid: OnInvalid = "unknown") -> pd.DataFrame:
    """Mean and standard deviation of each RGB channel, over all pixels and per class."""
    sums = np.zeros((schema.num_classes, 3))
    squares = np.zeros((schema.num_classes, 3))
    counts = np.zeros(schema.num_classes)
    for image_path, mask_path in pairs:
        image, class_map = read_pair(image_path, mask_path, schema, on_invalid)
        flat, labels = image.reshape(-1, 3).astype(np.float64), class_map.ravel()
        for k in np.unique(labels[labels < schema.num_classes]):
            values = flat[labels == k]
            sums[k] += values.sum(0)
            squares[k] += (values ** 2).sum(0)
            counts[k] += len(values)
    rows = {"all pixels": (sums.sum(0), squares.sum(0), counts.sum())}
    rows.update({name: (sums[k], squares[k], counts[k]) for k, name in enumerate(schema.names)})
    records = {}
    for name, (s, q, n) in rows.items():
        mean = s / n if n else np.full(3, np.nan)
        std = np.sqrt(np.maximum(q / n - mean ** 2, 0)) if n else np.full(3, np.nan)
        records[name] = {"mean R": mean[0], "mean G": mean[1], "mean B": mean[2],
                         "std R": std[0], "std G": std[1], "std B": std[2]}
    return pd.DataFrame.from_dict(records, orient="index").round(1)


def split_items(
    items: Sequence[Any],
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
) -> list[list[Any]]:
    """Shuffle ``items`` with ``seed`` and cut them into parts of the given fractions.

    Every part gets at least one item when there are enough; the last part takes the rounding.
    The same items and seed always give the same parts.
    """
    if not items:
        raise ValueError("nothing to split")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)}")
    if len(items) < len(fractions):
        raise ValueError(f"cannot split {len(items)} item(s) into {len(fractions)} parts")
    order = np.random.default_rng(seed).permutation(len(items))
    sizes = [max(1, round(f * len(items))) for f in fractions[:-1]]
    while sum(sizes) > len(items) - 1:
        sizes[int(np.argmax(sizes))] -= 1
    bounds = np.cumsum([0, *sizes, len(items) - sum(sizes)])
    return [[items[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def read_pair(
    image_path: str | Path,
    mask_path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    on_invalid: OnInvalid = "unknown",
) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its class map, checking that their sizes agree."""
    image = read_rgb(image_path, what="image")
    class_map = read_mask(mask_path, schema, on_invalid=on_invalid)
    if image.shape[:2] != class_map.shape:
        raise ValueError(f"{mask_path}: mask is {class_map.shape[1]}x{class_map.shape[0]} but "
                         f"its image {Path(image_path).name} is {image.shape[1]}x{image.shape[0]}")
    return image, class_map


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


def labelled_window(labels: torch.Tensor, size: tuple[int, int], ignore_index: int = IGNORE_INDEX,
                    tries: int = 32) -> tuple[int, int]:
    """Top-left corner of a ``size`` window inside ``labels`` (an (H, W) label map at least as
    large as ``size``, ``ignore_index`` where unlabelled), drawn uniformly among the windows that
    hold at least one labelled pixel; uniformly among all windows when no pixel is labelled.

    Uniform windows are tried first (conditioned on holding a label, they are already uniform over
    the right set; each try looks at one window only). If ``tries`` all miss, as they do with a
    few points on a large image, a window is drawn exactly from the same distribution: pick a
    labelled pixel with probability proportional to the number of windows that contain it, a
    window uniformly among those, and keep it with probability 1 / (labelled pixels in the
    window), which cancels the extra chances of windows holding several points. Draws use torch's
    global generator (seeded per epoch by :func:`lc_utils.training.fit` and per worker by the
    ``DataLoader``).
    """
    crop_h, crop_w = size
    n_tops, n_lefts = labels.shape[0] - crop_h + 1, labels.shape[1] - crop_w + 1
    if n_tops < 1 or n_lefts < 1:
        raise ValueError(f"a {crop_w}x{crop_h} window does not fit in a "
                         f"{labels.shape[1]}x{labels.shape[0]} label map")

    def uniform() -> tuple[int, int]:
        return int(torch.randint(n_tops, ())), int(torch.randint(n_lefts, ()))

    for _ in range(tries):
        top, left = uniform()
        if (labels[top:top + crop_h, left:left + crop_w] != ignore_index).any():
            return top, left
    labelled = labels != ignore_index
    rows, cols = torch.nonzero(labelled, as_tuple=True)
    if len(rows) == 0:
        return uniform()
    first_top, last_top = (rows - crop_h + 1).clamp(min=0), rows.clamp(max=n_tops - 1)
    first_left, last_left = (cols - crop_w + 1).clamp(min=0), cols.clamp(max=n_lefts - 1)
    tops, lefts = last_top - first_top + 1, last_left - first_left + 1
    windows_per_pixel = (tops * lefts).double()
    while True:
        i = int(torch.multinomial(windows_per_pixel, 1))
        top = int(first_top[i] + torch.randint(int(tops[i]), ()))
        left = int(first_left[i] + torch.randint(int(lefts[i]), ()))
        in_window = int(labelled[top:top + crop_h, left:left + crop_w].sum())
        if float(torch.rand(())) * in_window < 1:
            return top, left


class LabelledRandomCrop(v2.Transform):
    """A random crop that always holds a labelled pixel of the sample's mask when it has one.

    The window is uniform over all windows that hold at least one label (:func:`labelled_window`):
    plain random cropping with the label-free windows, which teach nothing to a partial loss,
    left out. With dense labels every window qualifies and it is plain random cropping. Images
    smaller than the crop are padded at the bottom and right (image 0, labels 255), as
    ``RandomCrop(pad_if_needed=True)`` would.
    """

    def __init__(self, size: int | tuple[int, int], ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.ignore_index = ignore_index

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
        top, left = labelled_window(labels, self.size, self.ignore_index)
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
    flips: bool = True,
    rotate90: bool = True,
    color_jitter: float = 0.0,
) -> v2.Transform:
    """Paired transforms for a (``tv_tensors.Image``, ``tv_tensors.Mask``) sample.

    Training: a random crop (padding with label 255 where the image is smaller), horizontal and
    vertical flips, 90-degree rotations, optional colour jitter on the image only. With
    ``labelled_crops`` (the default) the crop is a :class:`LabelledRandomCrop`: it always holds a
    labelled pixel, so that a few points on a large image still reach every batch; otherwise a
    plain ``RandomCrop``. Evaluation (``train=False``): a centre crop, or nothing without
    ``crop_size``. Geometric transforms only move pixels, so a sparse label map keeps every
    labelled point.
    """
    steps: list[v2.Transform] = []
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
    if crop_size is not None:
        if not train:
            steps.append(v2.CenterCrop(crop_size))
        elif labelled_crops:
            steps.append(LabelledRandomCrop(crop_size))
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


class SegmentationDataset(Dataset):
    """Base for datasets that yield (normalised image tensor, label map tensor) pairs.

    Subclasses provide :meth:`label_map` (an (H, W) uint8 array for item ``index``); images are
    read and checked here, and the same ``transform`` moves image and labels together.

    ``cache_mb``: decoded images and label maps are kept in memory up to this many megabytes
    (the first ones read; each ``DataLoader`` worker keeps its own). Every random crop of a
    2448 x 2448 original otherwise decodes the whole 18 MB image again, which on a CPU takes as
    long as a training step.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path]],
        schema: ClassSchema = DEEPGLOBE,
        transform: Callable | None = None,
        on_invalid: OnInvalid = "unknown",
        cache_mb: float = 0,
    ) -> None:
        if not pairs:
            raise ValueError("a dataset needs at least one (image, mask) pair")
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        self.image_ids = [image_id_of(image) for image, _ in self.pairs]
        self.schema = schema
        self.transform = transform
        self.on_invalid = on_invalid
        self.cache_mb = cache_mb
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def read_class_map(self, index: int) -> np.ndarray:
        """The dense ground-truth class map of item ``index``."""
        return read_mask(self.pairs[index][1], self.schema, on_invalid=self.on_invalid)

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """The (H, W) uint8 labels of item ``index`` whose image has ``shape``."""
        raise NotImplementedError

    def read_item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` as read from disk: the (H, W, 3) uint8 image and its (H, W) labels."""
        if index in self._cache:
            return self._cache[index]
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path, what="image")
        labels = self.label_map(index, image.shape[:2])
        if image.shape[:2] != labels.shape:
            raise ValueError(f"{mask_path}: labels are {labels.shape[1]}x{labels.shape[0]} but "
                             f"image {image_path.name} is {image.shape[1]}x{image.shape[0]}")
        size = image.nbytes + labels.nbytes
        if self._cached_bytes + size <= self.cache_mb * 2**20:
            self._cache[index] = (image, labels)
            self._cached_bytes += size
        return image, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.read_item(index)
        image_tv = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
        labels_tv = tv_tensors.Mask(torch.from_numpy(labels))
        if self.transform is not None:
            image_tv, labels_tv = self.transform(image_tv, labels_tv)
        return normalize_image(image_tv.as_subclass(torch.Tensor)), labels_tv.as_subclass(
            torch.Tensor).long()


class DenseLandCoverDataset(SegmentationDataset):
    """Images with their full (dense) class maps decoded from the RGB masks."""

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        return self.read_class_map(index)


class SparseLandCoverDataset(SegmentationDataset):
    """Images with fixed sparse point labels: 255 everywhere but the annotated points.

    The points come from ``annotations`` (image id -> :class:`PointAnnotation`, made once and
    saved, see :func:`lc_utils.sparse.ensure_annotations`), never redrawn. The paired transforms
    crop, flip and rotate the label map with the image, which moves the points with their pixels;
    nothing is resized, so no point is lost or duplicated.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path]],
        annotations: dict[str, PointAnnotation],
        schema: ClassSchema = DEEPGLOBE,
        transform: Callable | None = None,
        cache_mb: float = 0,
    ) -> None:
        super().__init__(pairs, schema, transform, cache_mb=cache_mb)
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError("image ids repeat across the pairs; annotations are keyed by id")
        missing = [i for i in self.image_ids if i not in annotations]
        if missing:
            raise ValueError(f"{len(missing)} image(s) have no annotation, e.g. {missing[:3]}; "
                             "make annotations for this dataset first")
        self.annotations = {i: annotations[i] for i in self.image_ids}

    def label_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        image_id = self.image_ids[index]
        return points_to_label_map(self.annotations[image_id], shape, f"annotation of image {image_id!r}")


def window_starts(length: int, size: int, min_overlap: int = 0) -> list[int]:
    """Start offsets of the fewest ``size`` windows that cover ``0..length`` with neighbours
    overlapping by at least ``min_overlap`` pixels: evenly spaced, the first at 0 and the last
    flush with the edge (so the overlap is spread over every seam, never piled on the last one).
    One window at 0 where ``length`` is no larger than ``size``."""
    if not 0 <= min_overlap < size:
        raise ValueError(f"min_overlap must be in [0, {size}), got {min_overlap}")
    if length <= size:
        return [0]
    count = math.ceil((length - size) / (size - min_overlap)) + 1
    return np.linspace(0, length - size, count).round().astype(int).tolist()


def window_grid(shape: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Top-left corners of ``size`` windows that cover an image of ``shape`` with as little overlap
    as possible (:func:`window_starts`); one corner (0, 0) per axis where the image is no larger
    than ``size``."""
    return [(top, left) for top in window_starts(shape[0], size) for left in window_starts(shape[1], size)]


class WindowDataset(Dataset):
    """Fixed windows of a dataset's images: the same pixels scored every epoch, at a set cost.

    Every image is covered by a grid of ``size`` windows (:func:`window_grid`); ``count`` of all
    the images' windows are chosen at random with ``seed`` (all of them with ``count=None``), so
    that every pixel of the set has the same chance to be scored, whatever the image sizes.
    Validating a 2448 x 2448 tile whole every epoch costs more than an epoch of training on a
    CPU; a few fixed windows are enough to rank epochs, and whole-image scores stay for the end
    (:func:`lc_utils.training.evaluate` on the full images, notebook 05). Images no larger than
    ``size`` are one window each, so a set of small images is scored whole. The windows are read
    once and kept in memory (``cache``): about 1 MB per 512 x 512 window.
    """

    def __init__(self, dataset: SegmentationDataset, size: int = 512, count: int | None = None,
                 seed: int = 0, cache: bool = True) -> None:
        if dataset.transform is not None:
            raise ValueError("WindowDataset cuts fixed windows: give it a dataset without transform")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.dataset, self.size, self.cache = dataset, size, cache
        self._shapes = image_shapes(dataset.pairs)
        windows = [(index, top, left) for index, image_id in enumerate(dataset.image_ids)
                   for top, left in window_grid(self._shapes[image_id], size)]
        if count is not None and count < len(windows):
            chosen = np.random.default_rng(seed).choice(len(windows), size=count, replace=False)
            windows = [windows[i] for i in sorted(chosen)]
        self.windows = windows
        self._cached: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def _cut(self, image: torch.Tensor, labels: torch.Tensor, top: int, left: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = slice(top, top + self.size), slice(left, left + self.size)
        return image[:, rows, cols].clone(), labels[rows, cols].clone()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i in self._cached:
            return self._cached[i]
        index, top, left = self.windows[i]
        image, labels = self.dataset[index]
        if not self.cache:
            return self._cut(image, labels, top, left)
        # Read each image once for all of its windows.
        for j, (other, other_top, other_left) in enumerate(self.windows):
            if other == index:
                self._cached[j] = self._cut(image, labels, other_top, other_left)
        return self._cached[i]

    @property
    def pixels(self) -> int:
        """Pixels in all the windows together."""
        return sum(min(self.size, h - top) * min(self.size, w - left) for index, top, left in self.windows
                   for h, w in [self._shapes[self.dataset.image_ids[index]]])
