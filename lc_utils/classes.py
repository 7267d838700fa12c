"""Class schemas: names, RGB colours and which index means "unknown"."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IGNORE_INDEX = 255
"""Label value of an unlabelled pixel in every sparse label map, loss and metric."""


@dataclass(frozen=True)
class ClassSchema:
    """An ordered set of classes, each with a name and an RGB colour in the masks.

    ``unknown_index`` names the class that stands for "no information" (DeepGlobe's black
    pixels); metrics leave it out of their headline means by default.
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    unknown_index: int | None = None

    def __post_init__(self) -> None:
        names, colors = tuple(self.names), tuple(tuple(int(v) for v in c) for c in self.colors)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
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
        if len(set(colors)) != len(colors):
            raise ValueError(f"two classes share a colour: {colors}")
        if self.unknown_index is not None and not 0 <= self.unknown_index < len(names):
            raise ValueError(f"unknown_index {self.unknown_index} outside 0..{len(names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def palette(self) -> np.ndarray:
        """Colours as a (num_classes, 3) uint8 array, row i for class i."""
        return np.array(self.colors, dtype=np.uint8)

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
        """Read a palette file with a header ``name,r,g,b`` (the Kaggle DeepGlobe ``class_dict.csv``).

        Rows keep their file order. The class called ``unknown_name`` (if present) becomes the
        unknown class.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: palette file not found")
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            if header[:1] != ["name"] or not {"r", "g", "b"} <= set(header):
                raise ValueError(f"{path}: expected a header 'name,r,g,b', found {reader.fieldnames}")
            names, colors = [], []
            for line_no, row in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                try:
                    color = tuple(int(row[c]) for c in "rgb")
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: colour is not three integers: {row}") from None
                names.append(row["name"])
                colors.append(color)
        unknown = names.index(unknown_name) if unknown_name in names else None
        try:
            return cls(tuple(names), tuple(colors), unknown)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


DEEPGLOBE = ClassSchema(
    names=("urban", "agriculture", "rangeland", "forest", "water", "barren", "unknown"),
    colors=(
        (0, 255, 255),
        (255, 255, 0),
        (255, 0, 255),
        (0, 255, 0),
        (0, 0, 255),
        (255, 255, 255),
        (0, 0, 0),
    ),
    unknown_index=6,
)
"""The DeepGlobe 2018 Land Cover classes in the challenge's order."""
