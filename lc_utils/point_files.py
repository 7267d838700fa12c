"""Annotation files: every image's points in one CSV, made once, edited by hand, read back checked.

The format, as :func:`save_annotations` writes it::

    # info: {"n_points": 100, "seed": 0, "strategy": "uniform", ...}
    # any comment of one's own
    image_id,row,col,label,class_name,source,round
    0001,12,40,3,forest,uniform,0

What someone editing a file by hand (a spreadsheet, a text editor) can rely on:

- The file is UTF-8, written without a byte-order mark and read with or without one (Excel's
  "CSV UTF-8" adds one).
- Lines before the header that start with ``#`` are comments, kept when the file is saved again;
  the one starting ``# info:`` holds how the points were made, as JSON. From the header on, every
  line that is not blank is a point, even one whose image id starts with ``#``: no point is ever
  skipped as a comment, and a note written below the header is refused rather than ignored.
- Columns are read by their names in the header, in any order. ``image_id``, ``row``, ``col`` and
  ``label`` are required; ``class_name`` (checked against the label), ``source`` and ``round``
  are optional; any other column (``checked_by``, ``note``) is kept with each point
  (:attr:`PointAnnotation.extras`) and written back.
- Rows, columns, labels and rounds are whole numbers, 0 or more (``3.0`` reads as 3).

Every error names the file, and the line where there is one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import numbers
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import DEEPGLOBE, ClassSchema
from .files import as_pairs, image_shapes
from .masks import OnInvalid, read_mask
from .saved_files import OtherSettingsError, atomic_write, refuse_other_settings
from .sparse import PointAnnotation, Strategy, annotatable, sample_annotations

READ_ENCODING = "utf-8-sig"
"""How annotation files are read: UTF-8, with the byte-order mark Excel writes read as nothing."""
WRITE_ENCODING = "utf-8"
REQUIRED_COLUMNS = ("image_id", "row", "col", "label")
CLASS_NAME = "class_name"
PROVENANCE_COLUMNS = ("source", "round")
"""Optional columns: who or what placed each point, and the labelling round that added it."""
_OPTIONAL_COLUMNS = (CLASS_NAME, *PROVENANCE_COLUMNS)
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS)
INFO_PREFIX = "# info:"
LARGEST_COORDINATE = 2**31 - 1
"""No image is this large: a bigger row or column is a typo, refused even where sizes are unknown."""

_PROVENANCE_FIELDS = dict(zip(PROVENANCE_COLUMNS, ("sources", "rounds")))
_Point = tuple[int, int, int, str, int | None, tuple[str, ...]]
"""One line of a file: row, col, label, source, round (None: not given), extra columns."""


@dataclass(frozen=True)
class AnnotationFile:
    """An annotation file as read (:func:`read_annotation_file`): its points and what a save must
    keep of it."""

    path: Path
    annotations: dict[str, PointAnnotation]
    info: dict[str, object]
    """How the points were made (the ``# info:`` line; {} where there is none)."""
    comments: tuple[str, ...] = ()
    """The other ``#`` lines above the header, as written."""
    extra_columns: tuple[str, ...] = ()
    """The columns the course does not read, in the file's order."""
    digest: str = ""
    """SHA-256 of the bytes that were read: the file is unchanged while :func:`file_digest` agrees."""


def annotation_filename(strategy: str, n_points: int | None = None, fraction: float | None = None,
                        seed: int = 0, points_per_mp: float | None = None) -> str:
    """A file name that tells the settings apart, e.g. ``points_uniform_n100_seed0.csv`` or
    ``points_uniform_1500permp_seed0.csv``."""
    if n_points is not None:
        amount = f"n{n_points}"
    elif points_per_mp is not None:
        amount = f"{points_per_mp:g}permp"
    else:
        amount = f"f{fraction:g}"
    return f"points_{strategy}_{amount}_seed{seed}.csv"


def whole_number(value: object, name: str, *, minimum: int | None = 0, maximum: int | None = None) -> int:
    """``value`` (a number, or the text of one) as an int, or a ``ValueError`` saying why not,
    naming it ``name``: a fraction (2.5, or -0.7 that ``int()`` would quietly make 0), NaN, text
    that is no number, True or False, or a number below ``minimum`` or above ``maximum``. A whole
    float (3.0, "3.0") is fine."""
    try:
        number = _whole(value)
    except ValueError:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"{name} is missing") from None
        shown = repr(value) if isinstance(value, str) else str(value)
        raise ValueError(f"{name} must be a whole number, got {shown}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be {minimum} or more, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number


def _whole(value: object) -> int:
    if isinstance(value, str):
        try:
            return int(value)  # the common case first: files hold millions of these
        except ValueError:
            value = float(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError
    if isinstance(value, numbers.Integral) or float(value).is_integer():  # NaN and infinity are not
        return int(value)
    raise ValueError


def class_label(value: object, schema: ClassSchema = DEEPGLOBE) -> int:
    """``value`` as a class index of ``schema``, or a ``ValueError`` saying why it is not one."""
    label = whole_number(value, "label", minimum=None)
    if not 0 <= label < schema.num_classes:
        raise ValueError(f"label {label} is not a class of {schema.name} (0..{schema.num_classes - 1})")
    return label


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes (None where there is no file)."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def save_annotations(
    annotations: Mapping[str, PointAnnotation],
    path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    info: Mapping[str, object] | None = None,
    *,
    comments: Sequence[str] = (),
) -> Path:
    """Write every image's points to one CSV (``image_id,row,col,label,class_name``, then
    ``source,round`` where any point records them and the extra columns any point carries),
    atomically: an interrupted save leaves the previous file whole.

    ``info`` (how the points were made) goes into a ``# info: {...}`` first line and ``comments``
    (each starting with ``#``) below it. The file is meant to be read and edited by hand:
    :func:`load_annotations` checks it on the way back (the rules are in this module's docstring).
    """
    path = Path(path)
    for comment in comments:
        if not comment.startswith("#") or comment.startswith(INFO_PREFIX) or len(comment.splitlines()) > 1:
            raise ValueError(f"{path}: a comment line must start with '#', be one line and not be the "
                             f"'{INFO_PREFIX}' line, got {comment!r}")
    provenance = [name for name, field in _PROVENANCE_FIELDS.items()
                  if any(getattr(a, field) is not None for a in annotations.values())]
    extra = list(dict.fromkeys(name for a in annotations.values() for name in (a.extras or {})))
    clashing = [name for name in extra if name in KNOWN_COLUMNS or not name.strip()]
    if clashing:
        raise ValueError(f"{path}: extra columns may not be unnamed or named like the course's own, "
                         f"got {clashing}")
    for image_id, annotation in annotations.items():
        if not image_id or image_id != image_id.strip():
            raise ValueError(f"{path}: image id {image_id!r} is empty or starts or ends with spaces")
        if len(annotation) and int(annotation.labels.max()) >= schema.num_classes:
            raise ValueError(f"{path}: image {image_id!r} has label {int(annotation.labels.max())}, not a "
                             f"class of {schema.name} (0..{schema.num_classes - 1})")
    with atomic_write(path, encoding=WRITE_ENCODING, newline="") as f:
        if info:
            f.write(f"{INFO_PREFIX} {json.dumps(dict(info), sort_keys=True)}\n")
        f.writelines(f"{comment}\n" for comment in comments)
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*REQUIRED_COLUMNS, CLASS_NAME, *provenance, *extra])
        for image_id in sorted(annotations):
            a = annotations[image_id]
            columns = [[""] * len(a) if getattr(a, _PROVENANCE_FIELDS[name]) is None
                       else getattr(a, _PROVENANCE_FIELDS[name]).tolist() for name in provenance]
            columns += [a.extras[name].tolist() if a.extras and name in a.extras else [""] * len(a)
                        for name in extra]
            for i, (row, col, label) in enumerate(zip(a.rows.tolist(), a.cols.tolist(), a.labels.tolist())):
                writer.writerow([image_id, row, col, label, schema.names[label], *(c[i] for c in columns)])
    return path


def read_annotation_info(path: str | Path) -> dict[str, object]:
    """The ``info`` saved with an annotation file ({} when it has none)."""
    path = Path(path)
    return _preamble(path, _lines(path, path.read_bytes()))[0]


def load_annotations(
    path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    image_shapes: Mapping[str, tuple[int, int]] | None = None,
    *,
    images_without_masks: Collection[str] = (),
) -> dict[str, PointAnnotation]:
    """The points of the file at ``path`` (image id -> :class:`PointAnnotation`), every line
    checked: see :func:`read_annotation_file`."""
    return read_annotation_file(path, schema, image_shapes,
                                images_without_masks=images_without_masks).annotations


def read_annotation_file(
    path: str | Path,
    schema: ClassSchema = DEEPGLOBE,
    image_shapes: Mapping[str, tuple[int, int]] | None = None,
    *,
    images_without_masks: Collection[str] = (),
) -> AnnotationFile:
    """Read a file written by :func:`save_annotations` or by hand, checking every line.

    Errors name the file and line: a header without the required columns, a label outside the
    schema, a class name that disagrees with the label, a row, column, label or round that is not
    a whole number 0 or more, a point listed twice. With ``image_shapes`` (image id -> (H, W)) it
    also refuses points outside their image and ids that are not among the images, each named
    with its first line.

    Images without masks can carry points: give their sizes in ``image_shapes`` (training from a
    file of one's own, as notebook 08 does on clicked images that have no mask at all).
    ``images_without_masks`` names the images of a folder that ``image_shapes`` leaves out because
    they have no mask (a data set of the images with masks): points on them are then refused as
    points on images without a mask, not as points on images that do not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    data = path.read_bytes()
    lines = _lines(path, data)
    info, comments, header_at = _preamble(path, lines)
    if header_at is None:
        raise ValueError(f"{path}: no header line; expected one naming the columns "
                         f"{','.join(REQUIRED_COLUMNS)} (and optionally {', '.join(_OPTIONAL_COLUMNS)})")
    header = _header(path, header_at + 1, lines[header_at])
    extra_columns = tuple(name for name in header if name not in KNOWN_COLUMNS)
    at = {name: header.index(name) if name in header else len(header) for name in KNOWN_COLUMNS}
    extra_at = [header.index(name) for name in extra_columns]
    points: dict[str, list[_Point]] = {}
    seen: dict[tuple[str, int, int], int] = {}
    unknown: dict[str, int] = {}
    reader = csv.reader(lines[header_at + 1:])
    last = 0
    try:
        for fields in reader:
            line_no, last = header_at + 2 + last, reader.line_num
            if not "".join(fields).strip():
                continue  # a blank line, or a row of empty cells from a spreadsheet
            try:
                image_id, point = _point(fields, at, extra_at, len(header), schema)
                row, col = point[0], point[1]
                shape = None if image_shapes is None else image_shapes.get(image_id)
                if image_shapes is not None and shape is None:
                    unknown.setdefault(image_id, line_no)
                    continue
                if shape is not None and (row >= shape[0] or col >= shape[1]):
                    raise ValueError(f"row {row}, col {col} is outside image {image_id!r} "
                                     f"({shape[1]}x{shape[0]})")
                if shape is None and max(row, col) > LARGEST_COORDINATE:
                    name, value = ("row", row) if row > LARGEST_COORDINATE else ("col", col)
                    raise ValueError(f"{name} must be at most {LARGEST_COORDINATE}, got {value}")
                first = seen.setdefault((image_id, row, col), line_no)
                if first != line_no:
                    raise ValueError(f"the same pixel twice: image {image_id!r}, row {row}, col {col} is on "
                                     f"line {first} already")
            except ValueError as error:
                hint = ("; comment lines (starting with '#') go above the header: below it every line is "
                        "a point") if fields[0].lstrip().startswith("#") else ""
                raise ValueError(f"{path}:{line_no}: {error}{hint}") from None
            points.setdefault(image_id, []).append(point)
    except csv.Error as error:
        raise ValueError(f"{path}:{header_at + 2 + last}: not a CSV line: {error}") from None
    if unknown:
        raise ValueError(f"{path}: {_unknown_images(unknown, images_without_masks)}")
    annotations = {image_id: _annotation(image_points, header, extra_columns)
                   for image_id, image_points in points.items()}
    return AnnotationFile(path, annotations, info, tuple(comments), extra_columns,
                          hashlib.sha256(data).hexdigest())


def _lines(path: Path, data: bytes) -> list[str]:
    """The file's lines with their endings, as ``csv`` reads them (any of \\n, \\r\\n, \\r)."""
    try:
        text = data.decode(READ_ENCODING)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start} cannot be read: {error.reason}); save "
                         "it as UTF-8 (in Excel: CSV UTF-8)") from None
    return list(io.StringIO(text, newline=""))


def _preamble(path: Path, lines: Sequence[str]) -> tuple[dict[str, object], list[str], int | None]:
    """The info, the other comment lines and the index of the header line (None: no header)."""
    info: dict[str, object] | None = None
    comments = []
    for index, line in enumerate(lines):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if not text.lstrip().startswith("#"):
            return info or {}, comments, index
        if not text.startswith(INFO_PREFIX):
            comments.append(text)
            continue
        if info is not None:
            raise ValueError(f"{path}:{index + 1}: a second '{INFO_PREFIX}' line; a file has one")
        try:
            info = json.loads(text[len(INFO_PREFIX):])
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{index + 1}: the '{INFO_PREFIX}' line is not valid JSON ({error.msg} "
                             f"at column {error.colno + len(INFO_PREFIX)}); put it right or delete the "
                             "line") from None
        if not isinstance(info, dict):
            raise ValueError(f"{path}:{index + 1}: the '{INFO_PREFIX}' line must hold a JSON object {{...}}, "
                             f"got {type(info).__name__}")
    return info or {}, comments, None


def _header(path: Path, line_no: int, line: str) -> list[str]:
    names = [name.strip() for name in next(csv.reader([line]), [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise ValueError(f"{path}:{line_no}: the header lacks the column(s) {', '.join(missing)}; expected "
                         f"{','.join(REQUIRED_COLUMNS)} in any order (and optionally "
                         f"{', '.join(_OPTIONAL_COLUMNS)}), got {names}")
    for i, name in enumerate(names):
        if not name:
            raise ValueError(f"{path}:{line_no}: column {i + 1} of the header has no name")
        if names.index(name) != i:
            raise ValueError(f"{path}:{line_no}: the header names the column {name!r} twice")
    return names


def _point(fields: list[str], at: Mapping[str, int], extra_at: Sequence[int], width: int,
           schema: ClassSchema) -> tuple[str, _Point]:
    """One line's image id and point, its fields found by the header's column positions ``at``
    (``width`` columns; an optional column the file lacks is at ``width``, past the last one);
    a ``ValueError`` says what is wrong."""
    if len(fields) > width:
        if "".join(fields[width:]).strip():
            raise ValueError(f"{len(fields)} fields but the header names {width} columns")
        fields = fields[:width]
    fields = fields + [""] * (width + 1 - len(fields))  # a short line leaves the rest empty
    image_id = fields[at["image_id"]].strip()
    if not image_id:
        raise ValueError("image_id is missing")
    row = whole_number(fields[at["row"]], "row")
    col = whole_number(fields[at["col"]], "col")
    label = class_label(fields[at["label"]], schema)
    name = fields[at[CLASS_NAME]].strip()
    if name and name != schema.names[label]:
        raise ValueError(f"label {label} is {schema.names[label]!r} but the line says {name!r}")
    round_text = fields[at["round"]]
    labelling_round = (whole_number(round_text, "round", maximum=LARGEST_COORDINATE) if round_text.strip()
                       else None)
    extras = tuple(fields[i] for i in extra_at)
    return image_id, (row, col, label, fields[at["source"]].strip(), labelling_round, extras)


def _annotation(points: list[_Point], header: list[str], extra_columns: tuple[str, ...]) -> PointAnnotation:
    rows, cols, labels, sources, rounds, extras = zip(*points)
    return PointAnnotation(
        np.array(rows), np.array(cols), np.array(labels),
        sources=np.array(sources, dtype=object) if "source" in header else None,
        # a point with no round in a file that records them came before the rounds
        rounds=np.array([r or 0 for r in rounds]) if "round" in header else None,
        extras={name: np.array(values, dtype=object) for name, values in zip(extra_columns, zip(*extras))}
        if extra_columns else None)


def _unknown_images(first_lines: Mapping[str, int], without_masks: Collection[str]) -> str:
    """What is wrong with points on images outside the data set, each with its first line."""
    def listed(ids: list[str]) -> str:
        shown = ", ".join(f"{i!r} (line {first_lines[i]})" for i in ids[:5])
        return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")

    no_mask = [i for i in first_lines if i in without_masks]
    others = [i for i in first_lines if i not in without_masks]
    problems = []
    if no_mask:
        problems.append(f"image(s) with points but no mask: {listed(no_mask)}; where some images have masks, "
                        "a run trains on those only (mask-less images carry points in a folder of images "
                        "without masks, as in notebook 08)")
    if others:
        problems.append(f"image(s) not in the data set: {listed(others)}")
    return "; ".join(problems)


def ensure_annotations(
    path: str | Path,
    pairs: Sequence[tuple[str | Path, str | Path]],
    *,
    n_points: int | None = None,
    fraction: float | None = None,
    points_per_mp: float | None = None,
    strategy: Strategy = "uniform",
    seed: int = 0,
    schema: ClassSchema = DEEPGLOBE,
    on_invalid: OnInvalid = "unknown",
    label_unknown: bool = False,
) -> dict[str, PointAnnotation]:
    """Load the annotation at ``path``, or make it from the masks of ``pairs`` and save it there.

    The schema's unknown class (DeepGlobe's no-data black) gets no points unless
    ``label_unknown``: it is left out of every score, so points spent on it teach nothing that is
    measured, and an annotator would skip clouds and no-data as well.

    The file records how it was made. An existing file made with other settings or for other
    images, or one that does not say how it was made, is refused (:class:`OtherSettingsError`)
    rather than overwritten: it may hold hand edits. One made with these settings is loaded and
    checked against the images (their sizes read from the file headers).
    """
    path, pairs = Path(path), as_pairs(pairs)
    wanted = {"strategy": strategy, "n_points": n_points, "fraction": fraction,
              "points_per_mp": points_per_mp, "seed": seed, "label_unknown": label_unknown,
              "images": sorted(pair.image_id for pair in pairs)}
    if path.is_file():
        keep = ("to train on its points as they are (hand edits too), give it as a file of one's own "
                f"(annotations={str(path)!r} in a RunSpec, --annotations {path} on the command line), "
                "or give it another name and points for these settings are made afresh here")
        saved = read_annotation_info(path)
        if not saved:
            raise OtherSettingsError(f"{path} has no '{INFO_PREFIX}' line saying how its points were made, "
                                     f"so it is not reused for these settings; {keep}")
        refuse_other_settings(path, saved, wanted, fix=keep)
        return load_annotations(path, schema, image_shapes(pairs))
    class_maps = ((pair.image_id,
                   annotatable(read_mask(pair.mask, schema, on_invalid=on_invalid), schema, label_unknown))
                  for pair in pairs)
    annotations = sample_annotations(class_maps, n_points=n_points, fraction=fraction,
                                     points_per_mp=points_per_mp, strategy=strategy, seed=seed)
    save_annotations(annotations, path, schema, wanted)
    return annotations
