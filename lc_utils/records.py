"""The committed records of the method studies read back as tables, for the notebooks and the README.

A study under ``benchmarks/`` writes a JSON record (every run, its settings, seeds, command, date and
machine); a notebook shows what it holds without training anything. Three of them are read here:

- self-training from a fully trained teacher against the same extra steps on the points alone
  (``benchmarks/self_training.py``, :func:`self_training_summary`, :func:`pseudo_label_table`);
- what held propagation back (``benchmarks/propagation_limits.py``, :func:`limits_summary`);
- and, for any of them, the gaps each record keeps with their paired tile intervals
  (:func:`gap_table`, :func:`describe_gap`, from :mod:`lc_utils.tile_bootstrap`).

Every table is computed from the record's runs, never typed in: a number a notebook quotes can be
traced to the file it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .classes import ClassSchema
from .metrics import ConfusionMatrix
from .run_spec import DENSE
from .tile_bootstrap import PairedGap, seed_gaps

TEACHER = "teacher"
SELF_TRAINING_MODELS = {
    TEACHER: "teacher (points alone)",
    "points": "control: more steps, points alone",
    "pseudo-labels": "more steps, points + pseudo-labels",
    "consistency": "more steps, points + consistency",
}
"""The self-training study's models in reading order, each as a table names it."""

SELF_TRAINING_CONTROLS = {"pseudo-labels": "points", "consistency": "points", "points": TEACHER}
"""What each model of the self-training study is measured against: the arms against the control
(the same extra steps on the points alone), the control against the teacher (what the extra steps
alone add)."""

POINTS = "uniform"
PROPAGATED = "uniform+propagation"
CLEAN = "propagated, wrong pixels removed"
MAJORITY = "every superpixel, its majority class"
LIMITS_ORDER = (POINTS, PROPAGATED, CLEAN, MAJORITY, DENSE)
"""The propagation-limits study's label sets, from the points alone to dense masks."""

LIMITS_CONTROLS = {PROPAGATED: POINTS, CLEAN: PROPAGATED, MAJORITY: POINTS, DENSE: MAJORITY}
"""What each label set is measured against: propagation against the points alone, the same blobs
without their errors against propagation (what the errors cost), every superpixel against the points
alone (what coverage adds), and dense masks against every superpixel (what is left)."""


def load(path: str | Path) -> dict[str, Any]:
    """A committed record, with an error that says how to make it where there is none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no study record here (run the command in the README to make it)")
    return json.loads(path.read_text())


def scores_from_tiles(tiles: Mapping[str, Sequence[Sequence[int]]], schema: ClassSchema) -> dict[str, Any]:
    """A run's validation scores from its tiles' confusion matrices (summed, never averaged):
    ``val_mean_iou`` (the schema's unknown class left out), ``val_pixel_accuracy`` and ``val_iou``."""
    confusion = ConfusionMatrix.from_counts(np.sum([np.asarray(c) for c in tiles.values()], axis=0),
                                            schema=schema)
    summary = confusion.summary()
    iou = confusion.per_class()["iou"]
    return {"val_mean_iou": float(summary["mean_iou"]),
            "val_pixel_accuracy": float(summary["pixel_accuracy"]),
            "val_iou": {name: None if np.isnan(v) else float(v) for name, v in iou.items()}}


def gaps_against(runs: Sequence[Mapping[str, Any]], controls: Mapping[str, str], *, name: str,
                 classes: Sequence[str], group: str | Sequence[str] | None = None, confidence: float = 0.9
                 ) -> list[dict[str, Any]]:
    """Each ``runs`` row named ``name`` (a key of ``controls``) against its control on the same seed
    (and the same ``group`` value or values, e.g. the density), with the paired tile interval per
    seed and pooled over the seeds where both ran (:func:`lc_utils.tile_bootstrap.seed_gaps`). Rows
    keep their ``tile_confusions``; ``classes`` names the matrices' rows (``unknown`` is left out)."""
    fields = [] if group is None else [group] if isinstance(group, str) else list(group)
    by = {(tuple(r.get(f) for f in fields), r["seed"], r[name]): r for r in runs if "tile_confusions" in r}
    keep = np.array([c != "unknown" for c in classes])
    groups = list(dict.fromkeys(key[0] for key in by))
    gaps = []
    for value in groups:
        for method, control in controls.items():
            seeds = sorted(s for g, s, n in by if (g, n) == (value, method) and (value, s, control) in by)
            if not seeds:
                continue
            pairs = [(by[value, s, method]["tile_confusions"], by[value, s, control]["tile_confusions"])
                     for s in seeds]
            gaps.append({**dict(zip(fields, value)), "method": method, "control": control,
                         **seed_gaps(seeds, pairs, keep, confidence=confidence)})
    return gaps


def describe_gap(gap: Mapping[str, Any]) -> str:
    """``+0.021 (90% interval -0.004 to +0.047): not measurable on 32 tiles`` for a record's gap."""
    return PairedGap(gap["gap"], gap["low"], gap["high"], gap["confidence"], gap["n_tiles"]).describe()


def gap_table(gaps: Sequence[Mapping[str, Any]], by: Sequence[str] = ("method", "control")) -> pd.DataFrame:
    """A record's gaps as a notebook shows them: a row per gap, indexed by the ``by`` fields, with
    the gap pooled over its seeds, its interval, whether it is measurable, and each seed's gap."""
    rows = []
    for gap in gaps:
        rows.append({**{key: gap[key] for key in by}, **{key: gap[key] for key in ("gap", "low", "high")},
                     "verdict": f"{'measurable' if gap['measurable'] else 'not measurable'} "
                                f"on {gap['n_tiles']} tiles",
                     "per seed": " / ".join(f"{s['gap']:+.3f}" for s in gap["per_seed"]),
                     "seeds": len(gap["seeds"])})
    return pd.DataFrame(rows).set_index(list(by))


def _mean_sd(scores: pd.Series) -> tuple[float, float]:
    return float(scores.mean()), float(scores.std(ddof=1)) if len(scores) > 1 else float("nan")


def self_training_summary(record: Mapping[str, Any]) -> pd.DataFrame:
    """The self-training record as :func:`lc_utils.study.summarize` shapes a summary (so that
    :func:`lc_utils.viz_results.plot_method_comparison` draws it): a row per density and model
    with its own steps and the steps in all (the teacher's included), the pixels it trained on, and
    its mIoU's mean and sd over the seeds."""
    runs = pd.DataFrame(record["runs"])
    teachers = runs[runs["model"] == TEACHER].set_index(["points_per_mp", "seed"])
    rows = []
    for density in sorted(runs["points_per_mp"].unique()):
        for model, name in SELF_TRAINING_MODELS.items():
            group = runs[(runs["points_per_mp"] == density) & (runs["model"] == model)]
            if group.empty:
                continue
            teacher = teachers.loc[[(density, seed) for seed in group["seed"]]]
            trained = (teacher["labelled_fraction"] if model == TEACHER else group["trained_fraction"])
            mean, sd = _mean_sd(group["val_mean_iou"])
            steps = int(group["steps"].iloc[0])
            rows.append({"strategy": name, "model": model, "points_per_mp": density,
                         "points_per_image": int(teacher["points_per_image"].iloc[0]),
                         "labelled_fraction": float(teacher["labelled_fraction"].mean()),
                         "trained_fraction": float(trained.mean()), "steps": steps,
                         "total_steps": steps + (0 if model == TEACHER else int(teacher["steps"].iloc[0])),
                         "runs": len(group), "miou_mean": mean, "miou_sd": sd})
    return pd.DataFrame(rows)


def self_training_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """The self-training record in a notebook's words: per density and model, the steps (its own
    and in all), the pixels trained on in percent, and the mIoU mean and sd over the seeds."""
    summary = self_training_summary(record)
    table = pd.DataFrame({"points per MP": summary["points_per_mp"], "model": summary["model"],
                          "steps": summary["steps"], "steps in all": summary["total_steps"],
                          "trained on %": summary["trained_fraction"] * 100, "mIoU": summary["miou_mean"],
                          "sd": summary["miou_sd"], "seeds": summary["runs"]})
    return table.set_index(["points per MP", "model"])


def pseudo_label_table(record: Mapping[str, Any],
                       columns: Sequence[str] = ("precision", "coverage", "correct_coverage")
                       ) -> pd.DataFrame:
    """Per density and class, what the students were taught beyond their points: the pseudo-labels'
    precision (the share right), coverage (the share of the class's pixels given any label) and
    correct coverage (given the right one), means over the seeds."""
    rows = [{"points per MP": run["points_per_mp"], "seed": run["seed"], "class": name,
             **{c: quality[c] for c in columns}}
            for run in record["runs"] if run.get("pseudo_labels")
            for name, quality in run["pseudo_labels"].items()]
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame["class"]))
    means = frame.groupby(["points per MP", "class"], sort=False)[list(columns)].mean()
    return means.reindex(pd.MultiIndex.from_product([sorted(frame["points per MP"].unique()), order],
                                                     names=means.index.names))


def per_class_iou(runs: Sequence[Mapping[str, Any]], by: Sequence[str], exclude: Sequence[str] = ("unknown",)
                  ) -> pd.DataFrame:
    """Mean IoU of each class over the seeds, a row per value of the ``by`` fields."""
    frame = pd.DataFrame([{**{key: run[key] for key in by}, **{c: v for c, v in run["val_iou"].items()
                                                              if c not in exclude}} for run in runs])
    return frame.groupby(list(by), sort=False).mean(numeric_only=True)


def self_training_per_class(record: Mapping[str, Any]) -> pd.DataFrame:
    """Mean IoU of each class over the seeds, per density and model of the self-training record,
    in reading order (:data:`SELF_TRAINING_MODELS`)."""
    order = list(SELF_TRAINING_MODELS)
    runs = sorted(record["runs"], key=lambda run: (run["points_per_mp"], order.index(run["model"])))
    return per_class_iou(runs, by=("points_per_mp", "model"))


def limits_summary(record: Mapping[str, Any]) -> pd.DataFrame:
    """The propagation-limits record as :func:`lc_utils.study.summarize` shapes a summary: a row per
    label set (the points alone, propagation, its clean blobs, every superpixel, dense masks), with
    the pixels it trained on, the labels' precision, and the mIoU's mean and sd over the seeds."""
    runs = pd.DataFrame([*record["references"], *record["runs"]])
    rows = []
    for strategy in [s for s in LIMITS_ORDER if s in set(runs["strategy"])]:
        group = runs[runs["strategy"] == strategy]
        mean, sd = _mean_sd(group["val_mean_iou"])
        rows.append({"strategy": strategy, "points_per_mp": np.nan if strategy == DENSE else group[
            "points_per_mp"].iloc[0], "points_per_image": group["points_per_image"].iloc[0],
            "labelled_fraction": float(group["labelled_fraction"].mean()),
            "trained_fraction": float(group["trained_fraction"].mean()),
            "label_precision": float(group["label_precision"].mean()), "runs": len(group), "miou_mean": mean,
            "miou_sd": sd, "pixel_accuracy_mean": float(group["val_pixel_accuracy"].mean())})
    summary = pd.DataFrame(rows)
    dense = summary.loc[summary["strategy"] == DENSE, "miou_mean"]
    summary["miou_vs_dense"] = summary["miou_mean"] / float(dense.iloc[0]) if len(dense) else np.nan
    return summary
