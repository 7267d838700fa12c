"""Points a person clicks: add, relabel, remove and undo, each change saved to the annotation file
at once.

The file is the course's annotation format (:func:`lc_utils.sparse.save_annotations`), so every
notebook and the training command read clicked points as they read sampled ones. Clicked points
say so (``source="person"``) and the round that added them. A file changed on disk meanwhile (by
hand, or by a second editor) is never overwritten: the change is refused until :meth:`reload`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .classes import DEEPGLOBE, ClassSchema
from .masks import read_mask
from .sparse import (
    PointAnnotation,
    annotatable,
    image_seed,
    load_annotations,
    read_annotation_info,
    sample_points,
    save_annotations,
)

PERSON = "person"
"""The source of a point a person placed or relabelled."""
SIMULATED = "simulated click"
"""The source of a click drawn from a mask (:func:`simulate_clicks`)."""

Action = Literal["added", "relabelled", "removed"]
LabelRecord = tuple[int, str, int]
"""What the editor keeps per pixel: label, source, round."""


class AnnotationConflictError(RuntimeError):
    """The annotation file changed on disk since the editor last read or wrote it."""


@dataclass(frozen=True)
class _Change:
    image_id: str
    pixel: tuple[int, int]
    before: LabelRecord | None
    after: LabelRecord | None


class PointEditor:
    """An annotation file open for editing: the points of every image in ``image_shapes``
    (image id -> (height, width)), read from ``path`` when it exists.

    ``source`` and ``labelling_round`` are recorded with every point this editor adds or
    relabels. Every change is written at once (atomically); :meth:`undo` takes back the last one.
    """

    def __init__(self, path: str | Path, image_shapes: Mapping[str, tuple[int, int]],
                 schema: ClassSchema = DEEPGLOBE, *, source: str = PERSON, labelling_round: int = 0) -> None:
        if not image_shapes:
            raise ValueError("no images to annotate: image_shapes is empty")
        self.path = Path(path)
        self.image_shapes = {image_id: (int(h), int(w)) for image_id, (h, w) in image_shapes.items()}
        self.schema = schema
        self.source = source
        self.labelling_round = labelling_round
        self.reload()

    def reload(self) -> None:
        """Read the file as it is on disk now (nothing where there is no file yet); the undo
        history starts again."""
        self._points: dict[str, dict[tuple[int, int], LabelRecord]] = {i: {} for i in self.image_shapes}
        self._info: dict[str, object] = {"source": "points placed with lc_utils.point_editor"}
        self._history: list[list[_Change]] = []
        if self.path.is_file():
            for image_id, annotation in load_annotations(self.path, self.schema, self.image_shapes).items():
                sources = annotation.sources if annotation.sources is not None else [""] * len(annotation)
                rounds = annotation.rounds if annotation.rounds is not None else [0] * len(annotation)
                self._points[image_id] = {
                    (int(r), int(c)): (int(label), str(source), int(k))
                    for r, c, label, source, k in zip(annotation.rows, annotation.cols, annotation.labels,
                                                      sources, rounds)}
            self._info = read_annotation_info(self.path) or self._info
        self._signature = _signature(self.path)

    @property
    def annotations(self) -> dict[str, PointAnnotation]:
        """Every image's points (images without points left out), with their provenance."""
        return {image_id: self.points(image_id) for image_id, points in self._points.items() if points}

    def points(self, image_id: str) -> PointAnnotation:
        """The points of one image."""
        points = self._image(image_id)
        pixels = list(points)
        return PointAnnotation([p[0] for p in pixels], [p[1] for p in pixels],
                               [points[p][0] for p in pixels], sources=[points[p][1] for p in pixels],
                               rounds=[points[p][2] for p in pixels])

    def point_near(self, image_id: str, row: int, col: int, radius: float = 0.0) -> tuple[int, int] | None:
        """The pixel of the point nearest (row, col) within ``radius`` pixels, or None."""
        points = self._image(image_id)
        if (row, col) in points:
            return row, col
        if radius <= 0 or not points:
            return None
        pixels = np.array(list(points))
        distance = np.hypot(pixels[:, 0] - row, pixels[:, 1] - col)
        nearest = int(np.argmin(distance))
        return (int(pixels[nearest, 0]), int(pixels[nearest, 1])) if distance[nearest] <= radius else None

    def click(self, image_id: str, row: int, col: int, label: int, radius: float = 0.0) -> Action:
        """What a click with class ``label`` does: on a point (within ``radius`` pixels) of the
        same class it removes the point, on one of another class it relabels it; elsewhere it adds
        a point."""
        near = self.point_near(image_id, row, col, radius)
        if near is None:
            self.add(image_id, row, col, label)
            return "added"
        if self._image(image_id)[near][0] == label:
            self.remove(image_id, *near)
            return "removed"
        self.relabel(image_id, *near, label)
        return "relabelled"

    def add(self, image_id: str, row: int, col: int, label: int) -> None:
        """A new point of class ``label`` (a point already on that pixel takes the label)."""
        self.add_many(image_id, [row], [col], [label])

    def add_many(self, image_id: str, rows: Sequence[int], cols: Sequence[int], labels: Sequence[int]
                 ) -> None:
        """Several new points on one image in one change: one save, one undo."""
        points = self._image(image_id)
        for row, col in zip(rows, cols):
            self._check_pixel(image_id, int(row), int(col))
        self._apply([_Change(image_id, (int(r), int(c)), points.get((int(r), int(c))), self._new(int(k)))
                     for r, c, k in zip(rows, cols, labels)])

    def relabel(self, image_id: str, row: int, col: int, label: int) -> None:
        """Give the point on (row, col) the class ``label``."""
        before = self._existing(image_id, row, col)
        self._apply([_Change(image_id, (row, col), before, self._new(label))])

    def remove(self, image_id: str, row: int, col: int) -> None:
        """Take away the point on (row, col)."""
        self._apply([_Change(image_id, (row, col), self._existing(image_id, row, col), None)])

    def undo(self) -> bool:
        """Take back the last change (saved at once); False when there is nothing to undo."""
        if not self._history:
            return False
        changes = self._history[-1]
        self._apply([_Change(c.image_id, c.pixel, c.after, c.before) for c in reversed(changes)],
                    record=False)
        self._history.pop()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    @property
    def version(self) -> str | None:
        """A digest of the file as last read or written (None before there is one): name a run
        after it, and new clicks make a new run instead of resuming one trained on the old."""
        return self._signature

    def _new(self, label: int) -> LabelRecord:
        if not 0 <= label < self.schema.num_classes:
            raise ValueError(f"label {label} is not a class of {self.schema.name} "
                             f"(0..{self.schema.num_classes - 1})")
        return int(label), self.source, self.labelling_round

    def _image(self, image_id: str) -> dict[tuple[int, int], LabelRecord]:
        if image_id not in self._points:
            raise KeyError(f"image {image_id!r} is not one of the {len(self._points)} images being annotated")
        return self._points[image_id]

    def _existing(self, image_id: str, row: int, col: int) -> LabelRecord:
        point = self._image(image_id).get((row, col))
        if point is None:
            raise KeyError(f"image {image_id!r} has no point at row {row}, col {col}")
        return point

    def _check_pixel(self, image_id: str, row: int, col: int) -> None:
        self._image(image_id)
        height, width = self.image_shapes[image_id]
        if not (0 <= row < height and 0 <= col < width):
            raise ValueError(f"row {row}, col {col} is outside image {image_id!r} ({width}x{height})")

    def _apply(self, changes: list[_Change], record: bool = True) -> None:
        previous = [(change, self._image(change.image_id).get(change.pixel)) for change in changes]
        for change in changes:
            self._set(change.image_id, change.pixel, change.after)
        try:
            self._save()
        except BaseException:
            for change, point in reversed(previous):
                self._set(change.image_id, change.pixel, point)
            raise
        if record:
            self._history.append(changes)

    def _set(self, image_id: str, pixel: tuple[int, int], point: LabelRecord | None) -> None:
        if point is None:
            self._points[image_id].pop(pixel, None)
        else:
            self._points[image_id][pixel] = point

    def _save(self) -> None:
        if _signature(self.path) != self._signature:
            raise AnnotationConflictError(
                f"{self.path}: changed on disk since it was read (by hand or by another editor); nothing "
                "was written. Call reload() to take the file's points, then make the change again.")
        save_annotations(self.annotations, self.path, self.schema, info=self._info)
        self._signature = _signature(self.path)


def _signature(path: Path) -> str | None:
    """A digest of the file's bytes (None where there is no file)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def simulate_clicks(editor: PointEditor, masks: Mapping[str, str | Path], points_per_image: int,
                    seed: int = 0) -> int:
    """Clicks a person could make, drawn from masks set aside: ``points_per_image`` uniform
    pixels of each image in ``masks`` (image id -> mask file), never on no data, each given its
    mask's class and added through ``editor`` as a click is (one change per image). For running
    the click-to-annotate workflow without a person: notebook 08 headless, tests, studies.
    Returns the number of points added."""
    source, editor.source = editor.source, SIMULATED
    added = 0
    try:
        for image_id, mask in masks.items():
            class_map = annotatable(read_mask(mask, editor.schema), editor.schema)
            points = sample_points(class_map, n_points=points_per_image, seed=image_seed(seed, image_id))
            editor.add_many(image_id, points.rows, points.cols, points.labels)
            added += len(points)
    finally:
        editor.source = source
    return added
