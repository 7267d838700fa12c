"""Interactive explorers for the notebooks, each with a static fallback.

Where no browser front end will draw a widget (``make test``, ``make course``, a plain Python
session; they set ``LC_HEADLESS=1``) or ipywidgets is missing, an explorer shows one static figure
for its starting values instead, so executed notebooks and their HTML still show something.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .datasets import read_pair
from .files import image_id_of
from .inference import predict_tiled
from .sparse import STRATEGIES, annotatable, sample_points
from .viz import compare_prediction, plot_annotation_summary


def interactive_frontend() -> bool:
    """True inside a Jupyter kernel with ipywidgets, unless ``LC_HEADLESS`` is set."""
    if os.environ.get("LC_HEADLESS", "").strip().lower() in {"1", "true", "yes", "on"}:
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


def explore(render: Callable[..., Figure], make_controls: Callable[[], dict[str, Any]],
            start: dict[str, Any]) -> Figure | None:
    """Redraw ``render(**values)`` whenever a control changes; statically when headless.

    ``make_controls()`` returns ipywidgets keyed by ``render``'s argument names; it is only called
    where a front end will draw them. ``start`` holds the starting values. Headless, returns the
    static figure (a notebook shows it).
    """
    if not interactive_frontend():
        return render(**start)
    import ipywidgets as widgets

    made = make_controls()
    output = widgets.Output()

    def update(_change: object = None) -> None:
        with output:
            output.clear_output(wait=True)
            _display(render(**{name: w.value for name, w in made.items()}))

    for control in made.values():
        control.observe(update, names="value")
    update()
    _display(widgets.VBox([widgets.HBox(list(made.values())), output]))
    return None


def _image_dropdown(ids: Sequence[str]) -> Any:
    import ipywidgets as widgets

    return widgets.Dropdown(options=[(image_id, k) for k, image_id in enumerate(ids)], value=0,
                            description="image")


def label_density_explorer(pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                           n_points: int = 100, strategy: str = "uniform", seed: int = 0,
                           max_points: int = 10_000) -> Figure | None:
    """Slider for points per image (log scale), dropdowns for strategy and image: redraws the
    points over the image and the labelled share per class."""
    ids = [image_id_of(image) for image, _ in pairs]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def render(n_points: int, strategy: str, image_index: int) -> Figure:
        if image_index not in cache:
            cache[image_index] = read_pair(*pairs[image_index], schema)
        image, class_map = cache[image_index]
        eligible = annotatable(class_map, schema)
        n = min(int(n_points), int((eligible != IGNORE_INDEX).sum()))
        points = sample_points(eligible, n_points=n, strategy=strategy, seed=seed)
        return plot_annotation_summary(image, class_map, points, schema,
                                       title=f"image {ids[image_index]}: {strategy}")

    def controls() -> dict[str, Any]:
        import ipywidgets as widgets

        return {
            "n_points": widgets.IntSlider(value=n_points, min=1, max=max_points, step=1,
                                          description="points", continuous_update=False),
            "strategy": widgets.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy"),
            "image_index": _image_dropdown(ids),
        }

    return explore(render, controls, {"n_points": n_points, "strategy": strategy, "image_index": 0})


def prediction_browser(model, pairs: Sequence[tuple[Path, Path]], schema: ClassSchema = DEEPGLOBE,
                       **predict_kwargs: Any) -> Figure | None:
    """Dropdown over held-out images: image, truth, prediction, overlay and error map."""
    ids = [image_id_of(image) for image, _ in pairs]

    def render(image_index: int) -> Figure:
        image, truth = read_pair(*pairs[image_index], schema)
        prediction = predict_tiled(model, image, **predict_kwargs)
        accuracy = float((prediction == truth).mean())
        return compare_prediction(image, truth, prediction, schema,
                                  title=f"image {ids[image_index]}: pixel accuracy {accuracy:.1%}")

    return explore(render, lambda: {"image_index": _image_dropdown(ids)}, {"image_index": 0})
