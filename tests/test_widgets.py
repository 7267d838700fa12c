import base64
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from lc_utils import widgets
from lc_utils.layouts import find_pairs
from lc_utils.widgets import density_steps, interactive_frontend, label_density_explorer, prediction_browser


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
    assert len(fig.axes) == 6 and "pixel accuracy" in fig._suptitle.get_text()


def test_density_steps_are_logarithmic() -> None:
    assert density_steps(10_000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000]
    assert density_steps(300, include=98) == [1, 2, 5, 10, 20, 50, 98, 100, 200]


@pytest.mark.filterwarnings("ignore:Widget.widgets is deprecated")
def test_live_explorer_redraws_and_leaves_a_static_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live path, without a browser: controls drive the figure, and the cell's output holds a
    PNG of the starting figure beside the widget view (what an HTML export shows)."""
    import ipywidgets

    monkeypatch.setattr(widgets, "interactive_frontend", lambda: True)
    shown, bundles, calls = [], [], []
    monkeypatch.setattr(widgets, "_display", shown.append)
    updates = []

    class Handle:
        def update(self, bundle: dict, raw: bool) -> None:
            updates.append(bundle)

    def display_bundle(bundle: dict, display_id: bool = False) -> Handle:
        bundles.append(bundle)
        return Handle()

    monkeypatch.setattr(widgets, "_display_bundle", display_bundle)

    def render(n: int) -> Figure:
        calls.append(n)
        fig = Figure()
        fig.subplots().set_title(f"{n} points")
        return fig

    slider = ipywidgets.SelectionSlider(options=[1, 2, 5], value=2)
    assert widgets.explore(render, lambda: {"n": slider}, {"n": 2}, describe=lambda n: f"{n} chosen") is None
    bundle, standalone = bundles
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert standalone["image/png"] == bundle["image/png"] and not updates
    assert calls == [2] and shown[-1].axes[0].get_title() == "2 points"  # rendered once at the start
    slider.value = 5
    assert calls == [2, 5] and shown[-1].axes[0].get_title() == "5 points"
    view_id = bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
    view = ipywidgets.Widget.widgets[view_id]
    caption = view.children[0].children[-1]
    assert caption.value == "5 chosen"
    assert view.children[0].layout.flex_flow == "row wrap"  # controls wrap instead of squeezing
    view._view_count = 1  # a front end drew the widget: the stand-alone copy goes
    assert updates == [{"text/plain": ""}]
