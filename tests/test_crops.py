"""The crop samplers: every crop holds a label and the crops are unbiased; class-balanced crops
reach the rare classes."""

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from torchvision import tv_tensors

from lc_utils.classes import IGNORE_INDEX
from lc_utils.transforms import LabelledRandomCrop, make_transforms
from lc_utils.windows import class_balanced_window, labelled_window


def _labels(labelled: np.ndarray) -> torch.Tensor:
    """A label map with class 1 where ``labelled`` and unlabelled (255) elsewhere."""
    return torch.from_numpy(np.where(labelled, 1, IGNORE_INDEX).astype(np.uint8))


def _windows_with_labels(labelled: np.ndarray, size: tuple[int, int]) -> list[tuple[int, int]]:
    h, w = size
    return [(top, left) for top in range(labelled.shape[0] - h + 1)
            for left in range(labelled.shape[1] - w + 1) if labelled[top:top + h, left:left + w].any()]


@pytest.mark.parametrize("tries", [32, 0])  # 0: only the exact fallback that large images need
def test_windows_are_uniform_over_those_that_hold_a_label(tries: int) -> None:
    labelled = np.zeros((11, 13), dtype=bool)
    labelled[[0, 1, 1, 9, 5], [0, 0, 1, 12, 6]] = True  # a cluster in a corner, an edge point, a centre one
    size = (4, 5)
    allowed = _windows_with_labels(labelled, size)
    torch.manual_seed(0)
    draws = 30 * len(allowed) * 10
    counts = Counter(labelled_window(_labels(labelled), size, tries=tries) for _ in range(draws))
    assert set(counts) == set(allowed)  # never a window without a label, every allowed one drawn
    observed = np.array([counts[w] for w in allowed])
    # Picking a labelled pixel and then a window around it is not uniform over windows: on such a
    # sampler this test fails (p < 1e-10).
    assert chisquare(observed).pvalue > 1e-3


def test_pixel_coverage_matches_uniform_windows() -> None:
    """Each pixel is covered as often as under uniform windows restricted to those with a label."""
    rng = np.random.default_rng(1)
    labelled = rng.random((24, 24)) < 0.004
    labelled[3, 20] = True
    size = (6, 6)
    allowed = _windows_with_labels(labelled, size)
    expected = np.zeros(labelled.shape)
    for top, left in allowed:
        expected[top:top + 6, left:left + 6] += 1 / len(allowed)
    torch.manual_seed(2)
    observed = np.zeros(labelled.shape)
    draws = 20_000
    for _ in range(draws):
        top, left = labelled_window(_labels(labelled), size, tries=4)
        observed[top:top + 6, left:left + 6] += 1 / draws
    assert np.abs(observed - expected).max() < 0.03


def test_dense_labels_give_plain_uniform_windows() -> None:
    labelled = torch.zeros(6, 7, dtype=torch.uint8)
    torch.manual_seed(0)
    counts = Counter(labelled_window(labelled, (3, 3)) for _ in range(4000))
    assert len(counts) == 4 * 5
    assert chisquare(list(counts.values())).pvalue > 1e-3


def test_no_label_at_all_falls_back_to_any_window() -> None:
    torch.manual_seed(0)
    seen = {labelled_window(torch.full((5, 5), IGNORE_INDEX), (2, 2)) for _ in range(400)}
    assert len(seen) == 16


def test_window_larger_than_the_map_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        labelled_window(torch.zeros(4, 4), (5, 4))


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 60), width=st.integers(1, 60), crop=st.integers(1, 32),
       n_points=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_every_crop_holds_a_label_and_stays_aligned(height: int, width: int, crop: int, n_points: int,
                                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.full((height, width), IGNORE_INDEX, np.uint8)
    flat = rng.choice(height * width, size=min(n_points, height * width), replace=False)
    labels.flat[flat] = rng.integers(0, 6, len(flat))
    # The image encodes each pixel's position, so a crop that moved image and labels differently shows.
    position = np.arange(height * width, dtype=np.int32).reshape(height, width)
    image = np.stack([position % 251, position // 251, np.full_like(position, 7)]).astype(np.uint8)
    torch.manual_seed(seed)
    out_image, out_labels = LabelledRandomCrop(crop)(tv_tensors.Image(torch.from_numpy(image)),
                                                     tv_tensors.Mask(torch.from_numpy(labels)))
    assert out_labels.shape == (crop, crop) and out_image.shape == (3, crop, crop)
    kept = out_labels != IGNORE_INDEX
    assert kept.any()
    inside = out_image[2] == 7  # padding has 0 in every channel
    codes = out_image[0].long() + 251 * out_image[1].long()
    original = torch.from_numpy(labels.ravel()[codes[inside].numpy()].astype(np.int64))
    assert torch.equal(out_labels[inside].long(), original)
    assert (out_labels[~inside] == IGNORE_INDEX).all()


def test_make_transforms_uses_it_and_can_do_without() -> None:
    labels = torch.full((200, 200), IGNORE_INDEX, dtype=torch.uint8)
    labels[150, 20] = 3
    image = torch.zeros(3, 200, 200, dtype=torch.uint8)
    hits = {True: 0, False: 0}
    for labelled_crops in hits:
        torch.manual_seed(0)
        transform = make_transforms(16, labelled_crops=labelled_crops)
        for _ in range(50):
            _, out = transform(tv_tensors.Image(image), tv_tensors.Mask(labels))
            hits[labelled_crops] += int((out != IGNORE_INDEX).any())
    assert hits[True] == 50
    assert hits[False] < 5  # a 16-pixel crop of a 200-pixel image rarely meets the one point


def test_class_balanced_windows_reach_a_rare_class_as_often_as_a_common_one() -> None:
    """A 3 x 3 patch of water in a 96 x 96 field: a uniform window of 16 holds it 4% of the time,
    a class-balanced one half of the time, and every window lies inside the map."""
    labels = torch.zeros(96, 96, dtype=torch.uint8)
    labels[90:93, 2:5] = 4
    labels[:4] = IGNORE_INDEX  # unlabelled rows are never a centre
    torch.manual_seed(0)
    draws = 2000
    hits = {"balanced": 0, "uniform": 0}
    for _ in range(draws):
        for name, place in (("balanced", class_balanced_window), ("uniform", labelled_window)):
            top, left = place(labels, (16, 16))
            assert 0 <= top <= 80 and 0 <= left <= 80
            hits[name] += int((labels[top:top + 16, left:left + 16] == 4).any())
    assert 0.45 < hits["balanced"] / draws < 0.55
    assert hits["uniform"] / draws < 0.08


def test_class_balanced_windows_centre_a_labelled_pixel_of_sparse_labels() -> None:
    labels = torch.full((200, 300), IGNORE_INDEX, dtype=torch.uint8)
    points = {(10, 290): 5, (100, 150): 1, (195, 3): 1, (60, 60): 1}
    for (row, col), cls in points.items():
        labels[row, col] = cls
    torch.manual_seed(3)
    tops_lefts = [class_balanced_window(labels, (32, 32)) for _ in range(400)]
    held = [[(r, c) for r, c in points if top <= r < top + 32 and left <= c < left + 32]
            for top, left in tops_lefts]
    assert all(held)
    with_class_5 = sum((10, 290) in h for h in held) / len(held)
    assert 0.4 < with_class_5 < 0.6  # one point of class 5 against three of class 1
    torch.manual_seed(3)
    assert [class_balanced_window(labels, (32, 32)) for _ in range(400)] == tops_lefts


def test_class_balanced_crops_come_from_make_transforms() -> None:
    labels = torch.zeros(128, 128, dtype=torch.uint8)
    labels[120:, 120:] = 2
    image = torch.zeros(3, 128, 128, dtype=torch.uint8)
    torch.manual_seed(0)
    transform = make_transforms(16, crop_sampling="class-balanced", flips=False, rotate90=False)
    hits = sum(int((transform(tv_tensors.Image(image), tv_tensors.Mask(labels))[1] == 2).any())
               for _ in range(200))
    assert hits > 80
    with pytest.raises(ValueError, match="crop_sampling"):
        make_transforms(16, crop_sampling="rare-first")
