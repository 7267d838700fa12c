from pathlib import Path

import pytest
import torch

from lc_utils.datasets import find_pairs
from lc_utils.widgets import interactive_frontend, label_density_explorer, prediction_browser


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_HEADLESS", "1")


def test_no_front_end_outside_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not interactive_frontend()
    monkeypatch.delenv("LC_HEADLESS")
    assert not interactive_frontend()  # pytest is no Jupyter kernel


def test_label_density_explorer_falls_back_to_a_figure(sample_root: Path) -> None:
    fig = label_density_explorer(find_pairs(sample_root)[:2], n_points=50, strategy="stratified")
    points_axis, bars_axis = fig.axes[:2]
    assert len(points_axis.collections[0].get_offsets()) == 50
    assert "50 points" in points_axis.get_title()
    assert len(bars_axis.patches) == 14  # 7 classes x (pixels, points)


def test_prediction_browser_falls_back_to_a_figure(sample_root: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 7, 1)
    fig = prediction_browser(model, find_pairs(sample_root)[:2], tile_size=64)
    assert len(fig.axes) == 5 and "pixel accuracy" in fig._suptitle.get_text()
