"""Figures of results: predictions against the truth, tilings, a prediction checked at clicked
points, confusion matrices, training curves, and the studies' curves and bars (label density,
methods from the same points, active rounds, the sampling error of point scores).

Like :mod:`lc_utils.viz_data`, whose panels and legends they use, every function returns a
:class:`matplotlib.figure.Figure` made without pyplot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .classes import DEEPGLOBE, ClassSchema
from .inference import Tiling
from .masks import class_to_rgb
from .metrics import ConfusionMatrix
from .sparse import PointAnnotation
from .viz_data import (
    COLUMN_WIDTH,
    CORRECT_RGB,
    WRONG_RGB,
    add_legend,
    axes_grid,
    error_map,
    legend_handles,
    overlay,
    plot_points,
    show_picture,
)


def compare_prediction(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                       schema: ClassSchema = DEEPGLOBE, title: str | None = None,
                       alpha: float = 0.45) -> Figure:
    """Image, ground truth and prediction above; prediction over the image, the error map and the
    class legend below: two rows of three, so that each panel stays legible at a notebook's width."""
    fig, axes = axes_grid(2, 3, cell=3.0, legend_space=0.3)
    panels = [(image, "image"), (class_to_rgb(truth, schema), "ground truth"),
              (class_to_rgb(prediction, schema), "prediction"),
              (overlay(image, prediction, schema, alpha), "prediction over image"),
              (error_map(truth, prediction), "errors (green right, red wrong)")]
    for ax, (picture, name) in zip(axes.ravel(), panels):
        show_picture(ax, picture, name)
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
    fig, axes = axes_grid(n_rows, n_cols, cell=2.6, legend_space=0.35)
    show_picture(axes.flat[0], image, "image")
    show_picture(axes.flat[1], class_to_rgb(truth, schema), "ground truth")
    by_name = scores.set_index("tiling") if scores is not None else None
    for ax, tiling in zip(axes.flat[2:], shown):
        title = tiling.name
        if by_name is not None:
            row = by_name.loc[tiling.name]
            title += f"\nmIoU {row['mean_iou']:.3f}, {row['seconds']:.1f} s"
        show_picture(ax, class_to_rgb(predictions[tiling.name], schema), title)
        boxes = tiling.windows(*image.shape[:2])
        if 1 < len(boxes) <= MAX_OUTLINED_WINDOWS:
            for top, left, height, width in boxes:
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor="black",
                                       linewidth=0.8, linestyle="--" if tiling.overlap else "-", alpha=0.6))
    present = np.unique(np.concatenate([truth.ravel(), *(p.ravel() for p in predictions.values())]))
    add_legend(fig, schema, [int(c) for c in present if c < schema.num_classes])
    return fig


def plot_point_check(image: np.ndarray, prediction: np.ndarray, annotation: PointAnnotation,
                     schema: ClassSchema = DEEPGLOBE, title: str | None = None, alpha: float = 0.45
                     ) -> Figure:
    """Where a model is wrong according to clicked points, without a mask: the points in their
    class colours over the image, and the prediction over the image with each point ringed in
    green where the model agrees with it and crossed in red where it does not."""
    fig, axes = axes_grid(1, 2, cell=3.6, legend_space=0.5)
    plot_points(image, annotation, schema, title=f"{len(annotation)} clicked points", ax=axes[0, 0])
    right = prediction[annotation.rows, annotation.cols] == annotation.labels
    show_picture(axes[0, 1], overlay(image, prediction, schema, alpha),
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
                       title: str | None = None, budget_unit: str = "image",
                       dense: tuple[float, str] | None = None) -> Figure:
    """Validation mIoU after each round of active labelling against the points per image then, a
    line per selection (mean over seeds, one standard deviation as error bar), the majority-class
    baseline where given. ``summary``: :func:`lc_utils.active.summarize_rounds`; where it has
    ``model_steps``, each budget's label says the optimiser steps behind its models too (an
    active selection and its control are compared at equal steps, and a model short of steps
    gains from steps as well as from points). ``dense``: (mIoU, label) of dense masks on the same
    validation images, drawn as a dashed line."""
    fig = Figure(figsize=(COLUMN_WIDTH - 0.5, 4.0), layout="constrained")
    ax = fig.subplots()
    lines = summary.groupby("selection", sort=False)
    for k, (selection, rows) in enumerate(lines):
        shift = 1.06 ** (k - (len(lines) - 1) / 2)  # side by side around each budget, none hidden
        ax.errorbar(rows["points_per_image"] * shift, rows["miou_mean"],
                    yerr=rows["miou_sd"].fillna(0), marker="o", capsize=3, label=f"{selection} picks")
    ax.set_xscale("log", base=2)
    budgets = sorted(set(summary["points_per_image"]))
    labels = [str(int(b)) for b in budgets]
    if "model_steps" in summary:
        steps = summary.groupby("points_per_image")["model_steps"].max()
        labels = [f"{label}\n{steps[b]:,.0f} steps" for label, b in zip(labels, budgets)]
    ax.set_xticks(budgets, labels)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"points per {budget_unit} after the round"
                  + (" (steps behind the round's model)" if "model_steps" in summary else ""))
    ax.set_ylabel("validation mIoU (unknown excluded)")
    if dense is not None:
        ax.axhline(dense[0], color="black", linestyle="--", label=dense[1])
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
    longest = max(len(str(label)) for label in ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3 if longest <= 30 else 2,
              title_fontsize=8,
              title=f"mean ± sd over {runs} seeds" if runs > 1 else None)
    return fig


def plot_gaps(table: pd.DataFrame, *, unit: str = "", title: str | None = None) -> Figure:
    """Each gap of a method to its control as a point with its interval over the validation tiles,
    a row each: filled where the interval leaves zero (measurable), hollow where it spans zero, and
    each seed's own gap as a small tick, so the seeds' spread shows beside the tiles'.

    ``table``: as :func:`lc_utils.records.gap_table` makes it (indexed by what names the gap, with
    columns ``gap``, ``low``, ``high`` and ``per seed``, the seeds' gaps written "+0.01 / -0.02"): a
    row is named "method vs control", after what else indexes it (numbers followed by ``unit``)."""
    labels = [_gap_label(key if isinstance(key, tuple) else (key,), unit) for key in table.index]
    fig = Figure(figsize=(7, 1.1 + 0.5 * len(table)), layout="constrained")
    ax = fig.subplots()
    rows = np.arange(len(table))[::-1]  # the table's first row on top
    for y, (_, row) in zip(rows, table.iterrows()):
        measurable = row["low"] > 0 or row["high"] < 0
        colour = "C0" if row["gap"] >= 0 else "C3"
        ax.plot([row["low"], row["high"]], [y, y], color=colour, linewidth=2)
        ax.plot(row["gap"], y, "o", color=colour, markerfacecolor=colour if measurable else "white",
                markersize=7)
        seeds = [float(part) for part in str(row.get("per seed", "")).split(" / ") if part]
        ax.plot(seeds, [y] * len(seeds), "|", color="0.3", markersize=10)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(rows, labels, fontsize=8)
    ax.set_xlabel("gap in validation mIoU (method minus its control)")
    ax.grid(alpha=0.3, axis="x")
    ax.set_ylim(-0.7, len(table) - 0.3)
    handles = [ax.plot([], [], "o-", color="C0", label="pooled gap, 90% interval over the tiles")[0],
               ax.plot([], [], "o", color="C0", markerfacecolor="white",
                       label="hollow: spans zero, not measurable")[0],
               ax.plot([], [], "|", color="0.3", markersize=10, linestyle="none", label="each seed's gap")[0]]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=2)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig


def _gap_label(key: tuple, unit: str) -> str:
    """"100 points per MP: pseudo-labels vs points" from the index (100.0, "pseudo-labels", "points")."""
    *context, method, control = key
    parts = [f"{part:g}{unit}" if isinstance(part, int | float) else str(part) for part in context]
    label = (", ".join(parts) + ": " if parts else "") + f"{method} vs {control}"
    return label.replace(" vs ", "\nvs ") if len(label) > 40 else label  # a narrow column keeps the axes wide


def plot_click_curves(summary: pd.DataFrame, *, title: str | None = None) -> Figure:
    """mIoU against clicks per tile: a panel per tile set (the tiles clicked, the tiles never
    clicked), a colour per click policy, the live head as a solid line, ilastik's recipe dashed and
    the full fine-tune as large markers; the model before any click dotted.

    ``summary``: a row per tile set, policy, learner and click count, with ``miou_mean`` and
    ``miou_sd`` (``benchmarks/simulated_person.py``'s ``summary``)."""
    tile_sets = list(dict.fromkeys(summary["tiles"]))
    policies = list(dict.fromkeys(summary["policy"]))
    fig = Figure(figsize=(7.2, 3.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tile_sets), sharey=True))
    styles = {"live head": {"linestyle": "-", "marker": "o", "markersize": 3},
              "ilastik recipe": {"linestyle": "--", "marker": None},
              "full fine-tune": {"linestyle": "none", "marker": "D", "markersize": 7}}
    for ax, tiles in zip(axes, tile_sets):
        rows = summary[summary["tiles"] == tiles]
        start = rows[rows["clicks_per_tile"] == 0]["miou_mean"]
        if len(start):
            ax.axhline(float(start.mean()), color="0.4", linestyle=":", linewidth=1)
        for k, policy in enumerate(policies):
            for learner, style in styles.items():
                line = rows[(rows["policy"] == policy) & (rows["learner"] == learner)]
                line = line.sort_values("clicks_per_tile")
                if len(line):
                    ax.plot(line["clicks_per_tile"], line["miou_mean"], color=f"C{k}", **style)
        ax.set_xscale("symlog", linthresh=1)
        counts = sorted(set(rows["clicks_per_tile"]))
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("clicks per tile")
        ax.set_title(tiles.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mIoU (unknown excluded)")
    handles = [axes[0].plot([], [], color=f"C{k}", label=policy)[0] for k, policy in enumerate(policies)]
    handles += [axes[0].plot([], [], color="0.3", label=learner, **style)[0]
                for learner, style in styles.items()]
    handles.append(axes[0].plot([], [], color="0.4", linestyle=":", label="before any click")[0])
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=4)
    if title:
        fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    return fig
