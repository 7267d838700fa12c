"""Interactive explorers for the notebooks, each with a static fallback.

Where no browser front end will draw a widget (``make test``, ``make course``, a plain Python
session; they set ``LC_HEADLESS=1``) or ipywidgets is missing, an explorer shows one static figure
for its starting values instead, so executed notebooks and their HTML still show something.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .datasets import read_pair
from .files import as_pairs
from .inference import predict_tiled
from .settings import env_flag
from .sparse import STRATEGIES, annotatable, sample_points
from .viz_data import plot_annotation_summary
from .viz_results import compare_prediction


def interactive_frontend() -> bool:
    """True inside a Jupyter kernel with ipywidgets, unless ``LC_HEADLESS`` is set."""
    if env_flag("LC_HEADLESS"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _display_bundle(bundle: dict[str, Any], display_id: bool = False) -> Any:
    from IPython.display import display

    return display(bundle, raw=True, display_id=display_id)


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes, at the resolution notebooks show inline figures."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def explore(render: Callable[..., Figure], make_controls: Callable[[], dict[str, Any]],
            start: dict[str, Any], describe: Callable[..., str] | None = None) -> Figure | None:
    """Redraw ``render(**values)`` whenever a control changes; statically when headless.

    ``make_controls()`` returns ipywidgets keyed by ``render``'s argument names; it is only called
    where a front end will draw them, and the controls wrap onto further rows on a narrow screen
    rather than squeezing each other. ``describe(**values)``, when given, is a line of text shown
    beside the controls (e.g. the labelled fraction a slider position means). ``start`` holds the
    starting values. Headless, returns the static figure (a notebook shows it). Live, the cell's
    output carries the starting figure as a PNG beside the widget: JupyterLab shows the widget,
    while an HTML export or a viewer without the widget's state (GitHub) shows the figure; and a
    second, stand-alone copy of the figure stays wherever no front end draws the widget.
    """
    if not interactive_frontend():
        return render(**start)
    import ipywidgets as widgets

    made = make_controls()
    output = widgets.Output()
    caption = widgets.HTML()

    def update(_change: object = None, figure: Figure | None = None) -> None:
        values = {name: w.value for name, w in made.items()}
        if describe is not None:
            caption.value = describe(**values)
        with output:
            output.clear_output(wait=True)
            _display(figure if figure is not None else render(**values))

    for control in made.values():
        control.observe(update, names="value")
    first = render(**{name: w.value for name, w in made.items()})
    update(figure=first)
    controls = widgets.Box([*made.values(), caption],
                           layout=widgets.Layout(display="flex", flex_flow="row wrap", align_items="center"))
    view = widgets.VBox([controls, output])
    view._view_count = 0  # the front end counts the views it draws: see below
    png = base64.b64encode(figure_png(first)).decode("ascii")
    if hasattr(view, "_repr_mimebundle_"):
        _display_bundle({**view._repr_mimebundle_(), "image/png": png})
    else:  # ipywidgets 7 (Colab's) displays itself; the stand-alone copy below carries the figure
        _display(view)
    # An executed copy that kept the widget's state (``jupyter nbconvert --execute``) shows the
    # widget in its HTML, which needs scripts from the web; there the figure also stands on its
    # own. A front end that draws the widget reports a view, and that copy is emptied.
    standalone = _display_bundle({"image/png": png, "text/plain": "(the figure above, without widgets)"},
                                 display_id=True)

    def drawn(change: dict[str, Any]) -> None:
        if change["new"]:
            standalone.update({"text/plain": ""}, raw=True)
            view.unobserve(drawn, names="_view_count")

    view.observe(drawn, names="_view_count")
    return None


def _image_dropdown(ids: Sequence[str]) -> Any:
    import ipywidgets as widgets

    return widgets.Dropdown(options=[(image_id, k) for k, image_id in enumerate(ids)], value=0,
                            description="image", layout=widgets.Layout(width="220px"))


def density_steps(largest: int, include: int | None = None) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``largest`` (and ``include``, if it is not a step): the
    positions of a logarithmic slider, where 1 to 10 points get as much room as 1,000 to 10,000."""
    steps = sorted({m * 10**e for e in range(len(str(largest))) for m in (1, 2, 5) if m * 10**e <= largest})
    if include is not None and include not in steps:
        steps = sorted([*steps, include])
    return steps


def label_density_explorer(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                           n_points: int = 100, strategy: str = "uniform", seed: int = 0,
                           max_points: int = 10_000) -> Figure | None:
    """Slider for points per image (log scale), dropdowns for strategy and image: redraws the
    points over the image and the labelled share per class; beside the slider, the share of the
    pixels and the points per megapixel that the chosen number means for that image."""
    pairs = as_pairs(pairs)
    ids = [pair.image_id for pair in pairs]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def read(image_index: int) -> tuple[np.ndarray, np.ndarray]:
        if image_index not in cache:
            cache[image_index] = read_pair(*pairs[image_index], schema)
        return cache[image_index]

    def render(n_points: int, strategy: str, image_index: int) -> Figure:
        image, class_map = read(image_index)
        eligible = annotatable(class_map, schema)
        n = min(int(n_points), int((eligible != IGNORE_INDEX).sum()))
        points = sample_points(eligible, n_points=n, strategy=strategy, seed=seed)
        return plot_annotation_summary(image, class_map, points, schema,
                                       title=f"image {ids[image_index]}: {strategy}")

    def describe(n_points: int, strategy: str, image_index: int) -> str:
        size = read(image_index)[1].size
        unit = "point" if n_points == 1 else "points"
        return (f"<b>{n_points:,}</b> {unit} = {n_points / size:.3%} of the pixels, "
                f"{n_points / size * 1e6:,.0f} per megapixel")

    def controls() -> dict[str, Any]:
        import ipywidgets as widgets

        return {
            "n_points": widgets.SelectionSlider(
                options=[(f"{n:,}", n) for n in density_steps(max_points, n_points)], value=n_points,
                description="points", continuous_update=False,
                layout=widgets.Layout(width="440px", min_width="360px")),
            "strategy": widgets.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy",
                                         layout=widgets.Layout(width="220px")),
            "image_index": _image_dropdown(ids),
        }

    return explore(render, controls, {"n_points": n_points, "strategy": strategy, "image_index": 0},
                   describe=describe)


def prediction_browser(model, pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                       **predict_kwargs: Any) -> Figure | None:
    """Dropdown over held-out images: image, truth, prediction, overlay and error map."""
    pairs = as_pairs(pairs)
    ids = [pair.image_id for pair in pairs]

    def render(image_index: int) -> Figure:
        image, truth = read_pair(*pairs[image_index], schema)
        prediction = predict_tiled(model, image, **predict_kwargs)
        accuracy = float((prediction == truth).mean())
        return compare_prediction(image, truth, prediction, schema,
                                  title=f"image {ids[image_index]}: pixel accuracy {accuracy:.1%}")

    return explore(render, lambda: {"image_index": _image_dropdown(ids)}, {"image_index": 0})
