"""Click to annotate: a notebook widget that puts class points on images (anywidget).

It runs wherever anywidget runs (JupyterLab 4, Notebook 7, VS Code, Colab). The front end only
reports where a click landed on its canvas; the widget turns that into image pixels and calls the
:class:`~lc_utils.point_editor.PointEditor`, which saves every change at once. So the same
operations work from code (:meth:`PointAnnotator.click_display`, or the editor itself), and
where no front end draws widgets (``make course``, nbval) :func:`show` draws a static figure.

Keys on the widget: 1-9 pick a class, z (or Ctrl+Z) undoes, + and - zoom, the arrows pan, 0 fits
the whole image; dragging pans too. In live mode (``live=``, a :class:`~lc_utils.live_head.LiveHead`)
the prediction overlay follows the clicks: each click refits the model's last layer and redraws
(or, with automatic learning switched off, the l key does), and undo takes back what it learned.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anywidget
import numpy as np
import traitlets
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from .classes import ClassSchema
from .files import read_rgb
from .live_head import LiveHead, head_path, points_key
from .point_editor import AnnotationConflictError, PointEditor
from .sparse import PointAnnotation
from .viz_data import plot_points
from .widgets import interactive_frontend

HIT_RADIUS_PX = 7
"""How close to a point (in screen pixels) a click must land to relabel or remove it."""

_HERE = Path(__file__).parent
HEAT = colormaps["magma"]
"""The uncertainty overlay's colours: dark where the model is sure, bright where it is not."""

Suggest = Callable[[np.ndarray, PointAnnotation], tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]
"""(C, H, W) probabilities and the image's points -> the (H, W) uncertainty map and the pixels to
suggest (rows, cols): :func:`lc_utils.active_picks.suggest_points`."""


class PointAnnotator(anywidget.AnyWidget):
    """Click points of a class onto images; every change goes through ``editor`` and is saved.

    ``images`` maps each image id of the editor to its file (or an (H, W, 3) uint8 array). Large
    images (a 2448² DeepGlobe original) open whole, shrunk to ``display_size`` pixels; zoom in to
    click single pixels. ``predictions`` (image id -> class map) and ``uncertainty`` (image id ->
    (H, W) map from 0 to 1, :func:`lc_utils.active_picks.uncertainty`) can be drawn over the image (the
    ``overlay`` picker), and ``suggestions`` (image id -> [(row, col), ...]) mark pixels proposed
    for labelling: a click on one labels that pixel with the active class.

    ``live``: a :class:`~lc_utils.live_head.LiveHead` of a model; the prediction overlay is then
    its prediction, refitted after every click (``auto_learn``, a switch on the widget) or on
    the l key (:meth:`learn`), with ``suggest`` (see :data:`Suggest`) recomputing the uncertainty
    overlay and the suggestions each time. The head is saved beside the annotation file
    (:func:`lc_utils.live_head.head_path`) after each change and taken up again from there, with
    the features under its points: a learn needs the features of the images with new points
    only (computed on first need: seconds per original with MobileNetV3, a minute with
    ResNet-50 on a CPU).
    """

    _esm = _HERE / "annotate.js"
    _css = _HERE / "annotate.css"
    image_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    image_index = traitlets.Int(0).tag(sync=True)
    classes = traitlets.List(traitlets.Dict()).tag(sync=True)
    active_class = traitlets.Int(0).tag(sync=True)
    canvas_size = traitlets.List(traitlets.Int(), [512, 512]).tag(sync=True)
    view = traitlets.List(traitlets.Float(), [0.0, 0.0, 1.0, 1.0]).tag(sync=True)
    """The image region on the canvas: top, left, height, width in image pixels."""
    image_url = traitlets.Unicode("").tag(sync=True)
    overlays = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """What can be drawn over the image: "prediction", "uncertainty"."""
    overlay = traitlets.Unicode("none").tag(sync=True)
    overlay_url = traitlets.Unicode("").tag(sync=True)
    points = traitlets.List(traitlets.List()).tag(sync=True)
    suggestions = traitlets.List(traitlets.List()).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    live_mode = traitlets.Bool(False).tag(sync=True)
    auto_learn = traitlets.Bool(True).tag(sync=True)
    """In live mode: learn after every click (else on the l key)."""

    def __init__(self, editor: PointEditor, images: Mapping[str, str | Path | np.ndarray], *,
                 predictions: Mapping[str, np.ndarray] | None = None,
                 uncertainty: Mapping[str, np.ndarray] | None = None,
                 suggestions: Mapping[str, Sequence[tuple[int, int]]] | None = None,
                 display_size: int = 512, live: LiveHead | None = None, auto_learn: bool = True,
                 suggest: Suggest | None = None, **kwargs: object) -> None:
        missing = [i for i in editor.image_shapes if i not in images]
        if missing:
            raise ValueError(f"{len(missing)} image(s) of the editor have no image file, e.g. {missing[:3]}")
        schema: ClassSchema = editor.schema
        if live is not None and live.schema.names != schema.names:
            raise ValueError(f"the live head learns the classes {list(live.schema.names)} but the editor's "
                             f"are {list(schema.names)}: give both the same schema")
        if live is not None:
            kwargs.setdefault("overlay", "prediction")
        super().__init__(
            image_ids=list(editor.image_shapes), classes=[
                {"name": name, "color": "#{:02x}{:02x}{:02x}".format(*rgb)}
                for name, rgb in zip(schema.names, schema.palette)], live_mode=live is not None,
            auto_learn=auto_learn, **kwargs)
        self.editor = editor
        self.images = dict(images)
        self.predictions = dict(predictions or {})
        self.uncertainty = dict(uncertainty or {})
        self.suggested = _pixel_lists(suggestions)
        self.display_size = display_size
        self._image: np.ndarray | None = None
        self.live, self.suggest = live, suggest
        self.head_file = head_path(editor.path) if live is not None else None
        if live is not None and self.head_file.is_file():
            live.load(self.head_file)
        self.on_msg(self._on_message)
        self.observe(lambda _: self._open(), names="image_index")
        self.observe(lambda _: self._draw_view(), names="overlay")
        self._open()
        if live is not None and auto_learn and live.state.key != self._points_key():
            self.status = self.learn()  # points clicked before, or since the saved head

    @property
    def image_id(self) -> str:
        """The image on the canvas."""
        return self.image_ids[self.image_index]

    @property
    def scale(self) -> float:
        """Image pixels per screen pixel at the current zoom."""
        return self.view[2] / self.canvas_size[0]

    def to_pixel(self, x: float, y: float) -> tuple[int, int]:
        """The image pixel (row, col) under the canvas position (x, y)."""
        top, left, height, width = self.view
        row = int(np.floor(top + y * height / self.canvas_size[0]))
        col = int(np.floor(left + x * width / self.canvas_size[1]))
        rows, cols = self.editor.image_shapes[self.image_id]
        return min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)

    def click_display(self, x: float, y: float) -> str:
        """What a click on the canvas at (x, y) does, with the active class: on a point, what
        :meth:`PointEditor.click` does; on a suggestion, label that pixel; elsewhere add a point.
        Returns the action, or the error it met: then the status line says the click was not
        saved and why (a file changed meanwhile, a full disk, a drive gone), and the editor keeps
        nothing of it."""
        point = self._point_under(x, y)
        suggestion = None if point else self._near(x, y, self.suggested.get(self.image_id, []))
        row, col = point or suggestion or self.to_pixel(x, y)
        try:
            action = self.editor.click(self.image_id, row, col, self.active_class)
        except (AnnotationConflictError, ValueError, KeyError, OSError) as error:
            self.status = f"error: the click was NOT saved: {error}"
            return self.status
        if suggestion is not None:  # labelled now: no longer a suggestion
            self.suggested[self.image_id].remove(suggestion)
        self._show_points()
        self.status = (f"{action} {self.editor.schema.names[self.active_class]} at row {row}, col {col}; "
                       f"{self._counts()}")
        if self.live is not None and self.auto_learn:
            self.status += f"; {self.learn()}"
        return action

    def learn(self) -> str:
        """Refit the live head on every point now and redraw its prediction (after each click
        with ``auto_learn``; the l key); returns what it did: the points learned from, the
        milliseconds from the click to the new overlay."""
        if self.live is None:
            return "no live head: pass live=LiveHead(model) to learn from the clicks"
        started = time.perf_counter()
        learned = self.live.learn(self.editor.annotations, self.images)
        self._show_live()
        message = (f"learned from {learned.points} point{'s' * (learned.points != 1)} in "
                   f"{(time.perf_counter() - started) * 1000:.0f} ms")
        if learned.unfitted:
            message += f" ({learned.unfitted} still shown as another class: they contradict each other)"
        return message + self._save_head()

    def _points_key(self) -> tuple:
        return points_key(self.editor.annotations, self.editor.schema)

    def _show_live(self) -> None:
        """The live head's prediction (and suggestions) of the image on the canvas, redrawn."""
        self._live_prediction()
        self._draw_view()
        self._show_points()

    def _live_prediction(self) -> None:
        image_id = self.image_id
        if self.suggest is None:
            self.predictions[image_id] = self.live.predict(image_id, self._image)
        else:
            self.predictions[image_id], probs = self.live.predict(image_id, self._image, return_probs=True)
            self.uncertainty[image_id], picks = self.suggest(probs, self.editor.points(image_id))
            self.suggested[image_id] = list(zip(*(np.asarray(p).tolist() for p in picks)))

    def _save_head(self) -> str:
        try:
            self.live.save(self.head_file)
        except OSError as error:
            return f"; the head was NOT saved: {error}"
        return ""

    def _counts(self) -> str:
        here = len(self.editor.points(self.image_id))
        total = sum(len(a) for a in self.editor.annotations.values())
        return (f"{here} point{'s' * (here != 1)} on this image, {total} in all, "
                f"saved to {self.editor.path.name}")

    def _point_under(self, x: float, y: float) -> tuple[int, int] | None:
        """The point drawn nearest (x, y) on the canvas, if within :data:`HIT_RADIUS_PX`."""
        points = self.editor.points(self.image_id)
        return self._near(x, y, list(zip(points.rows.tolist(), points.cols.tolist())))

    def _near(self, x: float, y: float, pixels: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
        """The pixel of ``pixels`` drawn nearest (x, y) on the canvas, if within :data:`HIT_RADIUS_PX`."""
        if not pixels:
            return None
        rows, cols = (np.array(v, dtype=np.float64) for v in zip(*pixels))
        top, left, _, _ = self.view
        distance = np.hypot((cols + 0.5 - left) / self.scale - x, (rows + 0.5 - top) / self.scale - y)
        nearest = int(np.argmin(distance))
        return tuple(map(int, pixels[nearest])) if distance[nearest] <= HIT_RADIUS_PX else None

    def undo(self) -> bool:
        """Take back the last change (where it cannot be saved, the status line says so and the
        change stays)."""
        try:
            undone = self.editor.undo()
        except (AnnotationConflictError, OSError) as error:
            self.status = f"error: the undo was NOT saved: {error}"
            return False
        self._show_points()
        self.status = f"undone; {self._counts()}" if undone else "nothing to undo"
        if undone and self.live is not None:
            self.status += f"; {self._unlearn()}"
        return undone

    def _unlearn(self) -> str:
        """After an undo: the head from before the undone click where the last learn was that
        click's (restored exactly), else a new fit (with ``auto_learn``)."""
        history = self.live.history
        if history and history[-1].key == self._points_key():
            self.live.undo()
            self._show_live()
            return f"the head is back to {self.live.state.points} points" + self._save_head()
        return self.learn() if self.auto_learn else "press l to learn from the points as they are"

    def zoom(self, factor: float, x: float | None = None, y: float | None = None) -> None:
        """Zoom by ``factor`` around the canvas position (x, y) (its centre by default)."""
        height, width = self.canvas_size
        x = width / 2 if x is None else x
        y = height / 2 if y is None else y
        top, left, view_h, view_w = self.view
        rows, cols = self.editor.image_shapes[self.image_id]
        fit = max(rows / height, cols / width)  # image pixels per screen pixel when whole
        new_scale = min(max(self.scale / factor, 1 / 16), fit)
        anchor_row, anchor_col = top + y * view_h / height, left + x * view_w / width
        self._set_view(anchor_row - y * new_scale, anchor_col - x * new_scale, new_scale)

    def pan(self, dx: float, dy: float) -> None:
        """Move the view by (dx, dy) screen pixels."""
        top, left, _, _ = self.view
        self._set_view(top + dy * self.scale, left + dx * self.scale, self.scale)

    def zoom_to_fit(self) -> None:
        """Show the whole image."""
        rows, cols = self.editor.image_shapes[self.image_id]
        self._set_view(0, 0, max(rows / self.canvas_size[0], cols / self.canvas_size[1]))

    def _on_message(self, _: object, content: dict, buffers: object) -> None:
        kind = content.get("type")
        if kind == "click":
            self.click_display(float(content["x"]), float(content["y"]))
        elif kind == "undo":
            self.undo()
        elif kind == "zoom":
            self.zoom(float(content["factor"]), content.get("x"), content.get("y"))
        elif kind == "pan":
            self.pan(float(content["dx"]), float(content["dy"]))
        elif kind == "fit":
            self.zoom_to_fit()
        elif kind == "learn":
            self.status = self.learn()

    def _open(self) -> None:
        source = self.images[self.image_id]
        self._image = source if isinstance(source, np.ndarray) else read_rgb(source, what="image")
        rows, cols = self._image.shape[:2]
        expected_rows, expected_cols = self.editor.image_shapes[self.image_id]
        if (rows, cols) != (expected_rows, expected_cols):
            raise ValueError(f"image {self.image_id!r} is {cols}x{rows} but the editor has it as "
                             f"{expected_cols}x{expected_rows}")
        fit = max(rows, cols) / self.display_size
        self.canvas_size = [max(1, round(rows / fit)), max(1, round(cols / fit))]
        if self.live is not None:
            started = time.perf_counter()
            self._live_prediction()
            self.status = (f"{self.image_id}: the live head's prediction ({self.live.state.points} points) "
                           f"in {time.perf_counter() - started:.1f} s")
        self.zoom_to_fit()
        self._show_points()

    def _set_view(self, top: float, left: float, scale: float) -> None:
        rows, cols = self.editor.image_shapes[self.image_id]
        view_h, view_w = self.canvas_size[0] * scale, self.canvas_size[1] * scale
        top = min(max(top, 0.0), max(rows - view_h, 0.0))
        left = min(max(left, 0.0), max(cols - view_w, 0.0))
        self.view = [float(top), float(left), float(view_h), float(view_w)]
        self._draw_view()

    def _draw_view(self) -> None:
        self.image_url = _data_url(self._crop(self._image), "JPEG")
        layers = {"prediction": self.predictions.get(self.image_id),
                  "uncertainty": self.uncertainty.get(self.image_id)}
        self.overlays = [name for name, layer in layers.items() if layer is not None]
        layer = layers.get(self.overlay)
        if layer is None:
            self.overlay_url = ""
        elif self.overlay == "prediction":
            colours = np.asarray(self.editor.schema.palette, np.uint8)
            self.overlay_url = _data_url(self._crop(colours[layer]), "PNG")
        else:  # sure pixels stay dark, unsure ones glow
            self.overlay_url = _data_url(self._crop(HEAT(np.clip(layer, 0, 1), bytes=True)[..., :3]), "PNG")

    def show_model(self, predictions: Mapping[str, np.ndarray] | None = None,
                   uncertainty: Mapping[str, np.ndarray] | None = None,
                   suggestions: Mapping[str, Sequence[tuple[int, int]]] | None = None) -> None:
        """Give the widget a model's predictions, uncertainty maps or suggested points (each
        image id -> its map or its [(row, col), ...]), and redraw."""
        self.predictions.update(predictions or {})
        self.uncertainty.update(uncertainty or {})
        self.suggested.update(_pixel_lists(suggestions))
        self._draw_view()
        self._show_points()

    def _crop(self, array: np.ndarray) -> Image.Image:
        top, left, view_h, view_w = self.view
        box = (int(np.floor(left)), int(np.floor(top)),
               int(np.ceil(left + view_w)), int(np.ceil(top + view_h)))
        cropped = Image.fromarray(array[box[1]:box[3], box[0]:box[2]])
        # the crop starts on a whole pixel: shift it by the view's fraction so clicks land true
        height, width = self.canvas_size
        sub = (left - box[0], top - box[1], min(left - box[0] + view_w, cropped.width),
               min(top - box[1] + view_h, cropped.height))
        resample = Image.Resampling.NEAREST if self.scale < 1 else Image.Resampling.BOX
        return cropped.resize((width, height), resample, box=sub)

    def _show_points(self) -> None:
        points = self.editor.points(self.image_id)
        self.points = [[int(r), int(c), int(k)] for r, c, k in zip(points.rows, points.cols, points.labels)]
        self.suggestions = [[int(r), int(c)] for r, c in self.suggested.get(self.image_id, [])]


def _pixel_lists(pixels: Mapping[str, Sequence[tuple[int, int]]] | None) -> dict[str, list[tuple[int, int]]]:
    return {image_id: [(int(r), int(c)) for r, c in picks] for image_id, picks in (pixels or {}).items()}


def _data_url(image: Image.Image, kind: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **({"quality": 90} if kind == "JPEG" else {}))
    mime = "image/jpeg" if kind == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def show(annotator: PointAnnotator, fallback: Figure | None = None) -> PointAnnotator | Figure:
    """The widget where a front end draws it; elsewhere (``LC_HEADLESS=1``, nbval, a script)
    ``fallback``, or a static figure of the current image's points, so an executed notebook still
    shows them."""
    if interactive_frontend():
        return annotator
    if fallback is not None:
        return fallback
    image_id = annotator.image_id
    return plot_points(annotator._image, annotator.editor.points(image_id), annotator.editor.schema,
                       title=f"{image_id}: {len(annotator.editor.points(image_id))} points")
