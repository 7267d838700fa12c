"""A deterministic generator of a small DeepGlobe-format dataset: the course's embedded default.

:func:`make_standin` writes the same kind of scenes in the other layouts and schemas the course
reads (LoveDA, mmsegmentation, ISPRS folders), for tests and for trying the notebooks on them.

Each image is a map of regions at several scales (smooth random fields, one per class, and the
class with the highest field wins), painted with class-specific colour *and* texture:

- agriculture: parcels (Voronoi cells) of green, yellow or brown crops with row stripes;
- forest: dark canopy with crown-sized noise and shadows;
- rangeland and barren: close in colour (green-brown and tan), told apart mostly by texture;
- water: smooth and dark (sometimes silty brown), as lakes and the odd river;
- urban: blocks of roofs between roads; unknown: rare bright haze.

Colours overlap across classes (brown fields vs barren, dark fields vs forest, silty water vs
barren), every image gets its own tint and sensor noise, and masks carry the slight
off-value pixels along class edges that resampled real masks have, so decoding must threshold.
Class shares are drawn per image around DeepGlobe's (agriculture most, water rare, unknown rarest).
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema, resolve_schema
from .masks import class_to_rgb, encode_mask

URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN, UNKNOWN = range(7)

CLASS_SHARES = np.array([0.10, 0.55, 0.10, 0.11, 0.04, 0.09, 0.01])
"""Expected share of pixels per class over the generated dataset, in DeepGlobe order."""

SAMPLE_SIZES = {"fast": {"n_images": 64, "size": 256}, "full": {"n_images": 120, "size": 512}}
"""Size of the sample the notebooks use: fast mode (CI, a laptop CPU) and full mode (a GPU).

Fast mode's 64 images split into 45 training, 10 validation and 9 test images. With 24 (the
first size) sparse training had 17 images x 100 points to learn from and 4 validation images to
be ranked on: too few for a model to beat the majority class clearly, or for a study's rows to
differ for a reason rather than by chance."""

SMOKE_IMAGES = 12
"""Images of the sample in smoke mode (``LC_SMOKE=1``): the mode's image size, a few images."""

SAMPLE_SPLIT = "train"
_PARAMS_FILE = "sample.json"
_GENERATOR_VERSION = 1


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance noise whose features are about ``scale`` pixels across."""
    low_shape = (max(2, int(np.ceil(shape[0] / scale)) + 2), max(2, int(np.ceil(shape[1] / scale)) + 2))
    field = resize(rng.standard_normal(low_shape), shape, order=3, mode="reflect",
                   anti_aliasing=False)
    return (field - field.mean()) / (field.std() + 1e-8)


def _class_fields(rng: np.random.Generator, size: int) -> np.ndarray:
    """One multi-scale field per class: the terrain the layout is cut from."""
    scales = (size / 2.5, size / 6, size / 16)
    weights = (1.0, 0.55, 0.25)
    fields = np.stack([
        sum(w * _smooth_noise(rng, (size, size), s) for w, s in zip(weights, scales))
        for _ in range(len(CLASS_SHARES))
    ])
    # Urban and water come in compact, sharper-edged patches.
    fields[URBAN] += 0.3 * _smooth_noise(rng, (size, size), size / 24)
    fields[WATER] = 1.3 * fields[WATER] + 0.2 * _smooth_noise(rng, (size, size), size / 10)
    return fields


def _layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) class map whose shares follow this image's draw around :data:`CLASS_SHARES`."""
    target = rng.dirichlet(CLASS_SHARES * 6 + 0.02)
    if rng.random() > 0.15:
        target[UNKNOWN] = 0.0
        target /= target.sum()
    fields = _class_fields(rng, size)
    bias = np.zeros(len(CLASS_SHARES))
    for _ in range(8):
        labels = np.argmax(fields + bias[:, None, None], axis=0)
        share = np.bincount(labels.ravel(), minlength=len(bias)) / labels.size
        bias += 0.6 * (np.log(target + 1e-4) - np.log(share + 1e-4))
    labels = np.argmax(fields + bias[:, None, None], axis=0).astype(np.uint8)
    if rng.random() < 0.3:
        _add_river(rng, labels)
    return labels


def _rotated_coords(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def _add_river(rng: np.random.Generator, labels: np.ndarray) -> None:
    size = labels.shape[0]
    u, v = _rotated_coords(rng, size)
    centre = rng.uniform(0.2, 0.8) * size * np.sqrt(2) - size * 0.3
    course = centre + size * 0.08 * np.sin(2 * np.pi * u / rng.uniform(0.6, 1.5) / size
                                            + rng.uniform(0, 2 * np.pi))
    labels[np.abs(v - course) < rng.uniform(0.008, 0.025) * size] = WATER


def _texture_agriculture(rng: np.random.Generator, size: int) -> np.ndarray:
    n_parcels = max(4, int((size / 64) ** 2))
    seeds = rng.uniform(0, size, (n_parcels, 2))
    y, x = np.mgrid[0:size, 0:size]
    distance = (y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2
    parcel = np.argmin(distance, axis=-1)
    crop_colours = np.array([[88, 110, 62], [118, 128, 74], [140, 136, 90],
                             [120, 102, 76], [72, 92, 58], [152, 146, 104]], dtype=np.float64)
    colours = crop_colours[rng.integers(0, len(crop_colours), n_parcels)]
    colours += rng.normal(0, 8, colours.shape)
    angle = rng.uniform(0, np.pi, n_parcels)[parcel]
    period = rng.uniform(3, 7, n_parcels)[parcel]
    strength = rng.uniform(2, 7, n_parcels)[parcel]
    rows = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    image = colours[parcel] + (strength * rows)[..., None]
    # Field borders: a darker line where the parcel changes.
    border = np.zeros((size, size), dtype=bool)
    border[1:] |= parcel[1:] != parcel[:-1]
    border[:, 1:] |= parcel[:, 1:] != parcel[:, :-1]
    image[border] *= 0.8
    return image


def _texture_urban(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated_coords(rng, size)
    block = rng.uniform(6, 10)
    road = (np.mod(u, block * 4.3) < 2.5) | (np.mod(v, block * 3.1) < 2.5)
    cell = (np.floor(u / block).astype(int) * 7919 + np.floor(v / block).astype(int) * 104729)
    roof_colours = np.array([[150, 146, 140], [176, 170, 162], [138, 112, 98],
                             [196, 192, 186], [118, 116, 112], [96, 104, 80]], dtype=np.float64)
    roof = roof_colours[np.mod(cell, len(roof_colours))]
    gap = (np.mod(u, block) < 2.5) | (np.mod(v, block) < 2.5)
    image = np.where(gap[..., None], [[[104, 110, 90]]], roof)
    image = np.where(road[..., None], [[[128, 126, 120]]], image)
    return image + 10 * _smooth_noise(rng, (size, size), 2)[..., None]


def _texture(rng: np.random.Generator, size: int, base: tuple[float, float, float],
             amplitude: float, scale: float, shadow: float = 0.0) -> np.ndarray:
    """A base colour with one-scale luminance noise and optional dark shadows."""
    noise = _smooth_noise(rng, (size, size), scale)
    image = np.array(base)[None, None] + amplitude * noise[..., None]
    if shadow:
        image *= 1 - shadow * (noise < -0.6)[..., None]
    return image


def _paint(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    size = labels.shape[0]
    water_base = (48, 62, 70) if rng.random() < 0.6 else (112, 100, 84)
    layers = {
        URBAN: _texture_urban(rng, size),
        AGRICULTURE: _texture_agriculture(rng, size),
        RANGELAND: _texture(rng, size, (124, 122, 88), 14, 3.0),
        FOREST: _texture(rng, size, (52, 70, 44), 16, 1.6, shadow=0.35),
        WATER: _texture(rng, size, water_base, 3, 12.0),
        BARREN: _texture(rng, size, (150, 136, 108), 9, 5.0),
        UNKNOWN: _texture(rng, size, (206, 204, 200), 10, 20.0),
    }
    image = np.zeros((size, size, 3))
    for index, layer in layers.items():
        image[labels == index] = layer[labels == index]
    # Slow colour drift across the scene, an overall tint, soft optics and sensor noise.
    drift = np.stack([_smooth_noise(rng, (size, size), size / 2) for _ in range(3)], axis=-1)
    image += 6 * drift + rng.normal(0, 5, 3)
    image *= rng.uniform(0.85, 1.15)
    image = (image + np.roll(image, 1, 0) + np.roll(image, 1, 1) + np.roll(image, (1, 1), (0, 1))) / 4
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _mask_with_edge_noise(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """RGB mask whose pixels along class edges are nudged off 0/255 (never across 128)."""
    rgb = class_to_rgb(labels, DEEPGLOBE).astype(np.int16)
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    nudged = edge & (rng.random(labels.shape) < 0.5)
    offset = rng.integers(1, 100, (int(nudged.sum()), 3))
    rgb[nudged] = np.where(rgb[nudged] > 127, rgb[nudged] - offset, rgb[nudged] + offset)
    return rgb.astype(np.uint8)


def generate_pair(seed: int, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (size, size, 3) uint8 and class map (size, size) uint8 for one sample."""
    rng = np.random.default_rng([seed, index])
    labels = _layout(rng, size)
    return _paint(rng, labels), labels


def make_sample_dataset(
    root: str | Path,
    n_images: int = 24,
    size: int = 256,
    seed: int = 0,
    jpeg_quality: int = 90,
) -> Path:
    """Write a DeepGlobe-format dataset in the Kaggle layout under ``root`` and return ``root``.

    ``root/train/<id>_sat.jpg`` and ``<id>_mask.png``, ``root/class_dict.csv``,
    ``root/metadata.csv`` and ``root/sample.json`` (how it was made). The same arguments always
    give the same files; image ``i`` does not depend on ``n_images``.
    """
    if n_images < 1 or size < 32:
        raise ValueError(f"need n_images >= 1 and size >= 32, got {n_images}, {size}")
    root = Path(root)
    folder = root / SAMPLE_SPLIT
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n_images):
        image, labels = generate_pair(seed, index, size)
        mask = _mask_with_edge_noise(np.random.default_rng([seed, index, 1]), labels)
        image_id = f"{index:04d}"
        Image.fromarray(image).save(folder / f"{image_id}_sat.jpg", quality=jpeg_quality)
        Image.fromarray(mask).save(folder / f"{image_id}_mask.png")
        rows.append({"image_id": image_id, "split": SAMPLE_SPLIT,
                     "sat_image_path": f"{SAMPLE_SPLIT}/{image_id}_sat.jpg",
                     "mask_path": f"{SAMPLE_SPLIT}/{image_id}_mask.png"})
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with (root / "class_dict.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "r", "g", "b"])
        for name, color in zip(DEEPGLOBE.names, DEEPGLOBE.colors):
            writer.writerow([name, *color])
    (root / _PARAMS_FILE).write_text(json.dumps(_params(n_images, size, seed)))
    return root


def _params(n_images: int, size: int, seed: int) -> dict[str, int]:
    return {"n_images": n_images, "size": size, "seed": seed, "version": _GENERATOR_VERSION}


def is_generated_sample(root: str | Path) -> bool:
    """Whether ``root`` holds a sample this module generated (it records how, in ``sample.json``)."""
    return (Path(root) / _PARAMS_FILE).is_file()


def ensure_sample_dataset(root: str | Path, n_images: int = 24, size: int = 256,
                          seed: int = 0) -> Path:
    """Generate the sample under ``root`` unless the same one is already there; return ``root``."""
    root = Path(root)
    params_file = root / _PARAMS_FILE
    if params_file.is_file() and json.loads(params_file.read_text()) == _params(n_images, size, seed):
        return root
    if root.exists():
        for path in (root / SAMPLE_SPLIT).glob("*"):
            path.unlink()
    return make_sample_dataset(root, n_images=n_images, size=size, seed=seed)


_ISPRS_CLASSES = {URBAN: "building", AGRICULTURE: "low vegetation", RANGELAND: "clutter", FOREST: "tree",
                  WATER: "impervious surfaces", BARREN: "car", UNKNOWN: None}
STANDIN_CLASSES = {
    "LoveDA": {URBAN: "building", AGRICULTURE: "agriculture", RANGELAND: "background", FOREST: "forest",
               WATER: "water", BARREN: "barren", UNKNOWN: None},
    "ISPRS Potsdam": _ISPRS_CLASSES,
    "ISPRS Vaihingen": _ISPRS_CLASSES,  # the two ISPRS sets share their classes
}
"""Which class of a preset each generated scene class becomes (``None``: the schema's "no data")."""


def _standin_labels(labels: np.ndarray, schema: ClassSchema) -> np.ndarray:
    """A generated class map in ``schema``'s classes: by :data:`STANDIN_CLASSES` for a preset,
    else class ``i`` to ``i`` modulo the class count ("unknown" to "no data" where there is one)."""
    table = np.zeros(256, np.uint8)
    table[IGNORE_INDEX] = IGNORE_INDEX
    mapping = STANDIN_CLASSES.get(schema.name)
    has_no_data = bool(schema.ignore_values or schema.ignore_colors)
    for index in range(len(CLASS_SHARES)):
        if mapping is not None:
            name = mapping[index]
            table[index] = IGNORE_INDEX if name is None else schema.index(name)
        else:
            table[index] = IGNORE_INDEX if index == UNKNOWN and has_no_data else index % schema.num_classes
    return table[labels]


def make_standin(
    root: str | Path,
    layout: str,
    schema: ClassSchema | str = DEEPGLOBE,
    n_images: int = 24,
    size: int = 256,
    seed: int = 0,
    coding: str | None = None,
) -> Path:
    """Write generated scenes under ``root`` in one of :data:`lc_utils.layouts.LAYOUTS`, masks
    coded for ``schema`` (a schema or a preset's name); return ``root``.

    - ``"loveda"``: ``Train/`` and ``Val/`` (every fifth image), each ``Urban/`` and ``Rural/``
      (alternately), ``images_png/<n>.png`` + ``masks_png/<n>.png``;
    - ``"mmseg"``: ``img_dir/{train,val}/<name>.png`` + ``ann_dir/{train,val}/<name>.png``;
    - ``"folders"``: ISPRS Potsdam's own ``2_Ortho_RGB/top_potsdam_<a>_<b>_RGB.tif`` +
      ``5_Labels_all/top_potsdam_<a>_<b>_label.tif``;
    - ``"deepglobe"``: :func:`make_sample_dataset`'s Kaggle layout (DeepGlobe schema only).

    ``coding`` (``"rgb"`` or ``"index"``) picks the masks' coding where the schema allows both
    (RGB by default). The generated "unknown" class becomes the schema's "no data" value or colour
    where it has one. No schema file is written: the caller says which schema the data has.
    """
    schema = resolve_schema(schema)
    if layout == "deepglobe":
        if schema != DEEPGLOBE:
            raise ValueError("the deepglobe layout is written with the DeepGlobe schema only")
        return make_sample_dataset(root, n_images=n_images, size=size, seed=seed)
    coding = coding or ("rgb" if schema.rgb_masks else "index")
    if coding not in ("rgb", "index") or (coding == "rgb" and not schema.rgb_masks) or (
            coding == "index" and not schema.index_masks):
        raise ValueError(f"schema {schema.name!r} cannot write {coding!r} masks: it has "
                         f"{schema.describe_encoding()}")
    coded_as = replace(schema, rgb_masks=False, ignore_colors=()) if coding == "index" else schema
    root = Path(root)
    for index in range(n_images):
        image, labels = generate_pair(seed, index, size)
        mask = encode_mask(_standin_labels(labels, schema), coded_as)
        in_val = index % 5 == 4
        if layout == "loveda":
            folder = root / ("Val" if in_val else "Train") / ("Urban" if index % 2 else "Rural")
            image_path, mask_path = (folder / sub / f"{index}.png" for sub in ("images_png", "masks_png"))
        elif layout == "mmseg":
            name = f"{2 + index // 8}_{10 + index % 8}_0_0_{size}_{size}.png"
            split = "val" if in_val else "train"
            image_path, mask_path = (root / sub / split / name for sub in ("img_dir", "ann_dir"))
        elif layout == "folders":
            name = f"top_potsdam_{2 + index // 8}_{10 + index % 8}"
            image_path = root / "2_Ortho_RGB" / f"{name}_RGB.tif"
            mask_path = root / "5_Labels_all" / f"{name}_label.tif"
        else:
            raise ValueError(f"layout {layout!r} is not one of ('deepglobe', 'mmseg', 'loveda', 'folders')")
        for path, pixels in ((image_path, image), (mask_path, mask)):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root
