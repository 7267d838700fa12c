"""Bad inputs on the way into training, each with its clear error or documented handling.

Other cases live beside the code they exercise: off-palette masks under each policy and bad mask
files (test_masks), missing masks, size mismatches, truncated JPEGs and empty folders
(test_datasets), bad annotation files (test_point_files), NaN losses, interrupted checkpoint writes and
resume (test_training), a batch without labels (test_losses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lc_utils.classes import IGNORE_INDEX
from lc_utils.datasets import DenseLandCoverDataset
from lc_utils.layouts import find_pairs
from lc_utils.losses import PartialCrossEntropyLoss
from lc_utils.masks import class_to_rgb
from lc_utils.sparse import PointAnnotation, SparseLandCoverDataset
from lc_utils.training import TrainingStep, fit, make_loader


def _pair_with_image(folder: Path, image: Image.Image, suffix: str = ".png") -> list[tuple[Path, Path]]:
    image.save(folder / f"1_sat{suffix}")
    Image.fromarray(class_to_rgb(np.ones((8, 8), np.uint8))).save(folder / "1_mask.png")
    return find_pairs(folder)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (Image.fromarray(np.zeros((8, 8), np.uint8)), "mode 'L' \\(grayscale\\)"),
        (Image.fromarray(np.zeros((8, 8), np.uint16)), "not 8-bit RGB"),
        (Image.fromarray(np.zeros((8, 8, 4), np.uint8)), "RGBA with transparent pixels"),
    ],
    ids=["grayscale", "16-bit", "transparent RGBA"],
)
def test_unusable_satellite_images_name_the_file(tmp_path: Path, image: Image.Image, message: str) -> None:
    pairs = _pair_with_image(tmp_path, image)
    with pytest.raises(ValueError, match=message) as error:
        DenseLandCoverDataset(pairs)[0]
    assert "1_sat.png" in str(error.value)


def test_opaque_rgba_satellite_image_is_used(tmp_path: Path) -> None:
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., :3] = 40
    image, labels = DenseLandCoverDataset(_pair_with_image(tmp_path, Image.fromarray(rgba)))[0]
    assert image.shape == (3, 8, 8) and (labels == 1).all()


def test_training_through_batches_without_a_single_label(tmp_path: Path) -> None:
    """Crops that miss every point give batches with no label: zero loss, no NaN, training goes on."""
    pairs = _pair_with_image(tmp_path, Image.fromarray(np.full((8, 8, 3), 90, np.uint8)))
    dataset = SparseLandCoverDataset(pairs, {"1": PointAnnotation([0], [0], [1])})
    images, labels = dataset[0]
    assert (labels != IGNORE_INDEX).sum() == 1
    unlabelled = torch.utils.data.TensorDataset(images[None].repeat(4, 1, 1, 1),
                                                torch.full((4, 8, 8), IGNORE_INDEX))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 7, 1))
    with pytest.warns(UserWarning, match="2 of 2 batches held no labelled pixel") as caught:
        history = fit(model, make_loader(unlabelled, 2, shuffle=True), epochs=2, progress=False)
    assert len([w for w in caught if "no labelled pixel" in str(w.message)]) == 1  # once, not per epoch
    assert [r["train_loss"] for r in history] == [0.0, 0.0]
    assert [r["batches_without_labels"] for r in history] == [2, 2]
    assert [r["labelled_px_per_batch"] for r in history] == [0.0, 0.0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_history_counts_the_labelled_pixels_of_every_batch() -> None:
    images = torch.zeros(4, 3, 8, 8)
    labels = torch.full((4, 8, 8), IGNORE_INDEX)
    labels[0, 1, 1] = labels[0, 2, 2] = labels[1, 3, 3] = labels[3, 0, 0] = 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=2)
    history = fit(torch.nn.Conv2d(3, 7, 1), loader, epochs=1, progress=False)
    assert history[0]["labelled_px_per_batch"] == 2.0  # (3 + 1) labelled pixels over 2 batches
    assert history[0]["batches_without_labels"] == 0


def test_fit_moves_the_loss_buffers_to_the_training_device() -> None:
    """Class weights or a logit adjustment live in the loss: on a GPU they must follow the model."""
    moved_to = []

    class RecordingLoss(PartialCrossEntropyLoss):
        def to(self, *args, **kwargs):
            moved_to.append(torch.device(args[0]) if args else kwargs.get("device"))
            return super().to(*args, **kwargs)

    images, labels = torch.zeros(2, 3, 4, 4), torch.full((2, 4, 4), IGNORE_INDEX)
    labels[:, 0, 0] = 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=2)
    fit(TrainingStep(torch.nn.Conv2d(3, 7, 1), RecordingLoss(weight=torch.ones(7)), device="cpu"), loader,
        epochs=1, progress=False)
    assert moved_to == [torch.device("cpu")]
