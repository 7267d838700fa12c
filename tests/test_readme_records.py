"""Numbers the README and the notebooks quote from the committed records under benchmarks/results/,
read back from those records: the figures and their captions, and the prose around the tables
(the tables themselves are checked beside their benchmarks)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from lc_utils import records, study, windows
from lc_utils.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
README = PROJECT_ROOT / "README.md"
FIGURE = re.compile(r"!\[[^\]\n]+\]\(benchmarks/results/(\w+)\.png\)\n\n\*(.+)\*\n")


def _record(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _prose(text: str) -> str:
    """``text`` with every run of white space made one space, as a reader sees it."""
    return " ".join(text.split())


def _readme() -> str:
    return _prose(README.read_text())


def _cell(notebook: str, start: str) -> str:
    """The source of the first cell of ``notebook`` that starts with ``start`` ("" for the title)."""
    cells = nbformat.read(PROJECT_ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
    return next(c.source for c in cells if c.source.startswith(start))


def _numbers(value: Any) -> Iterator[float]:
    """Every number anywhere in a record."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def test_the_readme_shows_the_real_tile_figures_with_captions_from_their_records() -> None:
    """Each figure is a committed PNG, its caption cites the record beside it, and every decimal
    number in the caption is one of that record's numbers, rounded as quoted."""
    figures = FIGURE.findall(README.read_text())
    assert {name for name, _ in figures} >= {"label_density_deepglobe", "more_from_points_deepglobe",
                                              "active_deepglobe", "scores_from_points_deepglobe"}
    for name, caption in figures:
        assert (RESULTS / f"{name}.png").is_file(), name
        assert caption.endswith(f"`benchmarks/results/{name}.json`."), name
        values = list(_numbers(_record(name)))
        quoted = re.findall(r"(?<![\d.])(\d+\.\d+)(?![\d%])", caption)
        assert quoted or name == "real_tile_recipe", name
        for number in quoted:
            places = len(number.split(".")[1])
            assert any(round(v, places) == float(number) for v in values), (name, number)


def test_fast_modes_speed_is_what_the_inference_record_measured() -> None:
    """The record times inference alone (a whole original, in the default windows); no record
    compares training speed, so none is claimed."""
    record = _record("inference_cpu")
    seconds = {model: next(row["seconds"] for row in record[f"{model}_cpu"]["tiled"]
                           if row["overlap"] == record["default_overlap"])
               for model in ("resnet50", "mobilenet_v3_large")}
    quote = (f"about {round(seconds['resnet50'] / seconds['mobilenet_v3_large'])} times faster than "
             f"ResNet-50: a whole 2448 x 2448 original in {seconds['mobilenet_v3_large']:.1f} s against "
             f"{seconds['resnet50']:.1f} s")
    for text in (_readme(), _prose(_cell("04_training_partial_loss", "# 04"))):
        assert quote in text and "in inference on two CPU cores" in text
        assert "7 times" not in text


def test_the_studies_times_are_their_records() -> None:
    readme = _readme()
    density = _record("label_density_deepglobe")
    assert f"{round(density['train_minutes_all_runs'])} minutes of training on two CPU cores" in readme
    sample = _record("label_density_sample")
    assert f"three seeds; {round(sample['train_minutes_all_runs'])} minutes on two CPU cores" in readme
    scores = _record("scores_from_points_deepglobe")
    assert f"{round(scores['minutes_this_call'])} minutes on two CPU cores" in readme
    active = _record("active_deepglobe")
    training = sum(row["train_seconds"] for row in active["rounds"]) / 60
    assert f"recorded training times add up to {round(training)} minutes on two CPU cores" in readme
    assert f"the call that finished the record took {active['minutes_this_call']:.1f} minutes" in readme
    assert "about two hours" not in readme


def test_the_recipes_first_candidates_are_described_as_the_record_holds_them() -> None:
    record = _record("real_tile_recipe")
    earlier = {run["candidate"]: run for run in record["earlier_runs"]}
    names = ("balanced", "balanced-256", "lr3e-4", "baseline")
    balanced, larger, lower, first = (earlier[name] for name in names)
    for run in (balanced, larger):  # both class-balanced crops came with colour jitter
        assert run["spec"]["crop_sampling"] == "class-balanced" and run["spec"]["color_jitter"] == 0.2
    assert larger["spec"]["crop"] == 256 and lower["spec"]["lr"] == 3e-4
    readme = _readme()
    assert (f"with colour jitter (`color_jitter = {balanced['spec']['color_jitter']}`), "
            f"{balanced['val_mean_iou']:.3f}; the same with 256 x 256 crops at the same pixels per run, "
            f"{larger['val_mean_iou']:.3f}; a learning rate of 3e-4 alone, {lower['val_mean_iou']:.3f}; "
            f"against {first['val_mean_iou']:.3f} for the first recipe.") in readme
    three = (balanced, larger, lower)
    assert all(round(run["val_iou"]["water"], 2) == 0 for run in three)
    assert [round(run["val_iou"]["barren"], 2) > 0 for run in three] == [False, False, True]
    assert (f"None taught the model water (IoU 0.00 in all three), and only the learning rate of 3e-4 "
            f"reached barren land ({lower['val_iou']['barren']:.2f}).") in readme


def test_the_readme_names_the_windows_notebook_05_predicts_in() -> None:
    parameters = _cell("05_testing_metrics", "DATA_DIR = ")
    assert re.search(r"^TILE_SIZE = None ", parameters, re.MULTILINE)
    (overlap,) = re.findall(r"^OVERLAP = ([\d.]+) ", parameters, re.MULTILINE)
    assert float(overlap) == 0.5
    readme = _readme()
    assert ("Notebook 05 predicts in windows of the training crop (`TILE_SIZE = None`: the crop its "
            f"checkpoint records) overlapping by at least half (`OVERLAP = {overlap}`)") in readme
    assert (f"512 x 512 windows overlapping by at least {windows.DEFAULT_OVERLAP:.0%} "
            "(`windows.DEFAULT_OVERLAP`)") in readme


def test_the_point_intervals_width_is_the_records() -> None:
    runs = _record("scores_from_points_deepglobe")["runs"]
    widths = [run["point_miou_high"] - run["point_miou_low"] for run in runs]
    quote = f"intervals are {min(widths):.2f} to {max(widths):.2f} wide"
    assert quote in _readme()
    notebook = _prose(_cell("08_label_your_own_imagery", "### What it says"))
    assert quote in notebook.replace("The intervals", "intervals")


def test_notebook_01_points_at_the_real_tiles_from_its_own_folder() -> None:
    """A relative DATA_DIR is read from notebooks/, where the notebooks run."""
    exercises = _cell("01_data_exploration", "## Summary")
    (path,) = re.findall(r'DATA_DIR = "([^"]*shared[^"]*)"', exercises)
    assert path == "../../shared/data/deepglobe_sample/tiles_512"
    assert path in _cell("02_mask_decoding", "## Summary")
    assert (Path(PROJECT_ROOT / "notebooks") / path).resolve() == (
        PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512").resolve()


def test_the_tiles_scale_the_readme_quotes_is_the_measured_one() -> None:
    """The factor the README says the shared tiles are closest to is the one both measures of
    benchmarks/tile_scale.py point to, and the quoted class share is the tiles'."""
    record = _record("tile_scale")
    (quoted,) = re.findall(r"<!-- tile_scale: factor -->([\d.]+)<!-- /tile_scale -->", README.read_text())
    assert float(quoted) == record["closest_factor_by_edge_share"]
    assert float(quoted) == record["closest_factor_by_high_frequency_share"]
    share = round(100 * record["tiles"]["class_shares"]["agriculture"])
    assert f"agriculture {share}% of the tiles' pixels" in _readme()


def test_notebook_09_puts_random_picks_beside_dense_masks_as_the_records_hold_them() -> None:
    """Random picks at the last budget, their steps, and the dense masks' mIoU at the density
    study's steps on the same split, as notebook 09's conclusions quote them."""
    active, density = _record("active_deepglobe"), _record("label_density_deepglobe")
    assert active["settings"]["val_images"] == density["settings"]["val_images"]
    last = max(active["budgets"])
    random = [row for row in active["rounds"] if row["selection"] == "random"]
    final = [row["val_mean_iou"] for row in random if row["points_per_image"] == last]
    steps = sorted({(row["round"], row["steps"]) for row in random})
    first, later = steps[0][1], [s for r, s in steps[1:]]
    assert len(set(later)) == 1
    (dense,) = [row for row in density["summary"] if row["strategy"] == "dense"]
    quote = (f"At {last} points per tile, after {first:,} + {len(later)} x {later[0]} = "
             f"{first + sum(later):,} steps, random picks scored {np.mean(final):.3f} ± "
             f"{np.std(final, ddof=1):.3f}, the dense masks' {dense['miou_mean']:.3f} at {first:,} steps.")
    assert quote in _prose(_cell("09_active_labeling", "## 5. What the results say"))
    fine_tune = _prose(_cell("09_active_labeling", "## 3. One round"))
    assert "(`lr`, 3e-4 there)" in fine_tune and active["settings"]["lr"] == 3e-4


def _paragraph(start: str) -> str:
    """The README's prose from ``start`` to the next heading."""
    text = _readme()
    return text[text.index(start):].split(" #")[0]


def _table_numbers(*tables: Any) -> list[float]:
    """Every number of pandas tables, their index included."""
    return [float(v) for table in tables for v in np.ravel(table.reset_index().select_dtypes("number"))]


def _quoted_are_in(paragraph: str, values: list[float]) -> None:
    """Every decimal number in ``paragraph`` is one of ``values``, rounded as quoted."""
    quoted = re.findall(r"(?<![\d.])([+-]?\d+\.\d+)(?![\d%])", paragraph)
    assert quoted
    for number in quoted:
        places = len(number.split(".")[1])
        assert any(round(v, places) == float(number) for v in values), number


def test_the_self_training_and_propagation_limits_findings_are_their_records() -> None:
    """The prose under both README tables, and notebook 07's conclusions with section 5's record,
    quote only the records' summaries, gaps, intervals, per-class IoUs and pseudo-label coverages;
    rangeland scores under 0.001 IoU in every row, as they say."""
    teaching = records.load(RESULTS / "self_training_deepglobe.json")
    limits = records.load(RESULTS / "propagation_limits_deepglobe.json")
    teaching_iou = records.self_training_per_class(teaching)
    limits_iou = records.per_class_iou(limits["runs"], by=["strategy"])
    values = _table_numbers(records.self_training_table(teaching), teaching_iou,
                            records.pseudo_label_table(teaching), records.limits_summary(limits), limits_iou)
    values += [g[key] for g in teaching["gaps"] + limits["gaps"] for key in ("gap", "low", "high")]
    _quoted_are_in(_paragraph("Made with `make self-training`"), values)
    _quoted_are_in(_paragraph("Made with `make propagation-limits`"), values)
    assert (teaching_iou["rangeland"] < 0.001).all() and (limits_iou["rangeland"] < 0.001).all()
    naive = study.load_record(RESULTS / "more_from_points_deepglobe.json")
    values += _table_numbers(naive.table(), naive.per_class_iou(), naive.paired_gaps("uniform"))
    _quoted_are_in(_prose(_cell("07_more_from_points", "## 8. What the results say")), values)
