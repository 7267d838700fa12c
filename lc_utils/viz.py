"""Figures: overlays, legends, points, error maps, confusion matrices and training curves.

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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from skimage.segmentation import find_boundaries

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .inference import Tiling
from .masks import (
    OffPaletteWarning,
    class_to_rgb,
    decode_mask,
    is_binary_palette,
    no_data_pixels,
)
from .metrics import ConfusionMatrix
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


def _axes_grid(n_rows: int, n_cols: int, cell: float = 3.2, legend_space: float = 0.6):
    """A grid of square panels of ``cell`` inches, narrowed to fit :data:`COLUMN_WIDTH`."""
    cell = min(cell, COLUMN_WIDTH / n_cols)
    fig = Figure(figsize=(cell * n_cols, cell * n_rows + legend_space), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes


def _show(ax: Axes, picture: np.ndarray, title: str | None = None) -> None:
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
    fig, axes = _axes_grid(2 * rows, columns)
    for i, (image, class_map) in enumerate(zip(images, class_maps)):
        r, c = divmod(i, columns)
        _show(axes[2 * r, c], image, titles[i] if titles else None)
        _show(axes[2 * r + 1, c], class_to_rgb(class_map, schema))
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
    fig, axes = _axes_grid(2, 2, cell=3.4)  # whole image above, the centre at full resolution below
    _show(axes[0, 0], image, f"{width} x {height} image")
    _show(axes[0, 1], class_to_rgb(class_map, schema), "its mask")
    _show(axes[1, 0], image[top:top + crop, left:left + crop], f"centre {crop} x {crop}, 1:1")
    _show(axes[1, 1], class_to_rgb(class_map[top:top + crop, left:left + crop], schema), "its mask")
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
    fig, axes = _axes_grid(1, 3, cell=4)
    _show(axes[0, 0], stored, stored_title)
    _show(axes[0, 1], highlight, f"{int(missed.sum()):,} pixels the {lookup}\nlookup misses"
                                 f"{f', {int(no_data.sum()):,} no data' if no_data.any() else ''}")
    painted = class_to_rgb(decoded, schema)
    painted[no_data] = NO_DATA_RGB
    _show(axes[0, 2], painted, "decoded with\nthe 128 threshold" if thresholded else "decoded")
    if title:
        fig.suptitle(title, fontsize=10)
    no_data_patch = Patch(facecolor=np.array(NO_DATA_RGB) / 255, edgecolor="0.3", label="no data (ignored)")
    add_legend(fig, schema, extra=[no_data_patch] if no_data.any() else [])
    return fig


def compare_prediction(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                       schema: ClassSchema = DEEPGLOBE, title: str | None = None,
                       alpha: float = 0.45) -> Figure:
    """Image, ground truth and prediction above; prediction over the image, the error map and the
    class legend below: two rows of three, so that each panel stays legible at a notebook's width."""
    fig, axes = _axes_grid(2, 3, cell=3.0, legend_space=0.3)
    panels = [(image, "image"), (class_to_rgb(truth, schema), "ground truth"),
              (class_to_rgb(prediction, schema), "prediction"),
              (overlay(image, prediction, schema, alpha), "prediction over image"),
              (error_map(truth, prediction), "errors (green right, red wrong)")]
    for ax, (picture, name) in zip(axes.ravel(), panels):
        _show(ax, picture, name)
    axes[1, 2].legend(handles=legend_handles(schema), loc="center", frameon=False, fontsize=10,
                      title="classes", title_fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


MAX_OUTLINED_WINDOWS = 49
"""More windows than this are not outlined: their outlines would hide the prediction."""


def plot_tilings(image: np.ndarray, truth: np.ndarray, predictions: Mapping[str, np.ndarray],
                 tilings: Sequence[Tiling], schema: ClassSchema = DEEPGLOBE,
                 scores: pd.DataFrame | None = None) -> Figure:
    """The image, its truth, and its prediction under each tiling with the windows' outlines (dark,
    dashed where windows overlap; none beyond :data:`MAX_OUTLINED_WINDOWS`), titled with the
    tiling's mIoU and seconds from ``scores`` (:func:`lc_utils.inference.compare_tilings`): seams
    show as straight class edges that follow an outline."""
    shown = [t for t in tilings if t.name in predictions]
    n_cols = 3
    n_rows = -(-(len(shown) + 2) // n_cols)
    fig, axes = _axes_grid(n_rows, n_cols, cell=2.6, legend_space=0.35)
    _show(axes.flat[0], image, "image")
    _show(axes.flat[1], class_to_rgb(truth, schema), "ground truth")
    by_name = scores.set_index("tiling") if scores is not None else None
    for ax, tiling in zip(axes.flat[2:], shown):
        title = tiling.name
        if by_name is not None:
            row = by_name.loc[tiling.name]
            title += f"\nmIoU {row['mean_iou']:.3f}, {row['seconds']:.1f} s"
        _show(ax, class_to_rgb(predictions[tiling.name], schema), title)
        boxes = tiling.windows(*image.shape[:2])
        if 1 < len(boxes) <= MAX_OUTLINED_WINDOWS:
            for top, left, height, width in boxes:
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor="black",
                                       linewidth=0.8, linestyle="--" if tiling.overlap else "-", alpha=0.6))
    present = np.unique(np.concatenate([truth.ravel(), *(p.ravel() for p in predictions.values())]))
    add_legend(fig, schema, [int(c) for c in present if c < schema.num_classes])
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
        fig, axes = _axes_grid(1, 1, cell=5)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    _show(ax, image, title)
    colours = schema.palette[annotation.labels] / 255 if len(annotation) else np.zeros((0, 3))
    size = point_marker_size(len(annotation)) if marker_size is None else marker_size
    ax.scatter(annotation.cols, annotation.rows, c=colours, s=size, edgecolors="black",
               linewidths=0.6 if size >= 8 else 0.0)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    if own_figure:
        add_legend(fig, schema, sorted(set(annotation.labels.tolist())) or None)
    return fig


def plot_point_check(image: np.ndarray, prediction: np.ndarray, annotation: PointAnnotation,
                     schema: ClassSchema = DEEPGLOBE, title: str | None = None, alpha: float = 0.45
                     ) -> Figure:
    """Where a model is wrong according to clicked points, without a mask: the points in their
    class colours over the image, and the prediction over the image with each point ringed in
    green where the model agrees with it and crossed in red where it does not."""
    fig, axes = _axes_grid(1, 2, cell=3.6, legend_space=0.5)
    plot_points(image, annotation, schema, title=f"{len(annotation)} clicked points", ax=axes[0, 0])
    right = prediction[annotation.rows, annotation.cols] == annotation.labels
    _show(axes[0, 1], overlay(image, prediction, schema, alpha),
          f"prediction: {int(right.sum())} agree, {int((~right).sum())} do not")
    axes[0, 1].scatter(annotation.cols[right], annotation.rows[right], s=40, facecolors="none",
                       edgecolors=np.array(CORRECT_RGB) / 255, linewidths=1.6)
    axes[0, 1].scatter(annotation.cols[~right], annotation.rows[~right], s=48, marker="x",
                       c=[np.array(WRONG_RGB) / 255], linewidths=2.0)
    for ax in axes.ravel():
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
    add_legend(fig, schema, sorted(set(annotation.labels.tolist()) | set(np.unique(prediction).tolist())))
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_suggestions(image: np.ndarray, uncertainty: np.ndarray, annotation: PointAnnotation,
                     suggested: tuple[np.ndarray, np.ndarray], schema: ClassSchema = DEEPGLOBE,
                     title: str | None = None) -> Figure:
    """Where to label next: the image with its points, and the model's uncertainty (dark: sure,
    bright: unsure) with the suggested pixels ringed in white."""
    fig, axes = _axes_grid(1, 2, cell=3.6, legend_space=0.5)
    plot_points(image, annotation, schema, title=f"{len(annotation)} points so far", ax=axes[0, 0])
    _show(axes[0, 1], uncertainty, f"uncertainty, {len(suggested[0])} suggestions")
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
    fig, axes = _axes_grid(rows, 2, cell=3.4)
    panels = axes.ravel()
    _show(panels[0], class_to_rgb(class_map, schema), "ground truth")
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
    fig, axes = _axes_grid(2 if truth is not None else 1, 2, cell=3.4)
    panels = axes.ravel()
    edges = image.copy()
    points_title = f"{len(annotation):,} points"
    if segments is not None:
        edges[find_boundaries(segments, mode="inner")] = SUPERPIXEL_EDGE_RGB
        points_title = f"{int(segments.max()):,} superpixels, {points_title}"
    plot_points(edges, annotation, schema, ax=panels[0], title=points_title)
    share = float(np.mean(label_map != IGNORE_INDEX))
    _show(panels[1], overlay(image, label_map, schema, alpha=0.6), f"labels: {share:.1%} of pixels")
    if truth is not None:
        _show(panels[2], class_to_rgb(truth, schema), "ground truth")
        errors = error_map(truth, label_map)
        errors[label_map == IGNORE_INDEX] = UNLABELLED_GREY
        scored = label_map != IGNORE_INDEX
        if schema.unknown_index is not None:
            scored &= truth != schema.unknown_index
        precision = float(np.mean(label_map[scored] == truth[scored])) if scored.any() else float("nan")
        _show(panels[3], errors, f"right (green) / wrong (red): {precision:.1%} right")
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


def plot_confusion_matrix(confusion: ConfusionMatrix, normalize: bool = True,
                          title: str | None = None) -> Figure:
    """Heat map of the confusion matrix, each row divided by its sum (recall on the diagonal)."""
    values = confusion.normalized() if normalize else confusion.matrix.astype(float)
    names = confusion.class_names
    width = min(1.0 * len(names) + 2, COLUMN_WIDTH)
    fig = Figure(figsize=(width, 0.9 * width - 0.3), layout="constrained")
    ax = fig.subplots()
    shown = np.nan_to_num(values, nan=0.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for (r, c), v in np.ndenumerate(values):
        if not np.isnan(v):
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            ax.text(c, r, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[r, c] > 0.6 * (shown.max() or 1) else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix, rows normalised" if normalize else "confusion matrix"))
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_history(history: Sequence[Mapping[str, float]] | pd.DataFrame,
                 baseline_miou: float | None = None) -> Figure:
    """Training loss and (when present) validation mean IoU per epoch, with an optional
    reference line (e.g. the majority-class baseline) on the mIoU plot."""
    frame = pd.DataFrame(history)
    has_val = "val_mean_iou" in frame
    fig = Figure(figsize=(COLUMN_WIDTH if has_val else 4.5, 3.3), layout="constrained")
    axes = fig.subplots(1, 2 if has_val else 1, squeeze=False)[0]
    axes[0].plot(frame["epoch"], frame["train_loss"], marker="o")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("partial cross-entropy")
    axes[0].set_title("training loss (labelled pixels)")
    if has_val:
        axes[1].plot(frame["epoch"], frame["val_mean_iou"], marker="o", color="tab:green")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("mean IoU")
        axes[1].set_title("validation mIoU (unknown excluded)")
        if baseline_miou is not None:
            axes[1].axhline(baseline_miou, color="black", linestyle="--", label="majority-class baseline")
            axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
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


DENSITY_DODGE = 0.025
"""How far apart (in decades) :func:`plot_density_curve` draws strategies at the same density."""


def plot_density_curve(summary: pd.DataFrame, baseline_miou: float | None = None, *,
                       dense: str = "dense", title: str | None = None) -> Figure:
    """Validation mIoU against the labelled fraction (log scale): one line per strategy with the
    mean over seeds and error bars of one standard deviation, the dense-label mean as a dashed
    line with its band, and the majority-class baseline where given.

    ``summary``: one row per setting with columns ``strategy``, ``labelled_fraction``,
    ``miou_mean``, ``miou_sd`` and ``runs``, as :func:`lc_utils.study.summarize` makes; the
    dense-label row has ``strategy == dense``.
    """
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    groups = list(summary[summary["strategy"] != dense].groupby("strategy", sort=False))
    for k, (strategy, rows) in enumerate(groups):
        # strategies at one density are drawn side by side, a few percent apart, so that no
        # error bar hides another
        dodge = 10 ** (DENSITY_DODGE * (k - (len(groups) - 1) / 2))
        ax.errorbar(rows["labelled_fraction"] * 100 * dodge, rows["miou_mean"],
                    yerr=rows["miou_sd"].fillna(0), marker="o", capsize=3, label=f"{strategy} points")
    dense_rows = summary[summary["strategy"] == dense]
    if len(dense_rows):
        mean, sd = float(dense_rows["miou_mean"].iloc[0]), float(np.nan_to_num(dense_rows["miou_sd"].iloc[0]))
        ax.axhline(mean, color="black", linestyle="--", label="dense labels")
        if sd > 0:
            ax.axhspan(mean - sd, mean + sd, color="black", alpha=0.08)
    if baseline_miou is not None:
        ax.axhline(baseline_miou, color="0.5", linestyle=":", label="majority class everywhere")
    ax.set_xscale("log")
    percents = summary.loc[summary["strategy"] != dense, "labelled_fraction"] * 100
    if len(percents):  # room for the end points' error bars; ticks at whole decades (0.01%, 0.1%, 1%)
        ax.set_xlim(percents.min() / 2, percents.max() * 2)
        ax.xaxis.set_major_locator(LogLocator(base=10))
        if percents.max() / percents.min() < 10:  # less than a decade: tick the densities themselves
            ax.set_xticks(sorted(set(percents.round(6))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.2g}%"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("labelled pixels")
    ax.set_ylabel("validation mIoU (unknown excluded)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    runs = int(summary["runs"].max())
    ax.legend(fontsize=8, loc="lower right", title=f"mean ± sd over {runs} seeds" if runs > 1 else None,
              title_fontsize=8)
    return fig


def plot_active_rounds(summary: pd.DataFrame, baseline_miou: float | None = None, *,
                       title: str | None = None, budget_unit: str = "image") -> Figure:
    """Validation mIoU after each round of active labelling against the points per image then, a
    line per selection (mean over seeds, one standard deviation as error bar), the majority-class
    baseline where given. ``summary``: :func:`lc_utils.active.summarize_rounds`."""
    fig = Figure(figsize=(COLUMN_WIDTH - 0.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for k, (selection, rows) in enumerate(summary.groupby("selection", sort=False)):
        ax.errorbar(rows["points_per_image"] * (1.03 if k else 0.97), rows["miou_mean"],  # apart, not hidden
                    yerr=rows["miou_sd"].fillna(0), marker="o", capsize=3, label=f"{selection} picks")
    ax.set_xscale("log", base=2)
    budgets = sorted(set(summary["points_per_image"]))
    ax.set_xticks(budgets, [str(int(b)) for b in budgets])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"points per {budget_unit} after the round")
    ax.set_ylabel("validation mIoU (unknown excluded)")
    if baseline_miou is not None:
        ax.axhline(baseline_miou, color="0.5", linestyle=":", label="majority class everywhere")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_point_sampling_error(sampling: Mapping[str, pd.DataFrame], tolerance: float = 0.03, *,
                              held_out: int | None = None, title: str | None = None) -> Figure:
    """How far a point mIoU strays from the masks' mIoU against the number of held-out points: a
    band per model (the central range of the draws), the tolerance shaded around zero, and a
    line at the ``held_out`` points a run had where given.
    ``sampling``: a label per model -> :func:`lc_utils.point_scores.point_sampling_error`'s table."""
    fig = Figure(figsize=(COLUMN_WIDTH - 0.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for k, (label, table) in enumerate(sampling.items()):
        ax.fill_between(table["n_points"], table["error_low"], table["error_high"], alpha=0.25,
                        color=f"C{k}", label=label)
        for edge in ("error_low", "error_high"):
            ax.plot(table["n_points"], table[edge], color=f"C{k}", lw=1)
    ax.axhspan(-tolerance, tolerance, color="black", alpha=0.08, label=f"within ±{tolerance}")
    ax.axhline(0, color="black", lw=0.8)
    if held_out is not None:
        ax.axvline(held_out, color="0.3", linestyle="--", lw=1, label=f"{held_out:,} held-out points")
    ax.set_xscale("log")
    sizes = sorted({int(n) for table in sampling.values() for n in table["n_points"]})
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("uniform held-out points on the validation images")
    ax.set_ylabel("point mIoU minus mask mIoU")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def plot_method_comparison(summary: pd.DataFrame, baseline_miou: float | None = None, *,
                           dense: str = "dense", title: str | None = None) -> Figure:
    """Validation mIoU of each way to train from the same points, side by side at each label
    budget: a bar per setting (mean over seeds, one standard deviation as error bar, the mean
    written above it), the dense-label mean as a dashed line with its band and the majority-class
    baseline where given.

    ``summary``: as :func:`lc_utils.study.summarize` makes it (columns ``strategy``,
    ``points_per_image``, ``points_per_mp``, ``labelled_fraction``, ``miou_mean``, ``miou_sd``,
    ``runs``)."""
    points = summary[summary["strategy"] != dense]
    per_mp = points["points_per_mp"] if "points_per_mp" in points else pd.Series(np.nan, index=points.index)
    budget = per_mp.fillna(points["points_per_image"].astype(float))
    budgets = sorted(set(budget))
    settings = list(dict.fromkeys(points["strategy"]))
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(settings), 1)
    for k, setting in enumerate(settings):
        rows = points[points["strategy"] == setting]
        x = np.array([budgets.index(b) for b in budget[rows.index]]) + (k - (len(settings) - 1) / 2) * width
        sd = rows["miou_sd"].fillna(0)
        ax.bar(x, rows["miou_mean"], width * 0.9, yerr=sd, capsize=3, label=setting, color=f"C{k}")
        for x_k, mean, top in zip(x, rows["miou_mean"], rows["miou_mean"] + sd):
            ax.annotate(f"{mean:.2f}", (x_k, top), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7)
    dense_rows = summary[summary["strategy"] == dense]
    if len(dense_rows):
        mean, sd = float(dense_rows["miou_mean"].iloc[0]), float(np.nan_to_num(dense_rows["miou_sd"].iloc[0]))
        ax.axhline(mean, color="black", linestyle="--", label=f"dense labels ({mean:.2f})")
        if sd > 0:
            ax.axhspan(mean - sd, mean + sd, color="black", alpha=0.08)
    if baseline_miou is not None:
        ax.axhline(baseline_miou, color="0.5", linestyle=":", label="majority class everywhere")
    fractions = points.groupby(budget)["labelled_fraction"].mean()
    ax.set_xticks(range(len(budgets)), [
        f"{fractions[b] * 100:.2g}% of the pixels\n"
        + (f"{b:,.0f} points per MP" if pd.notna(per_mp[budget == b].iloc[0]) else f"{b:,.0f} per image")
        for b in budgets])
    ax.set_xlim(-0.5, len(budgets) - 0.5)
    ax.set_ylabel("validation mIoU (unknown excluded)")
    top = max([*(points["miou_mean"] + points["miou_sd"].fillna(0)), *dense_rows["miou_mean"]], default=1.0)
    ax.set_ylim(0, top * 1.12)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    runs = int(summary["runs"].max())
    # below the axes: above the bars it hides their values
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, title_fontsize=8,
              title=f"mean ± sd over {runs} seeds" if runs > 1 else None)
    return fig
