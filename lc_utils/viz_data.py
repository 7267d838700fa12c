"""Figures of the data: images and masks, class shares, points on images, labels grown from
points and the points a model suggests; and the parts every figure of the course shares (the
column width, panel grids, framed pictures, class legends, overlays, the error map), which the
figures of results (:mod:`lc_utils.viz_results`) build on.

Every function returns a :class:`matplotlib.figure.Figure` made without pyplot, so nothing is
shown or kept alive behind the caller's back: a notebook shows it by ending a cell with it (or
``display(fig)``), a script saves it with ``fig.savefig``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from skimage.segmentation import find_boundaries

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .masks import (
    OffPaletteWarning,
    class_to_rgb,
    decode_mask,
    is_binary_palette,
    no_data_pixels,
)
from .sparse import PointAnnotation, annotatable, sample_points

CORRECT_RGB = (46, 160, 67)
WRONG_RGB = (214, 39, 40)
UNLABELLED_GREY = (150, 150, 150)
SUPERPIXEL_EDGE_RGB = (255, 64, 0)
"""Superpixel edges over an image: a colour no DeepGlobe class has."""
NO_DATA_RGB = (70, 70, 70)


def legend_handles(schema: ClassSchema = DEEPGLOBE, classes: Sequence[int] | None = None) -> list[Patch]:
    """One coloured patch per class (all, or only ``classes``), with a dark edge so white shows."""
    indices = range(schema.num_classes) if classes is None else classes
    return [Patch(facecolor=np.array(schema.colors[i]) / 255, edgecolor="0.3", label=schema.names[i])
            for i in indices]


def add_legend(fig: Figure, schema: ClassSchema = DEEPGLOBE, classes: Sequence[int] | None = None,
               extra: Sequence[Patch] = ()) -> None:
    """A single legend of the classes (and ``extra`` patches) below the figure's axes, four a row so
    that it never makes the figure wider than :data:`COLUMN_WIDTH`."""
    handles = [*legend_handles(schema, classes), *extra]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)


def overlay(image: np.ndarray, class_map: np.ndarray, schema: ClassSchema = DEEPGLOBE,
            alpha: float = 0.45) -> np.ndarray:
    """The image with class colours blended over it at ``alpha``; unlabelled (255) pixels untouched."""
    if image.shape[:2] != class_map.shape:
        raise ValueError(f"image {image.shape[:2]} and class map {class_map.shape} differ in size")
    colours = class_to_rgb(class_map, schema).astype(np.float32)
    blended = image.astype(np.float32) * (1 - alpha) + colours * alpha
    labelled = (class_map != IGNORE_INDEX)[..., None]
    return np.where(labelled, blended, image).round().astype(np.uint8)


def error_map(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """RGB map: green where the prediction is right, red where wrong, grey where unlabelled."""
    out = np.empty((*truth.shape, 3), np.uint8)
    out[:] = WRONG_RGB
    out[truth == prediction] = CORRECT_RGB
    out[truth == IGNORE_INDEX] = UNLABELLED_GREY
    return out


COLUMN_WIDTH = 7.5
"""The widest a figure is drawn, in inches: 750 pixels at the notebook's 100 dpi, so that a
notebook column of 600-800 pixels (a laptop with JupyterLab's file browser open) shows every figure
at 80% of its size or more, and its titles and legends stay legible."""


def axes_grid(n_rows: int, n_cols: int, cell: float = 3.2, legend_space: float = 0.6
              ) -> tuple[Figure, np.ndarray]:
    """A figure and its ``(n_rows, n_cols)`` array of square panels of ``cell`` inches (axes
    hidden until a picture is shown on them), narrowed to fit :data:`COLUMN_WIDTH`, with
    ``legend_space`` inches below for a legend."""
    cell = min(cell, COLUMN_WIDTH / n_cols)
    fig = Figure(figsize=(cell * n_cols, cell * n_rows + legend_space), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes


def show_picture(ax: Axes, picture: np.ndarray, title: str | None = None) -> None:
    """``picture`` on ``ax`` in a thin grey frame, so that white areas (barren land) keep an edge."""
    ax.set_axis_on()
    ax.imshow(picture, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("0.55")
        spine.set_linewidth(0.8)
    if title:
        ax.set_title(title, fontsize=10)


def show_pairs(images: Sequence[np.ndarray], class_maps: Sequence[np.ndarray],
               schema: ClassSchema = DEEPGLOBE, titles: Sequence[str] | None = None,
               columns: int = 3) -> Figure:
    """A grid of image / mask pairs (image above its colour-coded mask), ``columns`` pairs a row,
    with one legend."""
    n = len(images)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig, axes = axes_grid(2 * rows, columns)
    for i, (image, class_map) in enumerate(zip(images, class_maps)):
        r, c = divmod(i, columns)
        show_picture(axes[2 * r, c], image, titles[i] if titles else None)
        show_picture(axes[2 * r + 1, c], class_to_rgb(class_map, schema))
    add_legend(fig, schema)
    return fig


def plot_zoom(image: np.ndarray, class_map: np.ndarray, crop: int | None = None,
              schema: ClassSchema = DEEPGLOBE, title: str | None = None) -> Figure:
    """A whole image and its mask, beside a ``crop``-pixel window from its centre at full
    resolution (the red box; a quarter of the image's side by default, at least 64 pixels), to
    show how much detail one pixel holds."""
    height, width = class_map.shape
    crop = min(crop or max(64, min(height, width) // 4), height, width)
    top, left = (height - crop) // 2, (width - crop) // 2
    fig, axes = axes_grid(2, 2, cell=3.4)  # whole image above, the centre at full resolution below
    show_picture(axes[0, 0], image, f"{width} x {height} image")
    show_picture(axes[0, 1], class_to_rgb(class_map, schema), "its mask")
    show_picture(axes[1, 0], image[top:top + crop, left:left + crop], f"centre {crop} x {crop}, 1:1")
    show_picture(axes[1, 1], class_to_rgb(class_map[top:top + crop, left:left + crop], schema), "its mask")
    for ax in axes[0, :2]:
        ax.add_patch(Rectangle((left, top), crop, crop, fill=False, edgecolor="red", linewidth=1.5))
    if title:
        fig.suptitle(title, fontsize=11)
    add_legend(fig, schema)
    return fig


def plot_mask_decoding(mask: np.ndarray, schema: ClassSchema = DEEPGLOBE, title: str | None = None) -> Figure:
    """The mask as stored, the pixels a plain lookup misses (red; "no data" in dark grey), and the
    class map decoded (RGB masks with a 0/255 palette: with the 128 threshold), in class colours.

    An RGB mask is looked up by exact colour; an index mask is shown in grey levels (its values
    stretched to the full range, so that 1..7 are told apart) and looked up by value.
    """
    mask = np.asarray(mask)
    rgb_coded = mask.ndim == 3 and schema.rgb_masks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffPaletteWarning)
        exact = decode_mask(mask, schema, on_invalid="ignore", threshold=False)
        decoded = decode_mask(mask, schema, on_invalid="ignore")
    no_data = no_data_pixels(mask, schema)
    missed = (exact == IGNORE_INDEX) & ~no_data
    highlight = np.full((*missed.shape, 3), 235, np.uint8)
    highlight[no_data] = NO_DATA_RGB
    highlight[missed] = WRONG_RGB
    if mask.ndim == 3:
        stored, stored_title = mask, "mask as stored"
    else:
        top = max(1, int(mask.max()))
        stored = np.repeat((mask.astype(np.float64) * 255 / top).round().astype(np.uint8)[..., None], 3, -1)
        stored_title = f"index mask as stored\n(values 0..{top} as grey)"
    lookup = "exact colour" if rgb_coded else "value"
    thresholded = rgb_coded and is_binary_palette(schema)
    fig, axes = axes_grid(1, 3, cell=4)
    show_picture(axes[0, 0], stored, stored_title)
    show_picture(axes[0, 1], highlight, f"{int(missed.sum()):,} pixels the {lookup}\nlookup misses"
                                 f"{f', {int(no_data.sum()):,} no data' if no_data.any() else ''}")
    painted = class_to_rgb(decoded, schema)
    painted[no_data] = NO_DATA_RGB
    show_picture(axes[0, 2], painted, "decoded with\nthe 128 threshold" if thresholded else "decoded")
    if title:
        fig.suptitle(title, fontsize=10)
    no_data_patch = Patch(facecolor=np.array(NO_DATA_RGB) / 255, edgecolor="0.3", label="no data (ignored)")
    add_legend(fig, schema, extra=[no_data_patch] if no_data.any() else [])
    return fig


SHARE_TITLES = {"pixel_share": "share of all pixels", "image_share": "share of images holding the class",
                "pixels": "pixels", "images": "images holding the class"}
"""Readable titles for the columns of :func:`lc_utils.statistics.class_statistics`."""


def plot_class_shares(shares: pd.DataFrame, schema: ClassSchema = DEEPGLOBE) -> Figure:
    """Bar charts of each column of ``shares`` (rows = classes), coloured by class, titled in words
    (:data:`SHARE_TITLES`)."""
    fig = Figure(figsize=(min(3.6 * shares.shape[1], COLUMN_WIDTH), 3.4), layout="constrained")
    axes = fig.subplots(1, shares.shape[1], squeeze=False)[0]
    colours = [np.array(schema.colors[schema.names.index(n)]) / 255 if n in schema.names else "0.5"
               for n in shares.index]
    for ax, column in zip(axes, shares.columns):
        ax.bar(range(len(shares)), shares[column], color=colours, edgecolor="0.3")
        ax.set_xticks(range(len(shares)), shares.index, rotation=45, ha="right")
        ax.set_title(SHARE_TITLES.get(column, str(column).replace("_", " ")), fontsize=11)
        ax.grid(axis="y", alpha=0.3)
    return fig


def point_marker_size(n_points: int) -> float:
    """Marker area (points squared) for ``n_points`` on one panel: 18 up to 200 points, smaller
    beyond, so that thousands of points on a large image do not hide it."""
    return float(np.clip(18 * np.sqrt(200 / max(1, n_points)), 1.0, 18.0))


def plot_points(image: np.ndarray, annotation: PointAnnotation, schema: ClassSchema = DEEPGLOBE,
                title: str | None = None, ax: Axes | None = None, marker_size: float | None = None) -> Figure:
    """The image with each labelled point drawn in its class colour (dark edge for contrast, left
    off when the markers are small); ``marker_size`` defaults to :func:`point_marker_size`."""
    own_figure = ax is None
    if ax is None:
        fig, axes = axes_grid(1, 1, cell=5)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    show_picture(ax, image, title)
    colours = schema.palette[annotation.labels] / 255 if len(annotation) else np.zeros((0, 3))
    size = point_marker_size(len(annotation)) if marker_size is None else marker_size
    ax.scatter(annotation.cols, annotation.rows, c=colours, s=size, edgecolors="black",
               linewidths=0.6 if size >= 8 else 0.0)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    if own_figure:
        add_legend(fig, schema, sorted(set(annotation.labels.tolist())) or None)
    return fig


def plot_suggestions(image: np.ndarray, uncertainty: np.ndarray, annotation: PointAnnotation,
                     suggested: tuple[np.ndarray, np.ndarray], schema: ClassSchema = DEEPGLOBE,
                     title: str | None = None) -> Figure:
    """Where to label next: the image with its points, and the model's uncertainty (dark: sure,
    bright: unsure) with the suggested pixels ringed in white."""
    fig, axes = axes_grid(1, 2, cell=3.6, legend_space=0.5)
    plot_points(image, annotation, schema, title=f"{len(annotation)} points so far", ax=axes[0, 0])
    show_picture(axes[0, 1], uncertainty, f"uncertainty, {len(suggested[0])} suggestions")
    axes[0, 1].images[0].set(cmap="magma", clim=(0, 1))
    axes[0, 1].scatter(suggested[1], suggested[0], s=60, facecolors="none", edgecolors="white",
                       linewidths=1.8)
    axes[0, 1].set_xlim(-0.5, image.shape[1] - 0.5)
    axes[0, 1].set_ylim(image.shape[0] - 0.5, -0.5)
    add_legend(fig, schema, sorted(set(annotation.labels.tolist())) or None)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_annotation_summary(image: np.ndarray, class_map: np.ndarray, annotation: PointAnnotation,
                            schema: ClassSchema = DEEPGLOBE, title: str | None = None) -> Figure:
    """Points over the image, and per class the share of pixels next to the share of points."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.9), layout="constrained")
    ax_image, ax_bars = fig.subplots(1, 2, width_ratios=[1.1, 1])
    ax_image.set_axis_off()
    share = len(annotation) / class_map.size
    plot_points(image, annotation, schema, ax=ax_image,
                title=f"{title + ': ' if title else ''}{len(annotation):,} points ({share:.3%} of pixels)")
    n = schema.num_classes
    pixel_share = np.bincount(class_map.ravel(), minlength=256)[:n] / max(1, class_map.size)
    point_share = np.bincount(annotation.labels, minlength=n)[:n] / max(1, len(annotation))
    x = np.arange(n)
    colours = schema.palette / 255
    ax_bars.bar(x - 0.2, pixel_share, 0.4, color=colours, edgecolor="0.3", alpha=0.5)
    ax_bars.bar(x + 0.2, point_share, 0.4, color=colours, edgecolor="black", hatch="//")
    ax_bars.set_xticks(x, schema.names, rotation=45, ha="right")
    ax_bars.set_ylabel("share")
    ax_bars.set_title("class shares: pixels (plain)\nand labelled points (hatched)", fontsize=10)
    ax_bars.legend(handles=[Patch(facecolor="0.85", edgecolor="0.3", label="pixels"),
                            Patch(facecolor="0.85", edgecolor="black", hatch="//", label="points")])
    ax_bars.grid(axis="y", alpha=0.3)
    return fig


def compare_strategies(image: np.ndarray, class_map: np.ndarray, n_points: int,
                       strategies: Sequence[str] = ("uniform", "stratified", "grid"),
                       schema: ClassSchema = DEEPGLOBE, seed: int = 0) -> Figure:
    """The ground truth and the same image annotated by each strategy with ``n_points`` points,
    two panels a row."""
    rows = (len(strategies) + 2) // 2
    fig, axes = axes_grid(rows, 2, cell=3.4)
    panels = axes.ravel()
    show_picture(panels[0], class_to_rgb(class_map, schema), "ground truth")
    for ax, strategy in zip(panels[1:], strategies):
        points = sample_points(annotatable(class_map, schema), n_points=n_points, strategy=strategy,
                               seed=seed)
        plot_points(image, points, schema, ax=ax, title=f"{strategy}: {len(points):,} points")
    add_legend(fig, schema)
    return fig


def plot_propagation(image: np.ndarray, segments: np.ndarray | None, annotation: PointAnnotation,
                     label_map: np.ndarray, truth: np.ndarray | None = None,
                     schema: ClassSchema = DEEPGLOBE, title: str | None = None) -> Figure:
    """Labels grown from points (spread over superpixels, or pseudo-labels): the image with the
    points (and the superpixels' edges, where ``segments`` are given), the labels over the image,
    and (with ``truth``) the true mask and where the labels are right (green), wrong (red) or
    absent (grey)."""
    fig, axes = axes_grid(2 if truth is not None else 1, 2, cell=3.4)
    panels = axes.ravel()
    edges = image.copy()
    points_title = f"{len(annotation):,} points"
    if segments is not None:
        edges[find_boundaries(segments, mode="inner")] = SUPERPIXEL_EDGE_RGB
        points_title = f"{int(segments.max()):,} superpixels, {points_title}"
    plot_points(edges, annotation, schema, ax=panels[0], title=points_title)
    share = float(np.mean(label_map != IGNORE_INDEX))
    show_picture(panels[1], overlay(image, label_map, schema, alpha=0.6), f"labels: {share:.1%} of pixels")
    if truth is not None:
        show_picture(panels[2], class_to_rgb(truth, schema), "ground truth")
        errors = error_map(truth, label_map)
        errors[label_map == IGNORE_INDEX] = UNLABELLED_GREY
        scored = label_map != IGNORE_INDEX
        if schema.unknown_index is not None:
            scored &= truth != schema.unknown_index
        precision = float(np.mean(label_map[scored] == truth[scored])) if scored.any() else float("nan")
        show_picture(panels[3], errors, f"right (green) / wrong (red): {precision:.1%} right")
    if title:
        fig.suptitle(title, fontsize=11)
    present = np.unique(np.concatenate([annotation.labels, truth.ravel() if truth is not None else []]))
    add_legend(fig, schema, [int(c) for c in present if c < schema.num_classes])
    return fig


def plot_redraw_growth(curves: Mapping[str, np.ndarray], mark: float = 0.9) -> Figure:
    """Share of distinct pixels labelled against the number of redraws (one per epoch), for each
    named curve of :func:`lc_utils.sparse.pixels_labelled_by_redrawing`, on a log axis so that a
    slow density and a fast one both reach their saturation; each curve's first share (one fixed
    annotation) is a dashed line, and the epoch where it passes ``mark`` is marked."""
    fig = Figure(figsize=(7, 4.4), layout="constrained")
    ax = fig.subplots()
    for (name, shares), colour in zip(curves.items(), ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        epochs = np.arange(1, len(shares) + 1)
        ax.plot(epochs, shares * 100, color=colour, label=f"{name}, redrawn every epoch")
        ax.axhline(shares[0] * 100, color=colour, linestyle="--", linewidth=1,
                   label=f"{name}, fixed: {shares[0]:.2%}")
        passed = np.flatnonzero(shares >= mark)
        if len(passed):
            at = int(passed[0])
            ax.plot(epochs[at], shares[at] * 100, "o", color=colour)
            ax.annotate(f"{shares[at]:.0%} after {at + 1:,} epochs", (epochs[at], shares[at] * 100),
                        textcoords="offset points", xytext=(6, -14), color=colour, fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(0.8, 4 * max(len(shares) for shares in curves.values()))  # room for the labels
    ax.set_ylim(0, 105)
    ax.set_xlabel("epochs (one redraw per epoch, log scale)")
    ax.set_ylabel("pixels that got a label (%)")
    ax.set_title("Redrawing the points: the labels seen grow towards every pixel")
    ax.grid(alpha=0.3, which="both")
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    return fig
