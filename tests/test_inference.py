from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lc_utils.datasets import read_pair
from lc_utils.inference import (
    Tiling,
    blend_window,
    compare_tilings,
    evaluate_tiled,
    predict_tiled,
    seam_tilings,
)
from lc_utils.layouts import find_pairs, load_schema
from lc_utils.models import build_deeplabv3
from lc_utils.transforms import normalize_image
from lc_utils.windows import DEFAULT_OVERLAP, prediction_windows, window_starts


def _pointwise_model() -> nn.Module:
    """A 1x1-convolution model: exactly translation-equivariant, no receptive field beyond a pixel."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 7, kernel_size=1)


def _local_model() -> nn.Module:
    """Two 3x3 convolutions: equivariant except within 2 pixels of a window's border (zero padding)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 7, 3, padding=1))


class _PooledContextModel(nn.Module):
    """A pixel's class from its colour plus the mean colour of the whole input, as DeepLabV3's
    image pooling adds a summary of the window: windows of one image disagree."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pixel, self.context = nn.Conv2d(3, 7, 1), nn.Conv2d(3, 7, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel(x) + self.context(x.mean((2, 3), keepdim=True))


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _single_pass(model: nn.Module, image: np.ndarray) -> torch.Tensor:
    x = normalize_image(torch.from_numpy(image).permute(2, 0, 1))[None]
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1)[0]


def test_window_starts_cover_the_edges() -> None:
    assert window_starts(100, 128, 32) == [0]
    assert window_starts(300, 128, 32) == [0, 86, 172]  # 3 windows, 42 px overlap on both seams
    assert window_starts(256, 128) == [0, 128]
    assert window_starts(256, 128, 1) == [0, 64, 128]
    with pytest.raises(ValueError, match="min_overlap"):
        window_starts(300, 128, 128)


@pytest.mark.parametrize("length", [129, 300, 511, 2448, 5000])
@pytest.mark.parametrize(("size", "min_overlap"), [(128, 0), (128, 32), (512, 26), (512, 128)])
def test_window_starts_are_the_fewest_that_keep_the_overlap(length: int, size: int, min_overlap: int) -> None:
    starts = window_starts(length, size, min_overlap)
    assert starts[0] == 0 and starts[-1] == max(0, length - size)
    gaps = np.diff(starts)
    assert (size - gaps >= min_overlap).all() and (len(gaps) == 0 or np.ptp(gaps) <= 1)  # evenly spread
    if len(starts) > 2:  # one window fewer would leave a seam narrower than min_overlap
        assert size - (length - size) / (len(starts) - 2) < min_overlap


def test_a_deepglobe_tile_takes_five_by_five_windows_by_default() -> None:
    tops, lefts = prediction_windows(2448, 2448, 512, DEFAULT_OVERLAP)
    assert tops == lefts == [0, 484, 968, 1452, 1936]  # 28 px overlap on every seam
    assert [len(s) for s in prediction_windows(2448, 2448, 512, 0.25)] == [7, 7]
    assert prediction_windows(300, 2448, 512) == ([0], [0, 484, 968, 1452, 1936])


def test_blend_window_is_smooth_and_positive() -> None:
    w = blend_window(64, 64, 16)
    assert w.min() > 0 and w[32, 32] == 1
    assert (w[0, 32] < w[8, 32] < w[15, 32] <= 1)


@pytest.mark.parametrize(("height", "width"), [(37, 53), (130, 61), (201, 199), (64, 64)])
def test_output_shape_for_odd_sizes(height: int, width: int) -> None:
    class_map, probs = predict_tiled(_local_model(), _image(height, width), tile_size=64, overlap=0.3,
                                     batch_size=3, return_probs=True)
    assert class_map.shape == (height, width) and class_map.dtype == np.uint8
    assert probs.shape == (7, height, width)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)


def test_one_tile_is_exactly_a_single_forward_pass() -> None:
    model = build_deeplabv3(backbone="mobilenet_v3_large").eval()
    image = _image(96, 80)
    class_map, probs = predict_tiled(model, image, tile_size=128, return_probs=True)
    expected = _single_pass(model, image)
    torch.testing.assert_close(torch.from_numpy(probs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(class_map, expected.argmax(0).numpy())


def test_no_seams_with_a_pointwise_model() -> None:
    """Blending normalises the weights, so an equivariant model's probabilities come out as
    without tiling, up to float32 rounding of the weighted average (~1e-6)."""
    model = _pointwise_model()
    image = _image(150, 170)
    _, probs = predict_tiled(model, image, tile_size=64, overlap=0.25, return_probs=True)
    torch.testing.assert_close(torch.from_numpy(probs), _single_pass(model, image), rtol=0, atol=1e-5)


def test_seams_stay_within_the_receptive_field_and_are_damped() -> None:
    """With zero padding a 3x3-3x3 model differs from the untiled pass only within 2 pixels of a
    window's border. Those pixels lie in the blend ramp, where the neighbouring window (seeing
    real context) carries most of the weight, so the error stays small and almost no pixel
    changes class."""
    model = _local_model()
    image = _image(160, 160, seed=1)
    class_map, probs = predict_tiled(model, image, tile_size=64, overlap=0.5, return_probs=True)
    reference = _single_pass(model, image)
    error = (torch.from_numpy(probs) - reference).abs().amax(0)
    interior = error[2:-2, 2:-2]
    assert float(error.max()) < 0.05
    assert float(interior.mean()) < 1e-3
    assert (class_map == reference.argmax(0).numpy()).mean() > 0.995


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="overlap"):
        predict_tiled(_pointwise_model(), _image(8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="uint8"):
        predict_tiled(_pointwise_model(), np.zeros((8, 8, 3), np.float32))


def test_evaluate_tiled_on_the_sample(sample_root: Path) -> None:
    pairs = find_pairs(sample_root)[:2]
    confusion = evaluate_tiled(_pointwise_model(), pairs, tile_size=64)
    assert confusion.matrix.sum() == 2 * 96 * 96


@pytest.mark.slow
def test_full_2448_tile(real_full: Path) -> None:
    image, truth = read_pair(*find_pairs(real_full)[0])
    torch.manual_seed(0)
    model = build_deeplabv3(backbone="mobilenet_v3_large")
    class_map = predict_tiled(model, image, tile_size=512, overlap=0.125)
    assert class_map.shape == truth.shape == (2448, 2448)
    assert class_map.max() < 7


def test_prediction_runs_in_the_device_format_and_leaves_the_model_as_it_was() -> None:
    from lc_utils.devices import inference_memory_format, memory_format

    assert inference_memory_format(torch.device("cpu")) == torch.channels_last
    assert inference_memory_format(torch.device("cuda")) == torch.channels_last
    assert inference_memory_format(torch.device("mps")) == torch.contiguous_format
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 7, 3, padding=1))  # contiguous, as built
    seen = []
    model.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].is_contiguous(memory_format=torch.channels_last),
                                          module[0].weight.is_contiguous(memory_format=torch.channels_last))))
    with memory_format(model, torch.channels_last):
        assert not model[0].weight.is_contiguous()
    assert model[0].weight.is_contiguous()
    predict_tiled(model, torch.randn(3, 40, 40), tile_size=32, device="cpu")
    assert seen and all(all(pair) for pair in seen)  # windows and weights channels-last on the CPU
    assert model[0].weight.is_contiguous()  # and the model's own format is back


def test_compare_tilings_measures_what_windows_change(sample_root: Path) -> None:
    pairs = find_pairs(sample_root)[:2]  # 96 x 96 images
    schema = load_schema(sample_root)
    tilings = [Tiling("quarters", 48, 0.0), Tiling("blended", 48, 0.5), Tiling("whole", None)]
    for model, windows_differ in ((_pointwise_model(), False), (_PooledContextModel(), True)):
        table, first = compare_tilings(model, pairs, schema, tilings)
        rows = table.set_index("tiling")
        assert rows.loc["quarters", "windows"] == 2 * 4 and rows.loc["whole", "windows"] == 2
        assert rows.loc["blended", "windows"] == 2 * 9
        assert rows.loc["whole", "agrees_with_whole"] == 1.0
        assert set(first) == {"quarters", "blended", "whole"} and first["whole"].shape == (96, 96)
        reference = evaluate_tiled(model, pairs, schema, tile_size=48, overlap=0.0).summary()["mean_iou"]
        assert rows.loc["quarters", "mean_iou"] == pytest.approx(reference)
        if windows_differ:  # each window's own summary moves its pixels' classes
            assert rows.loc["quarters", "agrees_with_whole"] < 0.99
        else:
            assert rows.loc["quarters", "agrees_with_whole"] > 0.999
    assert [tuple(w) for w in Tiling("x", 48, 0.0).windows(96, 100)] == [
        (0, 0, 48, 48), (0, 26, 48, 48), (0, 52, 48, 48), (48, 0, 48, 48), (48, 26, 48, 48), (48, 52, 48, 48)]


def test_seam_tilings_leave_out_windows_as_large_as_the_image() -> None:
    names = [t.name for t in seam_tilings(128, image_side=256)]
    assert names == ["128 px, no overlap", "128 px, overlap 0.5", "whole image"]
    assert [t.window for t in seam_tilings(512, image_side=2448)] == [512, 512, 1024, None]
