"""Class schemas: names, colours, how masks encode each class and what they leave unlabelled.

A schema is data, not code: the presets (:data:`PRESETS`) are TOML files in ``lc_utils/schemas/``,
and a dataset brings its own as a ``class_dict.csv`` (``name,r,g,b``: RGB-coded masks), an index
list (``value,name[,r,g,b]``: single-channel masks) or a TOML file of the same form as the presets.
"""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IGNORE_INDEX = 255
"""Label value of an unlabelled pixel in every sparse label map, loss and metric."""

SCHEMA_DIR = Path(__file__).with_name("schemas")
PRESETS = ("deepglobe", "loveda", "potsdam", "vaihingen")
"""Schemas shipped with the package, by the name :func:`load_preset` and :func:`resolve_schema` take."""

_DISPLAY_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                   (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
"""Colours given to the classes of an index list that names none (matplotlib's tab10)."""


@dataclass(frozen=True)
class ClassSchema:
    """An ordered set of classes and how a dataset's masks encode them.

    - ``names`` and ``colors``: class ``i`` is ``names[i]``, drawn in ``colors[i]`` (r, g, b).
    - ``rgb_masks``: masks may be RGB-coded with exactly these colours (DeepGlobe, ISPRS).
      Otherwise the colours are only for plots.
    - ``values``: the pixel value of each class in single-channel (index) masks, or ``None``
      when the dataset has no such masks. LoveDA stores its classes as 1..7.
    - ``ignore_values`` / ``ignore_colors``: mask contents that mean "no data" (LoveDA's 0,
      the black boundaries of ISPRS's eroded masks). They become 255 (:data:`IGNORE_INDEX`),
      counted by no loss and no metric, and are no class.
    - ``unknown_index``: the class that stands for "no information" (DeepGlobe's black pixels).
      Metrics leave it out of their headline means by default, and no point is sampled on it.
    - ``name``: what messages call the schema (not compared: two schemas that decode alike are equal).
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    unknown_index: int | None = None
    values: tuple[int, ...] | None = None
    rgb_masks: bool = True
    ignore_values: tuple[int, ...] = ()
    ignore_colors: tuple[tuple[int, int, int], ...] = ()
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        names, colors = tuple(self.names), tuple(tuple(int(v) for v in c) for c in self.colors)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "ignore_values", tuple(int(v) for v in self.ignore_values))
        object.__setattr__(self, "ignore_colors", tuple(tuple(int(v) for v in c) for c in self.ignore_colors))
        if self.values is not None:
            object.__setattr__(self, "values", tuple(int(v) for v in self.values))
        if not names:
            raise ValueError("a ClassSchema needs at least one class")
        if len(names) != len(colors):
            raise ValueError(f"{len(names)} class names but {len(colors)} colours")
        if len(names) >= IGNORE_INDEX:
            raise ValueError(f"at most {IGNORE_INDEX - 1} classes: {IGNORE_INDEX} marks unlabelled")
        if len(set(names)) != len(names):
            raise ValueError(f"class names repeat: {names}")
        for name, color in zip(names, colors):
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise ValueError(f"class {name!r}: colour {color} is not an (r, g, b) in 0..255")
        for color in self.ignore_colors:
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise ValueError(f"ignored colour {color} is not an (r, g, b) in 0..255")
        if len(set(colors)) != len(colors):
            raise ValueError(f"two classes share a colour: {colors}")
        if self.rgb_masks and (shared := set(colors) & set(self.ignore_colors)):
            raise ValueError(f"a class colour is also ignored: {sorted(shared)}")
        if self.values is not None:
            if len(self.values) != len(names):
                raise ValueError(f"{len(names)} class names but {len(self.values)} index values")
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"two classes share an index value: {self.values}")
            if any(v < 0 for v in (*self.values, *self.ignore_values)):
                raise ValueError("index values must be 0 or more")
            if set(self.values) & set(self.ignore_values):
                raise ValueError(f"an index value is both a class and ignored: "
                                 f"{sorted(set(self.values) & set(self.ignore_values))}")
        if not self.rgb_masks and self.values is None:
            raise ValueError("a schema needs RGB-coded masks, index values, or both")
        if self.unknown_index is not None and not 0 <= self.unknown_index < len(names):
            raise ValueError(f"unknown_index {self.unknown_index} outside 0..{len(names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def palette(self) -> np.ndarray:
        """Colours as a (num_classes, 3) uint8 array, row i for class i."""
        return np.array(self.colors, dtype=np.uint8)

    @property
    def index_masks(self) -> bool:
        """Whether single-channel masks holding :attr:`values` can be decoded."""
        return self.values is not None

    def describe_encoding(self) -> str:
        """How this schema's masks are coded, in words, for messages."""
        ways = []
        if self.rgb_masks:
            ways.append("RGB-coded masks")
        if self.values is not None:
            ways.append(f"single-channel index masks (values {sorted(self.values)})")
        return " or ".join(ways)

    def index(self, name: str) -> int:
        """Index of the class called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no class {name!r}; classes are {list(self.names)}") from None

    def known_indices(self) -> list[int]:
        """Every class index except the unknown one."""
        return [i for i in range(self.num_classes) if i != self.unknown_index]

    @classmethod
    def from_class_dict_csv(cls, path: str | Path, unknown_name: str | None = "unknown") -> ClassSchema:
        """Read a palette file with the columns ``name,r,g,b`` in any order (the Kaggle DeepGlobe
        ``class_dict.csv``).

        Rows keep their file order. The class called ``unknown_name`` (if present) becomes the
        unknown class.
        """
        path = Path(path)
        rows = _read_csv_rows(path, required=("name", "r", "g", "b"))
        names = [row["name"] for _, row in rows]
        colors = [_color(row, path, line_no) for line_no, row in rows]
        unknown = names.index(unknown_name) if unknown_name in names else None
        return _checked(path, names=tuple(names), colors=tuple(colors), unknown_index=unknown,
                        name=path.name)

    @classmethod
    def from_index_csv(cls, path: str | Path, unknown_name: str | None = "unknown") -> ClassSchema:
        """Read an index list with the columns ``value,name`` in any order (and optionally ``r,g,b``
        display colours): each row is a class and the pixel value that marks it in single-channel masks.

        Values in no row are off-palette (see :func:`lc_utils.masks.read_mask`); a no-data value to
        ignore needs the TOML form (``ignore_values``).
        """
        path = Path(path)
        rows = _read_csv_rows(path, required=("value", "name"))
        names, values, colors = [], [], []
        for i, (line_no, row) in enumerate(rows):
            names.append(row["name"])
            try:
                values.append(int(row["value"]))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: value {row['value']!r} is not an integer") from None
            has_color = all(row.get(c) for c in "rgb")
            default = _DISPLAY_COLORS[i % len(_DISPLAY_COLORS)]
            colors.append(_color(row, path, line_no) if has_color else default)
        unknown = names.index(unknown_name) if unknown_name in names else None
        return _checked(path, names=tuple(names), colors=tuple(colors), values=tuple(values),
                        rgb_masks=False, unknown_index=unknown, name=path.name)

    @classmethod
    def from_toml(cls, path: str | Path) -> ClassSchema:
        """Read a schema file in the presets' form (see ``lc_utils/schemas/*.toml``)::

            name = "LoveDA"
            masks = ["index"]          # "rgb", "index" or both
            ignore_values = [0]        # optional: no-data values (index masks)
            ignore_colors = []         # optional: no-data colours (RGB masks)
            unknown = "clutter"        # optional: the class left out of headline means
            [[classes]]
            name = "background"
            value = 1                  # index masks: the class's pixel value
            color = [255, 255, 255]    # RGB masks: its colour; else the colour plots use
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: schema file not found")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a readable TOML file ({error})") from None
        known = {"name", "masks", "ignore_values", "ignore_colors", "unknown", "classes"}
        if unknown_keys := sorted(set(data) - known):
            raise ValueError(f"{path}: unknown key(s) {unknown_keys}; the keys are {sorted(known)}")
        masks = data.get("masks", ["rgb"])
        if not masks or not set(masks) <= {"rgb", "index"}:
            raise ValueError(f"{path}: masks = {masks!r}; give [\"rgb\"], [\"index\"] or both")
        classes = data.get("classes", [])
        for number, entry in enumerate(classes, start=1):
            needed = {"name", "color"} | ({"value"} if "index" in masks else set())
            if missing := sorted(needed - set(entry)):
                raise ValueError(f"{path}: class {number} ({entry.get('name', '?')!r}) lacks {missing}")
        names = tuple(entry["name"] for entry in classes)
        unknown_name = data.get("unknown")
        if unknown_name is not None and unknown_name not in names:
            raise ValueError(f"{path}: unknown = {unknown_name!r} is not a class; classes are {list(names)}")
        return _checked(
            path, names=names, colors=tuple(tuple(entry["color"]) for entry in classes),
            values=tuple(entry["value"] for entry in classes) if "index" in masks else None,
            rgb_masks="rgb" in masks, ignore_values=tuple(data.get("ignore_values", ())),
            ignore_colors=tuple(tuple(c) for c in data.get("ignore_colors", ())),
            unknown_index=names.index(unknown_name) if unknown_name is not None else None,
            name=data.get("name", path.stem))

    def to_toml(self) -> str:
        """The schema in the presets' TOML form (:meth:`from_toml` reads it back equal)."""
        masks = [kind for kind, used in (("rgb", self.rgb_masks), ("index", self.index_masks)) if used]
        lines = [f"name = {json.dumps(self.name)}", f"masks = {json.dumps(masks)}"]
        if self.ignore_values:
            lines.append(f"ignore_values = {list(self.ignore_values)}")
        if self.ignore_colors:
            lines.append(f"ignore_colors = {[list(c) for c in self.ignore_colors]}")
        if self.unknown_index is not None:
            lines.append(f"unknown = {json.dumps(self.names[self.unknown_index])}")
        for i, name in enumerate(self.names):
            lines += ["", "[[classes]]", f"name = {json.dumps(name)}"]
            if self.values is not None:
                lines.append(f"value = {self.values[i]}")
            lines.append(f"color = {list(self.colors[i])}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_file(cls, path: str | Path) -> ClassSchema:
        """A schema from a ``.toml`` file, a ``name,r,g,b`` palette or a ``value,name`` index list
        (a CSV file with a ``value`` column is an index list; columns in any order)."""
        path = Path(path)
        if path.suffix.lower() == ".toml":
            return cls.from_toml(path)
        if path.suffix.lower() != ".csv":
            raise ValueError(f"{path}: a schema file is .toml or .csv")
        if "value" in _csv_header(path):
            return cls.from_index_csv(path)
        return cls.from_class_dict_csv(path)


CSV_FORMS = ("a palette with the columns name,r,g,b (like DeepGlobe's class_dict.csv) or an index list "
             "with the columns value,name (and optionally r,g,b display colours), in any order")
"""The two CSV schema files :meth:`ClassSchema.from_file` reads."""


def _csv_header(path: Path) -> list[str]:
    """The lower-cased column names of a CSV file's first line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: schema file not found")
    with path.open(newline="") as f:
        return [h.strip().lower() for h in next(csv.reader(f), [])]


def _read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` pairs of a CSV file whose header holds every ``required`` column (in
    any order), keys lower-cased."""
    header = _csv_header(path)
    if not set(required) <= set(header):
        missing = ", ".join(sorted(set(required) - set(header)))
        raise ValueError(f"{path}: expected {CSV_FORMS}; the header {header} lacks {missing}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return [(line_no, {k.strip().lower(): (v or "").strip() for k, v in row.items() if k})
                for line_no, row in enumerate(reader, start=2)]


def _color(row: dict[str, str], path: Path, line_no: int) -> tuple[int, int, int]:
    try:
        return tuple(int(row[c]) for c in "rgb")  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"{path}:{line_no}: colour is not three integers: {row}") from None


def _checked(path: Path, **fields) -> ClassSchema:
    try:
        return ClassSchema(**fields)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def load_preset(name: str) -> ClassSchema:
    """One of the schemas shipped with the package (:data:`PRESETS`), by name."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(f"no schema preset {name!r}; the presets are {list(PRESETS)}, or give a schema file")
    return ClassSchema.from_toml(SCHEMA_DIR / f"{key}.toml")


def resolve_schema(schema: ClassSchema | str | Path) -> ClassSchema:
    """A schema given as itself, a preset's name (``"loveda"``) or the path of a schema file."""
    if isinstance(schema, ClassSchema):
        return schema
    if isinstance(schema, str) and schema.strip().lower() in PRESETS:
        return load_preset(schema)
    path = Path(schema).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{schema}: neither a schema preset ({', '.join(PRESETS)}) nor a schema file")
    return ClassSchema.from_file(path)


DEEPGLOBE = load_preset("deepglobe")
"""The DeepGlobe 2018 Land Cover classes in the challenge's order."""
