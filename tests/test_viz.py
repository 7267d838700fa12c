from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX
from lc_utils.datasets import read_pair
from lc_utils.layouts import find_pairs
from lc_utils.metrics import ConfusionMatrix
from lc_utils.sparse import sample_points
from lc_utils.viz_data import (
    CORRECT_RGB,
    UNLABELLED_GREY,
    WRONG_RGB,
    error_map,
    legend_handles,
    overlay,
    plot_class_shares,
    plot_points,
    show_pairs,
)
from lc_utils.viz_results import (
    compare_prediction,
    plot_confusion_matrix,
    plot_density_curve,
    plot_gaps,
    plot_history,
    plot_method_comparison,
)


@pytest.fixture(autouse=True)
def headless() -> None:
    matplotlib.use("Agg")


def _render(fig) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


@pytest.fixture(params=["sample", "real"])
def pair(request, sample_root: Path):
    if request.param == "real":
        folder = request.getfixturevalue("real_tiles")
        return read_pair(*find_pairs(folder)[3])
    return read_pair(*find_pairs(sample_root)[0])


def test_overlay_blends_labelled_pixels_only() -> None:
    image = np.full((2, 2, 3), 100, np.uint8)
    class_map = np.array([[4, IGNORE_INDEX], [0, 0]], np.uint8)
    out = overlay(image, class_map, alpha=0.5)
    assert tuple(out[0, 0]) == (50, 50, 178)  # halfway to water's (0, 0, 255)
    assert tuple(out[0, 1]) == (100, 100, 100)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(image, class_map[:1])


def test_error_map_colours() -> None:
    truth = np.array([[1, 2, IGNORE_INDEX]])
    prediction = np.array([[1, 3, 3]])
    out = error_map(truth, prediction)
    assert [tuple(p) for p in out[0]] == [CORRECT_RGB, WRONG_RGB, UNLABELLED_GREY]


def test_legend_has_every_class_name() -> None:
    assert [h.get_label() for h in legend_handles()] == list(DEEPGLOBE.names)


def test_show_pairs(pair) -> None:
    image, class_map = pair
    fig = show_pairs([image, image, image], [class_map] * 3, titles=["a", "b", "c"], columns=2)
    assert len(fig.axes) == 8  # 2 rows of pairs x 2 columns
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(DEEPGLOBE.names)
    assert fig.axes[0].images[0].get_array().shape == image.shape
    assert _render(fig).shape[2] == 4


def test_compare_prediction(pair) -> None:
    image, truth = pair
    prediction = np.roll(truth, 5, axis=1)
    fig = compare_prediction(image, truth, prediction, title="tile")
    assert len(fig.axes) == 6  # five panels and the legend's
    assert [ax.get_title() for ax in fig.axes][:3] == ["image", "ground truth", "prediction"]
    errors = fig.axes[4].images[0].get_array()
    assert errors.shape == image.shape
    assert [t.get_text() for t in fig.axes[5].get_legend().get_texts()] == list(DEEPGLOBE.names)
    assert fig.axes[0].spines["top"].get_visible()  # framed: white barren keeps an edge
    width, _ = fig.get_size_inches() * 100
    assert width <= 950  # fits a notebook column at 100 dpi without shrinking
    _render(fig)


def test_plot_points(pair) -> None:
    image, class_map = pair
    points = sample_points(class_map, n_points=40, strategy="stratified", seed=0)
    fig = plot_points(image, points, title="40 points")
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(offsets[:, 0], points.cols)
    np.testing.assert_array_equal(offsets[:, 1], points.rows)
    legend_names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_names == [DEEPGLOBE.names[k] for k in sorted(set(points.labels.tolist()))]
    _render(fig)


def test_plot_confusion_matrix(pair) -> None:
    _, truth = pair
    confusion = ConfusionMatrix(7)
    confusion.update(np.roll(truth, 9, axis=0), truth)
    fig = plot_confusion_matrix(confusion)
    heat = fig.axes[0].images[0].get_array()
    assert heat.shape == (7, 7) and heat.max() <= 1
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(DEEPGLOBE.names)
    _render(fig)


def test_plot_history_and_shares_and_density() -> None:
    history = [{"epoch": 1, "train_loss": 1.5, "val_mean_iou": 0.2},
               {"epoch": 2, "train_loss": 1.1, "val_mean_iou": 0.3}]
    fig = plot_history(history)
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), [0.2, 0.3])
    assert len(plot_history([{"epoch": 1, "train_loss": 1.0}]).axes) == 1
    with_baseline = plot_history(history, baseline_miou=0.1)
    assert with_baseline.axes[1].lines[1].get_ydata()[0] == 0.1
    shares = pd.DataFrame({"pixels": [0.5, 0.5], "images": [1.0, 0.4]}, index=["urban", "water"])
    fig = plot_class_shares(shares)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 2
    summary = pd.DataFrame({"strategy": ["uniform", "uniform", "dense"],
                            "labelled_fraction": [0.001, 0.01, 1.0], "miou_mean": [0.2, 0.3, 0.4],
                            "miou_sd": [0.02, 0.01, 0.03], "runs": [3, 3, 3]})
    fig = plot_density_curve(summary, baseline_miou=0.1, title="three seeds")
    ax = fig.axes[0]
    _, _, (bars,) = ax.containers[0]
    assert ax.containers[0].get_label() == "uniform points"
    whiskers = [segment[:, 1] for segment in bars.get_segments()]
    np.testing.assert_allclose(whiskers, [[0.18, 0.22], [0.29, 0.31]])
    assert [line.get_label() for line in ax.lines[-2:]] == ["dense labels", "majority class everywhere"]
    assert ax.lines[-2].get_ydata()[0] == 0.4 and ax.lines[-1].get_ydata()[0] == 0.1
    assert "3 seeds" in ax.get_legend().get_title().get_text() and ax.get_title(loc="left") == "three seeds"
    low, high = ax.get_xlim()
    assert low < 0.1 and high > 1  # the end points' error bars are not cut in half
    _render(fig)
    both = pd.concat([summary, summary.iloc[:1].assign(strategy="stratified")])
    ax = plot_density_curve(both).axes[0]
    uniform_x, stratified_x = (c.lines[0].get_xdata()[0] for c in ax.containers)
    assert 1.0 < stratified_x / uniform_x < 1.2  # side by side, not on top of each other


def test_the_method_comparison_sets_each_budget_s_bars_side_by_side() -> None:
    summary = pd.DataFrame({
        "strategy": ["uniform", "uniform", "uniform+propagation", "uniform+propagation", "dense"],
        "points_per_image": [3, 26, 3, 26, None], "points_per_mp": [10.0, 100.0, 10.0, 100.0, None],
        "labelled_fraction": [1e-5, 1e-4, 1e-5, 1e-4, 1.0], "miou_mean": [0.2, 0.3, 0.25, 0.33, 0.4],
        "miou_sd": [0.02, 0.01, 0.03, np.nan, 0.03], "runs": [3, 3, 3, 2, 3]})
    fig = plot_method_comparison(summary, baseline_miou=0.1, title="methods")
    ax = fig.axes[0]
    bars = [c for c in ax.containers if hasattr(c, "patches")]
    assert [c.get_label() for c in bars] == ["uniform", "uniform+propagation"]
    heights = [[round(p.get_height(), 6) for p in c.patches] for c in bars]
    assert heights == [[0.2, 0.3], [0.25, 0.33]]
    centres = [[p.get_x() + p.get_width() / 2 for p in c.patches] for c in bars]
    assert centres[0][0] < centres[1][0] < centres[0][1] < centres[1][1]  # grouped by budget
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001% of the pixels\n10 points per MP",
                                                            "0.01% of the pixels\n100 points per MP"]
    assert {t.get_text() for t in ax.texts} == {"0.20", "0.30", "0.25", "0.33"}
    assert ax.lines[-2].get_ydata()[0] == 0.4 and ax.lines[-1].get_ydata()[0] == 0.1
    assert ax.get_ylim()[1] > 0.4 and "3 seeds" in ax.get_legend().get_title().get_text()
    _render(fig)


def test_strategy_comparison_and_redraw_growth(pair) -> None:
    from lc_utils.sparse import pixels_labelled_by_redrawing
    from lc_utils.viz_data import compare_strategies, plot_redraw_growth

    image, class_map = pair
    fig = compare_strategies(image, class_map, n_points=30)
    assert [ax.get_title() for ax in fig.axes[1:4]] == ["uniform: 30 points", "stratified: 30 points",
                                                         "grid: 30 points"]
    slow = pixels_labelled_by_redrawing((32, 32), 2, 3000, until=0.99)
    fast = pixels_labelled_by_redrawing((32, 32), 200, 3000, until=0.99)
    fig = plot_redraw_growth({"2 points": slow, "200 points": fast})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), slow * 100)
    assert ax.lines[1].get_ydata()[0] == pytest.approx(2 / 1024 * 100)  # the fixed annotation
    first_90 = int(np.argmax(fast >= 0.9)) + 1
    assert f"after {first_90} epochs" in [t.get_text() for t in ax.texts][1]
    _render(fig)


def test_the_point_check_marks_points_the_prediction_agrees_with(pair) -> None:
    from lc_utils.viz_results import plot_point_check

    image, class_map = pair
    points = sample_points(class_map, n_points=40, seed=0)
    prediction = class_map.copy()
    wrong = points.rows[:10], points.cols[:10]
    prediction[wrong] = (class_map[wrong] + 1) % 6
    fig = plot_point_check(image, prediction, points, title="check")
    right_rings, wrong_crosses = fig.axes[1].collections
    assert len(right_rings.get_offsets()) == 30 and len(wrong_crosses.get_offsets()) == 10
    assert fig.axes[1].get_title() == "prediction: 30 agree, 10 do not"
    _render(fig)


def test_suggestions_are_ringed_on_the_uncertainty_map(pair) -> None:
    from lc_utils.viz_data import plot_suggestions

    image, class_map = pair
    points = sample_points(class_map, n_points=10, seed=0)
    unsure = np.zeros(class_map.shape, np.float32)
    unsure[:, : class_map.shape[1] // 2] = 1
    fig = plot_suggestions(image, unsure, points, (np.array([5, 20]), np.array([3, 9])), title="round 1")
    assert fig.axes[1].images[0].get_cmap().name == "magma" and fig.axes[1].images[0].get_clim() == (0, 1)
    assert fig.axes[1].collections[0].get_offsets().tolist() == [[3, 5], [9, 20]]  # (col, row)
    assert fig.axes[1].get_title() == "uncertainty, 2 suggestions"
    _render(fig)


def test_active_rounds_draw_a_line_per_selection_over_the_points_per_image() -> None:
    from lc_utils.viz_results import plot_active_rounds

    summary = pd.DataFrame({"selection": ["margin", "margin", "random", "random"], "round": [0, 1, 0, 1],
                            "points_per_image": [5, 10, 5, 10], "miou_mean": [0.2, 0.3, 0.2, 0.25],
                            "miou_sd": [0.01, np.nan, 0.01, 0.02]})
    fig = plot_active_rounds(summary, 0.09, title="rounds", budget_unit="tile")
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"margin picks", "random picks",
                                                                  "majority class everywhere"}
    assert [c.lines[0].get_ydata().tolist() for c in ax.containers] == [[0.2, 0.3], [0.2, 0.25]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10"]
    assert ax.get_xlabel() == "points per tile after the round" and ax.get_ylim()[0] == 0
    _render(fig)


def test_point_sampling_error_draws_a_band_per_model_around_the_tolerance() -> None:
    from lc_utils import point_scores
    from lc_utils.viz_results import plot_point_sampling_error

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (64, 64))
    predicted = np.where(rng.random((64, 64)) < 0.7, truth, rng.integers(0, 6, (64, 64)))
    table = point_scores.point_sampling_error([(truth, predicted)], [50, 400], repeats=40)
    fig = plot_point_sampling_error({"model a": table, "model b": table.assign(error_low=-0.1)}, 0.03,
                                    held_out=120, title="bands")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model a", "model b", "within ±0.03",
                                                                "120 held-out points"]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(table["error_low"].min())
    assert band[:, 1].max() == pytest.approx(table["error_high"].max())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "400"]
    _render(fig)


def test_active_rounds_say_the_steps_behind_each_round_and_draw_dense_masks() -> None:
    from lc_utils.active import summarize_rounds
    from lc_utils.viz_results import plot_active_rounds

    rows = [{"selection": selection, "seed": seed, "round": r, "points_per_image": budget, "steps": steps,
             "val_mean_iou": 0.2 + 0.01 * r + 0.001 * seed, **({"retrain": retrain} if r else {})}
            for selection, retrain in (("margin", False), ("pixelpick", True))
            for seed in (0, 1) for r, (budget, steps) in enumerate([(5, 1200), (10, 600), (20, 600)])]
    for row in rows:  # a retrained round trains the whole schedule again
        row["steps"] = 1200 if row.get("retrain") else row["steps"]
    summary = summarize_rounds(pd.DataFrame(rows))
    steps = summary.set_index(["selection", "round"])["model_steps"]
    assert steps["margin"].tolist() == [1200, 1800, 2400]  # each fine-tune adds to the last round's
    assert steps["pixelpick"].tolist() == [1200, 1200, 1200]  # each retrain starts again
    fig = plot_active_rounds(summary, title="rounds", budget_unit="tile", dense=(0.41, "dense masks"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5\n1,200 steps", "10\n1,800 steps",
                                                            "20\n2,400 steps"]
    assert "dense masks" in {t.get_text() for t in ax.get_legend().get_texts()}
    _render(fig)


def test_the_gaps_figure_fills_only_the_gaps_whose_interval_leaves_zero() -> None:
    """A row per gap, the table's first on top; the point filled where the interval leaves zero,
    hollow where it spans it; each seed's gap drawn on its row."""
    gaps = pd.DataFrame({"points_per_mp": [100.0, 100.0], "method": ["pseudo-labels", "consistency"],
                         "control": ["points", "points"], "gap": [-0.018, -0.088], "low": [-0.033, -0.117],
                         "high": [0.010, -0.038], "per seed": ["+0.006 / +0.034 / -0.094", "-0.042 / -0.121"]}
                        ).set_index(["points_per_mp", "method", "control"])
    fig = plot_gaps(gaps, unit=" points per MP")
    ax = fig.axes[0]
    rows = {round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert rows == {1: "100 points per MP: pseudo-labels\nvs points",
                    0: "100 points per MP: consistency vs points"}
    points = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata())]
    assert [(p.get_xdata()[0], p.get_ydata()[0]) for p in points] == [(-0.018, 1), (-0.088, 0)]
    assert points[0].get_markerfacecolor() == "white" and points[1].get_markerfacecolor() != "white"
    seeds = [line for line in ax.lines if line.get_marker() == "|" and len(line.get_xdata())]
    assert [list(s.get_xdata()) for s in seeds] == [[0.006, 0.034, -0.094], [-0.042, -0.121]]
    _render(fig)
