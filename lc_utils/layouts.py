"""Where the images and masks of a data set are: the folder layouts people have, and its schema.

Layouts that :func:`scan_dataset` detects (:func:`detect_layout`):

- ``"deepglobe"``: the Kaggle copy of DeepGlobe (``metadata.csv`` with columns ``split``,
  ``sat_image_path``, ``mask_path``, beside ``train/``, ``valid/``, ``test/``); split subfolders of
  ``<id>_sat.jpg`` + ``<id>_mask.png``; or one flat folder of them (with other endings where
  they are named: ``<id>_naip_rgb.png`` + ``<id>_lc.png`` with ``image_suffix="_naip_rgb"``,
  ``mask_suffix="_lc"``);
- ``"mmseg"``: mmsegmentation's ``img_dir/{train,val,...}`` + ``ann_dir/{train,val,...}``, or
  ``img_dir/`` + ``ann_dir/`` with the files directly inside (one split), an image and its mask
  sharing a name (Potsdam, Vaihingen and LoveDA as its converters write them);
- ``"loveda"``: LoveDA's ``{Train,Val,Test}/{Urban,Rural}/{images_png,masks_png}`` (or one split,
  or one domain folder);
- ``"folders"``: an images folder and a masks folder (``images/`` + ``masks/``, ``img/`` +
  ``labels/``, ISPRS's ``2_Ortho_RGB/`` + ``5_Labels_all/``, ...), at the top or in each split
  subfolder, an image and its mask matched by name: the same stem, or the same stem once a
  known suffix (``_RGB``, ``_sat``; ``_label``, ``_mask``, ``_gt``, ``_noBoundary``, ...) or the
  ``image_suffix`` / ``mask_suffix`` given is taken off.

Endings that are none of the known ones are named with ``image_suffix`` and ``mask_suffix`` (as
``schema`` names a schema). Nothing here reads the environment: the notebooks' parameters cells
and the commands pass ``$DATA_IMAGE_SUFFIX``, ``$DATA_MASK_SUFFIX`` and ``$DATA_SCHEMA`` on.

A folder in which no image has a mask (the challenge's ``valid/`` and ``test/``, LoveDA's
``Test/``) holds images for inference only; a folder in which some images have masks and others
do not is an error. Masks may be PNG or TIFF; a JPEG mask (``<id>_mask.jpg``) is read with a
warning (:data:`lc_utils.masks.LOSSY_MASK_HINT`).
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .classes import DEEPGLOBE, ClassSchema, load_preset, resolve_schema
from .files import IMAGE_EXTENSIONS, IMAGE_SUFFIX, MASK_SUFFIX, ImagePair, image_id_of, image_id_or_none
from .masks import JPEG_EXTENSIONS, LOSSY_MASK_HINT
from .user_warnings import warn

LAYOUTS = ("deepglobe", "mmseg", "loveda", "folders")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", *JPEG_EXTENSIONS)
IMAGE_NAME_SUFFIXES = (IMAGE_SUFFIX, "_rgb", "_irrg", "_rgbir", "_image", "_img")
"""Endings of image stems taken off to match a mask (case does not matter)."""
MASK_NAME_SUFFIXES = ("_label_noboundary", "_noboundary", MASK_SUFFIX, "_label", "_labels", "_gt",
                      "_seg", "_ann")
"""Endings of mask stems taken off to match an image, longest first (case does not matter)."""
IMAGE_FOLDER_WORDS = ("image", "img", "ortho", "top")
MASK_FOLDER_WORDS = ("mask", "label", "gt", "ann", "seg")
"""How the words of an images folder's and a masks folder's names begin ("2_Ortho_RGB" and
"5_Labels_all", "top" and "gts_for_participants", "images" and "annotations")."""
SCHEMA_FILES = ("schema.toml", "class_dict.csv", "classes.csv")
"""Files in a data folder that give its schema, the first one found wins."""


class LossyMaskWarning(UserWarning):
    """Masks are JPEG files, whose compression changed their pixel values."""


@dataclass(frozen=True)
class Sample:
    """One satellite image, its mask (``None`` for images without ground truth) and its split."""

    image_id: str
    image: Path
    mask: Path | None
    split: str


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _without_suffix(stem: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if stem.lower().endswith(suffix.lower()) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


ENDINGS_HINT = ("name the endings: find_pairs(..., image_suffix=..., mask_suffix=...), IMAGE_SUFFIX and "
                "MASK_SUFFIX in a notebook's parameters cell, or $DATA_IMAGE_SUFFIX and $DATA_MASK_SUFFIX")


def _pair_up(folder: Path, images: dict[str, Path], masks: dict[str, Path], split: str,
             mask_hint: str) -> list[Sample]:
    """Samples from id -> image and id -> mask, checking that they match."""
    orphans = sorted(set(masks) - set(images))
    if orphans:
        mask, first = masks[orphans[0]], min(images, default=None)
        example = f"; the images' ids look like {first!r} (from {images[first].name})" if images else ""
        raise ValueError(f"{folder}: {len(orphans)} mask(s) without an image, e.g. {mask.name}: read as id "
                         f"{orphans[0]!r}, and no image has that id{example}. If the names differ only in "
                         f"their endings, {ENDINGS_HINT}")
    missing = sorted(set(images) - set(masks))
    if masks and missing:
        names = ", ".join(images[i].name for i in missing[:5])
        raise FileNotFoundError(f"{folder}: {len(missing)} image(s) have no {mask_hint} mask: {names}"
                                f"{' ...' if len(missing) > 5 else ''}")
    return [Sample(i, images[i], masks.get(i), split) for i in sorted(images)]


def _add(found: dict[str, Path], key: str, path: Path, folder: Path) -> None:
    if key in found:
        raise ValueError(f"{folder}: two files for id {key!r}: {found[key].name}, {path.name}")
    found[key] = path


@dataclass(frozen=True)
class Endings:
    """The endings of image and mask names beyond their shared id (None: the layout's own)."""

    image: str | None = None
    mask: str | None = None

    @classmethod
    def given(cls, image_suffix: str | None = None, mask_suffix: str | None = None) -> Endings:
        """The endings given (an empty one counts as none)."""
        return cls(image_suffix or None, mask_suffix or None)


def _scan_deepglobe_folder(folder: Path, split: str, endings: Endings) -> list[Sample]:
    """One flat folder of ``<id><image ending>.<ext>`` + ``<id><mask ending>.png`` (``_sat`` and
    ``_mask`` unless named)."""
    image_end, mask_end = endings.image or IMAGE_SUFFIX, endings.mask or MASK_SUFFIX
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.stem.endswith(image_end):
            _add(images, path.stem[: -len(image_end)], path, folder)
        elif path.stem.endswith(mask_end) and path.suffix.lower() in MASK_EXTENSIONS:
            _add(masks, path.stem[: -len(mask_end)], path, folder)
    samples = _pair_up(folder, images, masks, split, f"<id>{mask_end}.png")
    return [Sample(image_id_of(s.image), s.image, s.mask, s.split) for s in samples]


def _scan_metadata(root: Path) -> list[Sample]:
    metadata = root / "metadata.csv"
    samples = []
    with metadata.open(newline="") as f:
        reader = csv.DictReader(f)
        needed = {"sat_image_path", "mask_path"}
        if not needed <= set(reader.fieldnames or []):
            raise ValueError(f"{metadata}: needs columns {sorted(needed)}, has {reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            image = root / row["sat_image_path"]
            mask_text = (row.get("mask_path") or "").strip()
            mask = root / mask_text if mask_text and mask_text.lower() != "nan" else None
            for path, what in ((image, "image"), (mask, "mask")):
                if path is not None and not path.is_file():
                    raise FileNotFoundError(f"{metadata}:{line_no}: {what} {path} does not exist")
            image_id = (row.get("image_id") or "").strip() or image_id_or_none(image) or image.stem
            samples.append(Sample(image_id, image, mask, (row.get("split") or "").strip()))
    return samples


def _scan_deepglobe(root: Path, endings: Endings) -> list[Sample]:
    if (root / "metadata.csv").is_file():
        return _scan_metadata(root)
    samples = _scan_deepglobe_folder(root, "", endings)
    if not samples:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            samples += _scan_deepglobe_folder(sub, sub.name, endings)
    return samples


def _scan_image_and_mask_folders(image_dir: Path, mask_dir: Path | None, split: str,
                                 endings: Endings) -> list[Sample]:
    """Images of ``image_dir`` paired by name with the masks of ``mask_dir`` (none where it is
    ``None`` or absent: images for inference only)."""
    if mask_dir is not None and not mask_dir.is_dir():
        mask_dir = None
    images: dict[str, Path] = {}
    image_suffixes = (endings.image,) if endings.image is not None else IMAGE_NAME_SUFFIXES
    for path in sorted(image_dir.iterdir()):
        if _is_image(path):
            _add(images, _without_suffix(path.stem, image_suffixes), path, image_dir)
    masks: dict[str, Path] = {}
    suffixes = (endings.mask,) if endings.mask is not None else MASK_NAME_SUFFIXES
    for path in sorted(mask_dir.iterdir()) if mask_dir is not None else ():
        if not (path.is_file() and path.suffix.lower() in MASK_EXTENSIONS):
            continue
        key = path.stem if path.stem in images else _without_suffix(path.stem, suffixes)
        _add(masks, key, path, mask_dir)
    hint = f"{mask_dir.name}/<name>{endings.mask or ''}.png" if mask_dir else "mask"
    samples = _pair_up(mask_dir or image_dir, images, masks, split, hint)
    return [Sample(image_id_of(s.image), s.image, s.mask, s.split) for s in samples]


def _scan_mmseg(root: Path, endings: Endings) -> list[Sample]:
    """``img_dir/<split>`` + ``ann_dir/<split>``; files directly in ``img_dir`` are one split ("")."""
    image_dir, mask_dir = root / "img_dir", root / "ann_dir"
    samples = []
    if any(_is_image(p) for p in image_dir.iterdir()):
        samples += _scan_image_and_mask_folders(image_dir, mask_dir, "", endings)
    for split_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        samples += _scan_image_and_mask_folders(split_dir, mask_dir / split_dir.name, split_dir.name, endings)
    return samples


def _is_loveda_domain(folder: Path) -> bool:
    """A LoveDA domain folder (``Urban``, ``Rural``): ``images_png`` and ``masks_png`` inside."""
    return (folder / "images_png").is_dir() and ((folder / "masks_png").is_dir() or folder.name.lower()
                                                 in ("urban", "rural"))


def _loveda_domains(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and _is_loveda_domain(p)]


def _scan_loveda(root: Path, endings: Endings) -> list[Sample]:
    if _is_loveda_domain(root):  # one domain: its split is the folder above (Train/Urban: train)
        return _scan_image_and_mask_folders(root / "images_png", root / "masks_png",
                                            root.resolve().parent.name.lower(), endings)
    splits = [root] if _loveda_domains(root) else [p for p in sorted(root.iterdir())
                                                    if p.is_dir() and _loveda_domains(p)]
    samples = []
    for split_dir in splits:
        for domain in _loveda_domains(split_dir):
            samples += _scan_image_and_mask_folders(domain / "images_png", domain / "masks_png",
                                                    split_dir.name.lower(), endings)
    return samples


def _named_like(folder: Path, words: tuple[str, ...]) -> bool:
    """Whether a word of the folder's name starts with one of ``words`` ("5_Labels_all": label)."""
    return any(part.startswith(words) for part in re.split(r"[^a-z0-9]+", folder.name.lower()))


def _image_and_mask_dirs(folder: Path) -> tuple[Path, Path] | None:
    """The one images folder and the one masks folder inside ``folder``, told by their names."""
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    mask_dirs = [p for p in subfolders if _named_like(p, MASK_FOLDER_WORDS)]
    image_dirs = [p for p in subfolders if _named_like(p, IMAGE_FOLDER_WORDS) and p not in mask_dirs]
    if len(image_dirs) == 1 and len(mask_dirs) == 1:
        return image_dirs[0], mask_dirs[0]
    return None


def _scan_folders(root: Path, endings: Endings) -> list[Sample]:
    if found := _image_and_mask_dirs(root):
        return _scan_image_and_mask_folders(*found, "", endings)
    samples = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if found := _image_and_mask_dirs(sub):
            samples += _scan_image_and_mask_folders(*found, sub.name, endings)
    return samples


def detect_layout(root: str | Path) -> str:
    """Which of :data:`LAYOUTS` the folder ``root`` is in (``"deepglobe"`` when nothing else fits)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    if (root / "metadata.csv").is_file():
        return "deepglobe"
    if (root / "img_dir").is_dir() and (root / "ann_dir").is_dir():
        return "mmseg"
    if (_is_loveda_domain(root) or _loveda_domains(root)
            or any(_loveda_domains(p) for p in root.iterdir() if p.is_dir())):
        return "loveda"
    if _image_and_mask_dirs(root) or any(_image_and_mask_dirs(p) for p in root.iterdir() if p.is_dir()):
        return "folders"
    return "deepglobe"


def _not_found(root: Path, layout: str, endings: Endings) -> str:
    """What a scan of ``root`` in ``layout`` looked for and did not find."""
    if layout == "mmseg":
        splits = [p.name for p in (root / "img_dir").iterdir() if p.is_dir()]
        return (f"img_dir/ holds no image file ({', '.join(IMAGE_EXTENSIONS)}) and no split folder with "
                f"images{f' (its folders: {splits})' if splits else ''}")
    if layout == "loveda":
        return "no image file in its images_png folders"
    if layout == "folders":
        return "its images folder holds no image file"
    files = sorted(p.name for p in root.iterdir() if p.is_file())[:3]
    return (f"no <id>{endings.image or IMAGE_SUFFIX}.jpg/.png/.tif file, flat or in a split folder"
            f"{f' (files here: {files})' if files else ''}")


def scan_dataset(root: str | Path, layout: str | None = None, mask_suffix: str | None = None, *,
                 image_suffix: str | None = None) -> list[Sample]:
    """Every image under ``root`` with its mask (or ``None``) and split, sorted by split then id.

    ``layout`` is one of :data:`LAYOUTS` (detected when ``None``). ``image_suffix`` and
    ``mask_suffix`` are the endings an image's and a mask's stem have beyond their shared id (say
    ``"_naip_rgb"`` and ``"_lc"``) where they are none of the known ones. Masks saved as JPEG give one
    :class:`LossyMaskWarning`.
    """
    root = Path(root)
    endings = Endings.given(image_suffix, mask_suffix)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    if layout == "deepglobe":
        samples = _scan_deepglobe(root, endings)
    elif layout == "mmseg":
        samples = _scan_mmseg(root, endings)
    elif layout == "loveda":
        samples = _scan_loveda(root, endings)
    else:
        samples = _scan_folders(root, endings)
    if not samples:
        raise FileNotFoundError(
            f"{root}: no images found as the {layout} layout: {_not_found(root, layout, endings)}. The "
            f"layouts read: <id>{IMAGE_SUFFIX}.jpg + <id>{MASK_SUFFIX}.png files (flat, in split subfolders, "
            "or with a metadata.csv); img_dir/ + ann_dir/ (mmsegmentation, with or without split "
            "folders); Train/Urban/images_png + masks_png (LoveDA); an images folder beside a masks folder. "
            f"Other endings than _sat and _mask: {ENDINGS_HINT}")
    _check_unique_ids(root, samples)
    _warn_on_jpeg_masks(root, samples)
    return sorted(samples, key=lambda s: (s.split, s.image_id))


def _check_unique_ids(root: Path, samples: list[Sample]) -> None:
    """Annotations, splits and runs key images by id: two images with one id would collide."""
    seen: dict[str, Path] = {}
    for sample in samples:
        if sample.image_id in seen:
            raise ValueError(f"{root}: two images have the id {sample.image_id!r}: {seen[sample.image_id]} "
                             f"and {sample.image}; rename one (ids are the file names without suffix)")
        seen[sample.image_id] = sample.image


def _warn_on_jpeg_masks(root: Path, samples: list[Sample]) -> None:
    jpeg = [s.mask for s in samples if s.mask is not None and s.mask.suffix.lower() in JPEG_EXTENSIONS]
    if jpeg:
        warn(f"{root}: {len(jpeg)} mask(s) are JPEG files, e.g. {jpeg[0].name}. {LOSSY_MASK_HINT}. A schema "
             "whose colours are all 0 or 255 (DeepGlobe, ISPRS) reads them by thresholding each channel at "
             "128, which recovers the classes away from class edges; any other schema refuses JPEG masks",
             LossyMaskWarning)


def find_pairs(root: str | Path, split: str | None = None, *, layout: str | None = None,
               image_suffix: str | None = None, mask_suffix: str | None = None) -> list[ImagePair]:
    """Sorted (image_path, mask_path) pairs under ``root``, optionally of one split only (endings
    as in :func:`scan_dataset`), each an :class:`~lc_utils.files.ImagePair` carrying its sample's
    ``image_id``."""
    samples = [s for s in scan_dataset(root, layout, mask_suffix, image_suffix=image_suffix)
               if s.mask is not None]
    if split is not None:
        splits = sorted({s.split for s in samples})
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise ValueError(f"{root}: no labelled images in split {split!r}; splits: {splits}")
    if not samples:
        raise FileNotFoundError(f"{root}: images found, but none has a mask")
    return sorted(ImagePair(s.image, s.mask, s.image_id) for s in samples)


def find_unlabelled_images(root: str | Path, split: str | None = None, *, image_suffix: str | None = None,
                           mask_suffix: str | None = None) -> list[Path]:
    """Images under ``root`` without a mask (for inference only), optionally of one split."""
    return sorted(s.image for s in scan_dataset(root, None, mask_suffix, image_suffix=image_suffix)
                  if s.mask is None and (split is None or s.split == split))


def images_only_copy(root: str | Path, folder: str | Path, *, image_suffix: str | None = None,
                     mask_suffix: str | None = None) -> list[ImagePair]:
    """The images of ``root`` in ``folder`` without their masks (links where the file system has
    them, else copies): a data set as someone with imagery and no masks has it. Returns the
    (image, mask) pairs of ``root``, for simulating clicks and checking scores against the masks."""
    pairs = find_pairs(root, image_suffix=image_suffix, mask_suffix=mask_suffix)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image, _ in pairs:
        target = folder / image.name
        if target.exists():
            continue
        try:
            target.symlink_to(image.resolve())
        except OSError:  # no links on this file system
            shutil.copy2(image, target)
    return pairs


def set_masks_aside(root: str | Path, folder: str | Path, *, image_suffix: str | None = None,
                    mask_suffix: str | None = None) -> tuple[Path, dict[str, Path]]:
    """The folder of images to annotate and the masks set aside from it (image id -> mask). A
    folder with masks (the sample, real tiles) gets an :func:`images_only_copy` in ``folder`` and
    its masks are returned for simulating clicks and checking scores; a folder of images alone is
    used as it is, with no masks."""
    root = Path(root)
    if not any(s.mask is not None for s in scan_dataset(root, None, mask_suffix, image_suffix=image_suffix)):
        return root, {}
    pairs = images_only_copy(root, folder, image_suffix=image_suffix, mask_suffix=mask_suffix)
    return Path(folder), {pair.image_id: pair.mask for pair in pairs}


ISPRS_NAMES = {"top_potsdam_": "potsdam", "top_mosaic_09cm_": "vaihingen"}
"""Image name beginnings of the ISPRS data sets as distributed, and their schema presets."""


def load_schema(root: str | Path, schema: ClassSchema | str | Path | None = None) -> ClassSchema:
    """The class schema of the data set in ``root``.

    ``schema`` wins when given (the parameters cells pass ``$DATA_SCHEMA`` on): a
    :class:`~lc_utils.classes.ClassSchema`, a preset's name (``"loveda"``, ``"potsdam"``, ...) or
    a schema file. Otherwise the first of :data:`SCHEMA_FILES` in ``root`` (a ``.toml`` schema,
    a ``class_dict.csv`` palette, a ``classes.csv`` palette or index list); otherwise LoveDA's for
    a LoveDA layout, Potsdam's or Vaihingen's for images named as ISPRS distributes them, and
    DeepGlobe's for the rest.
    """
    if schema:
        return resolve_schema(schema)
    root = Path(root)
    for name in SCHEMA_FILES:
        if (root / name).is_file():
            return ClassSchema.from_file(root / name)
    if not root.is_dir():
        return DEEPGLOBE
    layout = detect_layout(root)
    if layout == "loveda":
        return load_preset("loveda")
    if layout in ("folders", "mmseg"):
        for path in root.rglob("top_*"):  # one walk of the tree for both names
            for start, preset in ISPRS_NAMES.items():
                if path.name.startswith(start):
                    return load_preset(preset)
    return DEEPGLOBE
