"""Prediction, evaluation and training accept any segmentation model: one returning logits,
torchvision's own builders (a dict with "out" and optionally "aux"), a model on a device other
than the default one; anything else gets one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

from lc_utils import devices
from lc_utils.devices import device_of, model_device
from lc_utils.inference import evaluate, evaluate_tiled, predict_tiled, validator
from lc_utils.layouts import find_pairs
from lc_utils.models import SegmentationNet, segmentation_logits
from lc_utils.training import TrainingStep, fit


def _image(size: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _torchvision_deeplab(aux_loss: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=7, aux_loss=aux_loss)


def _tiny_batches(n: int = 4, size: int = 64, num_classes: int = 7) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=generator)
    labels = torch.full((n, size, size), 255, dtype=torch.long)
    labels[:, ::8, ::8] = torch.randint(0, num_classes, labels[:, ::8, ::8].shape, generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=2)


class _ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), x


class _QuarterSize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("builder", [_torchvision_deeplab, lambda: _torchvision_deeplab(aux_loss=True),
                                     lambda: lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                       num_classes=7)],
                         ids=["deeplabv3", "deeplabv3+aux", "lraspp"])
def test_torchvision_models_predict_like_their_out_logits(builder) -> None:
    model = builder().eval()
    image = _image()
    class_map, probs = predict_tiled(model, image, tile_size=128, return_probs=True)
    from lc_utils.transforms import normalize_image

    with torch.no_grad():
        expected = model(normalize_image(torch.from_numpy(image).permute(2, 0, 1))[None])["out"].softmax(1)[0]
    torch.testing.assert_close(torch.from_numpy(probs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(class_map, expected.argmax(0).numpy())
    tiled = predict_tiled(model, _image(160), tile_size=64, overlap=0.25)  # several windows
    assert tiled.shape == (160, 160) and tiled.max() < 7


def test_evaluate_tiled_and_evaluate_take_a_torchvision_model(sample_root: Path) -> None:
    model = _torchvision_deeplab()
    confusion = evaluate_tiled(model, find_pairs(sample_root)[:2], tile_size=64)
    assert confusion.matrix.sum() == 2 * 96 * 96
    loader = _tiny_batches()
    # No num_classes anywhere on a torchvision model: the logits' channels tell it.
    per_batch = evaluate(model, loader)
    assert per_batch.num_classes == 7 and per_batch.matrix.sum() == 4 * 64 // 8 * 64 // 8
    assert per_batch.matrix.sum() == evaluate(model, loader, 7).matrix.sum()


def test_fit_trains_a_torchvision_model_with_its_aux_head() -> None:
    model = _torchvision_deeplab(aux_loss=True)
    before = [p.detach().clone() for p in model.aux_classifier.parameters()]
    history = fit(TrainingStep(model, channels_last=False), _tiny_batches(), epochs=1,
                  validate=validator(_tiny_batches(2)), progress=False)
    assert np.isfinite(history[0]["train_loss"]) and 0 <= history[0]["val_mean_iou"] <= 1
    # The aux head's loss reached the optimiser: its weights moved.
    assert any(not torch.equal(b, p) for b, p in zip(before, model.aux_classifier.parameters()))


def test_a_model_runs_where_its_weights_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default device no longer decides where prediction runs: the model's weights do."""
    model = nn.Conv2d(3, 7, 1)
    monkeypatch.setattr(devices, "default_device", lambda: torch.device("meta"))
    assert model_device(model) == torch.device("cpu") == device_of(model)
    class_map = predict_tiled(model, _image(40), tile_size=32)
    assert class_map.shape == (40, 40)
    assert evaluate(model, _tiny_batches(2), 7).matrix.sum() > 0
    with pytest.raises(ValueError, match=r"model is on cpu but device='meta'.*model.to\('meta'\)"):
        predict_tiled(model, _image(40), device="meta")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no weights at all


@pytest.mark.parametrize(("model", "error", "message"), [
    (_ReturnsTuple(), TypeError, r"returned a tuple; expected a tensor of logits"),
    (_QuarterSize(), ValueError, r"logits of \(16, 16\) for an input of \(64, 64\)"),
], ids=["tuple", "quarter-size"])
def test_anything_else_gets_one_clear_error(model: nn.Module, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        predict_tiled(model, _image(64), tile_size=64)
    with pytest.raises(error, match=message):
        evaluate(model, _tiny_batches(2), 7)
    with pytest.raises(error, match=message):
        fit(TrainingStep(model, channels_last=False), _tiny_batches(2), epochs=1, progress=False)


def test_segmentation_logits_reads_every_accepted_form() -> None:
    logits = torch.zeros(1, 7, 8, 8)
    assert segmentation_logits(logits, (8, 8)) is logits
    assert segmentation_logits({"out": logits, "aux": logits * 2}) is logits
    with pytest.raises(TypeError, match=r"a dict with keys \['logits'\]"):
        segmentation_logits({"logits": logits})
    with pytest.raises(ValueError, match=r"shape \(7, 8, 8\)"):
        segmentation_logits(logits[0])
    wrapped = SegmentationNet(_torchvision_deeplab(), "mobilenet_v3_large", 7, None).eval()
    assert segmentation_logits(wrapped(torch.randn(1, 3, 64, 64)), (64, 64)).shape == (1, 7, 64, 64)
