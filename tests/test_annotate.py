"""The click-to-annotate widget from Python: canvas positions to pixels, zoom and pan, the view it
draws, and the same edits the front end asks for (the browser test clicks it for real)."""

from __future__ import annotations

import base64
import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from lc_utils import annotate
from lc_utils.annotate import HIT_RADIUS_PX, PointAnnotator
from lc_utils.point_editor import PointEditor
from lc_utils.point_files import load_annotations


def _decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _widget(tmp_path: Path, shape: tuple[int, int] = (256, 256), **kwargs) -> PointAnnotator:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (*shape, 3), dtype=np.uint8)
    image[100, 150] = (255, 255, 255)  # one white pixel to find in the drawn view
    editor = PointEditor(tmp_path / "clicks.csv", {"tile": shape, "other": (64, 96)})
    return PointAnnotator(editor, {"tile": image, "other": np.zeros((64, 96, 3), np.uint8)}, **kwargs)


def test_a_click_on_the_canvas_lands_on_the_pixel_under_it_at_any_zoom(tmp_path: Path) -> None:
    widget = _widget(tmp_path)
    assert widget.canvas_size == [512, 512] and widget.scale == 0.5  # a 256² image drawn at 2x
    widget.active_class = 3
    assert widget.click_display(301.2, 201.9) == "added"
    assert widget.points == [[100, 150, 3]]
    saved = load_annotations(tmp_path / "clicks.csv")["tile"]
    assert (saved.rows[0], saved.cols[0], saved.labels[0], saved.sources[0]) == (100, 150, 3, "person")
    widget.zoom(4, x=301, y=201)  # around the point: it stays under the cursor
    assert widget.scale == pytest.approx(0.125)
    assert widget.to_pixel(301, 201) == (100, 150)
    # the view drawn is the image region it says: the white pixel sits where the point is drawn
    drawn = _decode(widget.image_url)
    top, left, _, _ = widget.view
    y, x = (100.5 - top) / widget.scale, (150.5 - left) / widget.scale
    assert drawn[int(y), int(x)].min() > 200
    # a click within the hit radius on screen removes the point (same class), then undo restores it
    assert widget.click_display(x + HIT_RADIUS_PX - 1, y) == "removed" and widget.points == []
    assert widget.undo() and widget.points == [[100, 150, 3]]
    widget.active_class = 4
    assert widget.click_display(x, y + 2) == "relabelled" and widget.points == [[100, 150, 4]]


def test_zoom_and_pan_keep_the_view_inside_the_image(tmp_path: Path) -> None:
    widget = _widget(tmp_path, shape=(2448, 2448))
    assert widget.canvas_size == [512, 512] and widget.scale == pytest.approx(2448 / 512)
    widget.zoom(0.5)  # no further out than the whole image
    assert widget.view == pytest.approx([0, 0, 2448, 2448])
    widget.zoom(8, x=0, y=0)
    assert widget.view[:2] == [0, 0] and widget.view[2] == pytest.approx(2448 / 8)
    widget.pan(-100, -100)
    assert widget.view[:2] == [0, 0]
    widget.pan(10_000, 10_000)
    top, left, height, width = widget.view
    assert top + height == pytest.approx(2448) and left + width == pytest.approx(2448)
    assert widget.to_pixel(511.9, 511.9) == (2447, 2447)
    widget.zoom_to_fit()
    assert widget.view == pytest.approx([0, 0, 2448, 2448])


def test_another_image_overlays_and_a_click_on_a_suggestion_labels_it(tmp_path: Path) -> None:
    prediction = np.full((64, 96), 4, np.uint8)
    unsure = np.zeros((64, 96), np.float32)
    unsure[:, 48:] = 1.0
    widget = _widget(tmp_path, predictions={"other": prediction}, suggestions={"other": [(5, 6), (40, 80)]})
    assert widget.overlays == [] and widget.overlay_url == ""  # nothing to draw over the first image
    widget.image_index = 1
    assert widget.image_id == "other" and widget.canvas_size == [341, 512]
    assert widget.overlays == ["prediction"] and widget.suggestions == [[5, 6], [40, 80]]
    widget.overlay = "prediction"
    assert _decode(widget.overlay_url)[100, 100].tolist() == list(widget.editor.schema.palette[4])
    widget.show_model(uncertainty={"other": unsure})
    widget.overlay = "uncertainty"
    heat = _decode(widget.overlay_url).astype(int)
    assert widget.overlays == ["prediction", "uncertainty"]
    assert heat[100, 400].sum() > heat[100, 100].sum() + 300  # unsure on the right: bright
    widget.active_class = 2
    x, y = (6.5 / widget.scale) + 3, (5.5 / widget.scale) - 2  # beside the suggestion, within reach
    assert widget.click_display(x, y) == "added"
    assert widget.points == [[5, 6, 2]] and widget.suggestions == [[40, 80]]
    assert set(widget.editor.annotations) == {"other"}


def test_errors_reach_the_status_line_and_the_headless_fallback_is_a_figure(tmp_path: Path) -> None:
    widget = _widget(tmp_path)
    widget.click_display(10, 10)
    (tmp_path / "clicks.csv").write_text("image_id,row,col,label\n")
    assert widget.click_display(50, 50).startswith("error: ") and "changed on disk" in widget.status
    assert isinstance(annotate.show(widget), Figure)
    drawn_instead = Figure()  # a notebook's own figure of the same thing (notebook 09's suggestions)
    assert annotate.show(widget, fallback=drawn_instead) is drawn_instead
    with pytest.raises(ValueError, match="have no image file"):
        PointAnnotator(widget.editor, {"tile": np.zeros((256, 256, 3), np.uint8)})


def test_a_click_that_cannot_be_saved_says_so_and_is_not_kept(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    widget = _widget(tmp_path)
    widget.active_class = 3
    widget._on_message(None, {"type": "click", "x": 301.2, "y": 201.9}, None)
    path = tmp_path / "clicks.csv"
    before = path.read_bytes()

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the last step of every save
    widget._on_message(None, {"type": "click", "x": 10, "y": 10}, None)
    assert "NOT saved" in widget.status and "No space left on device" in widget.status
    assert widget.points == [[100, 150, 3]] and len(widget.editor.points("tile")) == 1
    widget._on_message(None, {"type": "undo"}, None)
    assert "NOT saved" in widget.status and widget.points == [[100, 150, 3]]
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["clicks.csv"]
    widget._on_message(None, {"type": "click", "x": 10, "y": 10}, None)
    assert widget.status.startswith("added") and len(load_annotations(path)["tile"]) == 2
