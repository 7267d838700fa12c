"""Points a person clicks: add, relabel, remove and undo, each change saved to the annotation file
at once.

The file is the course's annotation format (:mod:`lc_utils.point_files`), so every notebook and
the training command read clicked points as they read sampled ones. Clicked points say so
(``source="person"``) and the round that added them; the columns and comment lines a person added
to the file are kept. A file changed on disk meanwhile (by hand, or by a second editor) is never
overwritten: the change is refused until :meth:`PointEditor.reload`. Two editors never save at
the same moment: a lock file beside the annotation file (``.<name>.lock``) makes the check and the
write one step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from .classes import DEEPGLOBE, ClassSchema
from .masks import read_mask
from .point_files import class_label, file_digest, read_annotation_file, save_annotations, whole_number
from .point_sources import PERSON, SIMULATED
from .sparse import PointAnnotation, annotatable, image_seed, sample_points

LOCK_TIMEOUT_S = 10.0
"""How long a save waits for another editor's save of the same file before giving up."""
STALE_LOCK_S = 60.0
"""A lock file older than this was left by an editor that stopped mid-save: it is taken over."""

Action = Literal["added", "relabelled", "removed"]


class LabelRecord(NamedTuple):
    """What the editor keeps per pixel."""

    label: int
    source: str
    labelling_round: int
    extras: tuple[str, ...] = ()
    """The point's values in the file's extra columns (:attr:`PointEditor.extra_columns`)."""


class AnnotationConflictError(RuntimeError):
    """The annotation file changed on disk since the editor last read or wrote it (or another
    editor kept it locked)."""


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
    Rows, columns and labels must be whole numbers (3 or 3.0, never 2.9), each pixel once per change.
    ``extra_columns`` are the file's columns of one's own (``checked_by``, say): every point keeps
    its values in them, a new point has them empty, and every save writes them back, with the
    file's comment lines.
    """

    def __init__(self, path: str | Path, image_shapes: Mapping[str, tuple[int, int]],
                 schema: ClassSchema = DEEPGLOBE, *, source: str = PERSON, labelling_round: int = 0) -> None:
        if not image_shapes:
            raise ValueError("no images to annotate: image_shapes is empty")
        self.path = Path(path)
        self.image_shapes = {image_id: (int(h), int(w)) for image_id, (h, w) in image_shapes.items()}
        self.schema = schema
        self.source = source
        self.labelling_round = whole_number(labelling_round, "labelling_round")
        self.reload()

    def reload(self) -> None:
        """Read the file as it is on disk now (nothing where there is no file yet); the undo
        history starts again. A file that does not read (a typo made by hand) raises and leaves
        the editor as it was: put the file right and reload, or keep editing and the editor's
        next save is refused until then."""
        points: dict[str, dict[tuple[int, int], LabelRecord]] = {i: {} for i in self.image_shapes}
        info: dict[str, object] = {"source": "points placed with lc_utils.point_editor"}
        comments: tuple[str, ...] = ()
        extra_columns: tuple[str, ...] = ()
        signature = None
        if self.path.is_file():
            saved = read_annotation_file(self.path, self.schema, self.image_shapes)
            extra_columns = saved.extra_columns
            for image_id, a in saved.annotations.items():
                n = len(a)
                sources = a.sources if a.sources is not None else [""] * n
                rounds = a.rounds if a.rounds is not None else [0] * n
                extras = list(zip(*(a.extras[name] for name in extra_columns))) if extra_columns else [()] * n
                points[image_id] = {
                    (int(r), int(c)): LabelRecord(int(label), str(source), int(k), tuple(map(str, extra)))
                    for r, c, label, source, k, extra in zip(a.rows, a.cols, a.labels, sources, rounds,
                                                             extras)}
            info = saved.info or info
            comments, signature = saved.comments, saved.digest
        self._points, self._info, self._comments = points, info, comments
        self.extra_columns = extra_columns
        self._history: list[list[_Change]] = []
        self._signature = signature

    @property
    def annotations(self) -> dict[str, PointAnnotation]:
        """Every image's points (images without points left out), with their provenance."""
        return {image_id: self.points(image_id) for image_id, points in self._points.items() if points}

    def points(self, image_id: str) -> PointAnnotation:
        """The points of one image, with their provenance and the file's extra columns."""
        points = self._image(image_id)
        pixels = list(points)
        records = [points[p] for p in pixels]
        extras = {name: [r.extras[i] for r in records] for i, name in enumerate(self.extra_columns)}
        return PointAnnotation([p[0] for p in pixels], [p[1] for p in pixels], [r.label for r in records],
                               sources=[r.source for r in records],
                               rounds=[r.labelling_round for r in records], extras=extras or None)

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
        row, col = self._pixel(image_id, row, col)
        label = class_label(label, self.schema)
        near = self.point_near(image_id, row, col, radius)
        if near is None:
            self.add(image_id, row, col, label)
            return "added"
        if self._image(image_id)[near].label == label:
            self.remove(image_id, *near)
            return "removed"
        self.relabel(image_id, *near, label)
        return "relabelled"

    def add(self, image_id: str, row: int, col: int, label: int) -> None:
        """A new point of class ``label`` (a point already on that pixel takes the label)."""
        self.add_many(image_id, [row], [col], [label])

    def add_many(self, image_id: str, rows: Sequence[int], cols: Sequence[int], labels: Sequence[int]
                 ) -> None:
        """Several new points on one image in one change: one save, one undo. A point already on
        one of the pixels takes the new label, keeping its extra columns."""
        rows, cols, labels = list(rows), list(cols), list(labels)
        if not len(rows) == len(cols) == len(labels):
            raise ValueError(f"{len(rows)} rows, {len(cols)} cols and {len(labels)} labels: give one of each "
                             "per point")
        pixels = [self._pixel(image_id, row, col) for row, col in zip(rows, cols)]
        classes = [class_label(label, self.schema) for label in labels]
        if len(set(pixels)) < len(pixels):
            row, col = next(p for i, p in enumerate(pixels) if p in pixels[:i])
            raise ValueError(f"row {row}, col {col} twice in one change: give each pixel once")
        points = self._image(image_id)
        self._apply([_Change(image_id, pixel, points.get(pixel), self._new(label, points.get(pixel)))
                     for pixel, label in zip(pixels, classes)])

    def relabel(self, image_id: str, row: int, col: int, label: int) -> None:
        """Give the point on (row, col) the class ``label``."""
        pixel = self._pixel(image_id, row, col)
        before = self._existing(image_id, pixel)
        self._apply([_Change(image_id, pixel, before, self._new(class_label(label, self.schema), before))])

    def remove(self, image_id: str, row: int, col: int) -> None:
        """Take away the point on (row, col)."""
        pixel = self._pixel(image_id, row, col)
        self._apply([_Change(image_id, pixel, self._existing(image_id, pixel), None)])

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

    def _new(self, label: int, before: LabelRecord | None) -> LabelRecord:
        """The record of a point this editor labels ``label``; a point it relabels keeps the
        values a person wrote in the extra columns."""
        extras = before.extras if before is not None else ("",) * len(self.extra_columns)
        return LabelRecord(label, self.source, self.labelling_round, extras)

    def _image(self, image_id: str) -> dict[tuple[int, int], LabelRecord]:
        if image_id not in self._points:
            raise KeyError(f"image {image_id!r} is not one of the {len(self._points)} images being annotated")
        return self._points[image_id]

    def _existing(self, image_id: str, pixel: tuple[int, int]) -> LabelRecord:
        point = self._image(image_id).get(pixel)
        if point is None:
            raise KeyError(f"image {image_id!r} has no point at row {pixel[0]}, col {pixel[1]}")
        return point

    def _pixel(self, image_id: str, row: object, col: object) -> tuple[int, int]:
        """(row, col) as whole numbers inside the image, or a ``ValueError`` saying why not."""
        self._image(image_id)
        row, col = whole_number(row, "row", minimum=None), whole_number(col, "col", minimum=None)
        height, width = self.image_shapes[image_id]
        if not (0 <= row < height and 0 <= col < width):
            raise ValueError(f"row {row}, col {col} is outside image {image_id!r} ({width}x{height})")
        return row, col

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
        with _locked(self.path):
            if file_digest(self.path) != self._signature:
                raise AnnotationConflictError(
                    f"{self.path}: changed on disk since it was read (by hand or by another editor); nothing "
                    "was written. Call reload() to take the file's points, then make the change again.")
            save_annotations(self.annotations, self.path, self.schema, info=self._info,
                             comments=self._comments)
            self._signature = file_digest(self.path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the lock file beside ``path`` while checking and writing it. Creating a file that must
    not exist yet (``O_EXCL``) is one step on every system, local or a network drive, where
    ``fcntl`` and ``msvcrt`` locks are not both to be had."""
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                stale = time.time() - lock.stat().st_mtime > STALE_LOCK_S
            except FileNotFoundError:  # released meanwhile: try again at once
                continue
            if stale:
                lock.unlink(missing_ok=True)
            elif time.monotonic() > deadline:
                raise AnnotationConflictError(
                    f"{path}: another editor has been saving it for {LOCK_TIMEOUT_S:.0f} s (its lock file is "
                    f"{lock}); nothing was written. If no other editor is open on the file, delete the "
                    "lock file and make the change again.") from None
            else:
                time.sleep(0.01)
    try:
        os.write(handle, f"{os.getpid()}\n".encode())  # who holds it, for a person who finds it
        os.close(handle)
        yield
    finally:
        lock.unlink(missing_ok=True)


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
