"""Window geometry, one vocabulary for all of it: training crops that hold a label, the fixed
validation windows, and the windows whole-image prediction slides over.

A *window* is a ``size`` square (smaller where the image is) given by its top-left corner. Its
placement along one axis is :func:`window_starts`; over an image, :func:`window_grid` (no overlap
needed: validation) or :func:`prediction_windows` (overlapping neighbours, so that a blend hides
the seams: :func:`lc_utils.inference.predict_tiled`). Sizes come from the file headers, so nothing
here needs to decode an image or know which dataset it comes from.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from .classes import IGNORE_INDEX
from .files import image_shapes

DEFAULT_OVERLAP = 0.05
"""Least share of a window that overlaps its neighbour in whole-image prediction: at least 26
pixels of a 512 window, so that a ramp blends every seam. A 2448 x 2448 DeepGlobe tile then takes
5 x 5 windows overlapping by 28 pixels, 1.09 times its area (0.25 took 7 x 7 windows, 2.1 times its
area, for the same mIoU: ``benchmarks/results/tiling_overlap.json``)."""


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


def prediction_windows(height: int, width: int, size: int = 512,
                       overlap: float = DEFAULT_OVERLAP) -> tuple[list[int], list[int]]:
    """Row and column offsets of the windows whole-image prediction uses: the fewest windows of
    ``size`` (the image's own size where it is smaller) whose neighbours overlap by at least
    ``overlap`` of a window, evenly spaced (:func:`window_starts`)."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    window_h, window_w = min(size, height), min(size, width)
    return (window_starts(height, window_h, min(window_h - 1, round(overlap * window_h))),
            window_starts(width, window_w, min(window_w - 1, round(overlap * window_w))))


def seam_overlap(starts: list[int], size: int) -> int:
    """The narrowest overlap between neighbouring ``size`` windows at ``starts`` (0 for one window)."""
    return min((size - (b - a) for a, b in zip(starts, starts[1:])), default=0)


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


def class_balanced_window(labels: torch.Tensor, size: tuple[int, int],
                          ignore_index: int = IGNORE_INDEX) -> tuple[int, int]:
    """Top-left corner of a ``size`` window inside ``labels`` centred, as near as the borders
    allow, on a pixel of a class drawn uniformly among the classes the labels hold.

    A class that covers 2% of an image is then in half the crops of an image of two classes,
    instead of one in fifty: the rare classes' pixels reach the batches, at the price of a
    training distribution that is no longer the images' (the scores, on whole images, are not
    affected). The pixel is uniform among that class's labelled pixels, then the window is
    centred on it and moved inside the image. Without any labelled pixel: a uniform window.
    Draws use torch's global generator, as :func:`labelled_window`'s do.
    """
    crop_h, crop_w = size
    height, width = labels.shape
    if height < crop_h or width < crop_w:
        raise ValueError(f"a {crop_w}x{crop_h} window does not fit in a {width}x{height} label map")
    flat = labels.reshape(-1).long()
    counts = torch.bincount(flat[flat != ignore_index])
    present = torch.nonzero(counts, as_tuple=True)[0]
    if len(present) == 0:
        return int(torch.randint(height - crop_h + 1, ())), int(torch.randint(width - crop_w + 1, ()))
    chosen = present[torch.randint(len(present), ())]
    pixels = torch.nonzero(flat == chosen, as_tuple=True)[0]
    pixel = int(pixels[torch.randint(len(pixels), ())])
    row, col = divmod(pixel, width)
    top = min(max(row - crop_h // 2, 0), height - crop_h)
    left = min(max(col - crop_w // 2, 0), width - crop_w)
    return top, left


class ImagePairDataset(Protocol):
    """What :class:`WindowDataset` needs of the dataset it cuts: its (image, mask) pairs, their
    ids, no random transform, and items of (image (3, H, W), labels (H, W))."""

    pairs: list
    image_ids: list[str]
    transform: object

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class WindowDataset(Dataset):
    """Fixed windows of a dataset's images: the same pixels scored every epoch, at a set cost.

    Every image is covered by a grid of ``size`` windows (:func:`window_grid`); ``count`` of all
    the images' windows are chosen at random with ``seed`` (all of them with ``count=None``), so
    that every pixel of the set has the same chance to be scored, whatever the image sizes.
    Validating a 2448 x 2448 tile whole every epoch costs more than an epoch of training on a
    CPU; a few fixed windows are enough to rank epochs, and whole-image scores stay for the end
    (:func:`lc_utils.inference.evaluate` on the full images, notebook 05). Images no larger than
    ``size`` are one window each, so a set of small images is scored whole. The windows are read
    once and kept in memory (``cache``): about 1 MB per 512 x 512 window.
    """

    def __init__(self, dataset: ImagePairDataset, size: int = 512, count: int | None = None,
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

    @property
    def schema(self) -> object:
        """The class schema of the dataset the windows are cut from (None where it has none): the
        windows' labels are that dataset's."""
        return getattr(self.dataset, "schema", None)

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
