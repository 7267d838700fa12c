"""The label-density study: the same model trained at several point densities and with dense labels.

Shared by notebook 06 and ``benchmarks/label_density.py``. Every run is one
:class:`~lc_utils.run_spec.RunSpec` built by :func:`~lc_utils.runs.build_run`: the same training
images, crops, batch size, learning rate and number of optimiser steps; only the labels (and the
seed) differ. Each setting is repeated over several seeds (a seed draws the points, the starting
weights and the crops), so a difference between rows can be told from noise. Validation scores
whole images with the same tiled prediction as notebook 05.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from . import settings
from .classes import ClassSchema
from .files import as_pairs
from .inference import evaluate_tiled
from .metrics import ConfusionMatrix
from .run_data import load_data
from .run_spec import DENSE, RunSpec, fast_recipe
from .runs import Run, build_run
from .saved_files import refuse_other_settings, write_text
from .windows import DEFAULT_OVERLAP

PRIOR_CORRECTED = "stratified+prior"
"""Stratified points with the loss's prior correction (:func:`lc_utils.losses.prior_correction`)."""

MODIFIERS = ("prior", "propagation", "self-training")
"""What a study's setting may add to a point strategy, written ``"uniform+propagation"``: the
loss's prior correction, superpixel propagation (:mod:`lc_utils.propagation`) and self-training
rounds (notebook 07)."""

_STRATEGY_ORDER = ("uniform", "stratified", "grid")
_PER_RUN = ("strategy", "points_per_mp", "points_per_image", "prior_correction", "superpixel_area",
            "self_training_rounds", "seed")
"""The fields of a study's spec that each run sets; every other one is the study's."""


def course_spec(data: str | Path | None = None) -> RunSpec:
    """What every run of notebooks 06 and 07 shares in the current mode; each run sets its labels
    and seed. Full mode: DeepLabV3-ResNet50 from ImageNet weights on 256² crops, 30 epochs over
    the training images at 1e-3. Fast mode: MobileNetV3 on 128² crops, 200 steps (40 epochs of
    40 crops), with :func:`lc_utils.run_spec.fast_recipe`'s rate and Dice term for ``data``. Smoke
    mode: 2 epochs (a self-training round needs one of its own). Whole validation images are
    scored once, after training, so there are no validation windows."""
    recipe = fast_recipe(data)
    return RunSpec(data=None if data is None else str(data),
                   backbone=settings.pick("resnet50", "mobilenet_v3_large"),  # ~14x faster inference (CPU)
                   weights="imagenet", crop=settings.pick(256, 128), batch_size=8,
                   epochs=settings.unless_smoke(settings.pick(30, 40), smoke=2),
                   samples_per_epoch=settings.pick(None, 40), lr=settings.pick(1e-3, recipe["lr"]),
                   dice_weight=settings.pick(0.0, recipe["dice_weight"]), warmup_steps=30, val_windows=0)


def setting_changes(setting: str, superpixel_area: float = 900.0, self_training_rounds: int = 1
                    ) -> dict[str, Any]:
    """The spec fields a study's setting sets: ``"uniform"``, ``"dense"``, or a strategy with
    :data:`MODIFIERS` such as ``"uniform+propagation+self-training"`` (those take the study's
    ``superpixel_area`` and ``self_training_rounds``)."""
    strategy, *modifiers = setting.split("+")
    unknown = [m for m in modifiers if m not in MODIFIERS]
    if unknown or len(set(modifiers)) != len(modifiers) or (modifiers and strategy == DENSE):
        raise ValueError(f"setting {setting!r}: expected a strategy or {DENSE!r}, then any of "
                         f"{['+' + m for m in MODIFIERS]} once each (on points)")
    return {"strategy": strategy, "prior_correction": "prior" in modifiers,
            "superpixel_area": superpixel_area if "propagation" in modifiers else None,
            "self_training_rounds": self_training_rounds if "self-training" in modifiers else 0}


def score_images(model: nn.Module, pairs: Sequence[tuple[Path, Path]], schema: ClassSchema,
                 window: int, overlap: float = DEFAULT_OVERLAP) -> dict[str, Any]:
    """Whole-image scores of ``model`` on ``pairs`` (notebook 05's tiled prediction in ``window``
    squares overlapping by ``overlap``): mean IoU (unknown excluded), pixel accuracy, macro F1 and
    IoU per class (None for a class absent from both the masks and the predictions)."""
    return confusion_scores(evaluate_tiled(model, pairs, schema, tile_size=window, overlap=overlap))


def confusion_scores(confusion: ConfusionMatrix) -> dict[str, Any]:
    """The scores :func:`score_images` reports, from a confusion matrix over whole images (such as
    the sum of :func:`lc_utils.tile_bootstrap.score_tiles`' matrices)."""
    summary = confusion.summary()
    per_class = confusion.per_class()["iou"]
    return {"mean_iou": summary["mean_iou"], "pixel_accuracy": summary["pixel_accuracy"],
            "macro_f1": summary["macro_f1"],
            "iou": {name: None if np.isnan(v) else float(v) for name, v in per_class.items()}}


def train_and_score(run: Run, progress: bool = False) -> dict[str, Any]:
    """Train ``run`` (no checkpoints) and score it on its whole validation images
    (:func:`score_images`, as ``val_mean_iou``, ``val_pixel_accuracy``, ``val_macro_f1`` and
    ``val_iou``). ``history`` is what every epoch printed; ``weights_used`` says what the model
    started from (None: random weights, e.g. where the pretrained ones could not be downloaded)."""
    started = time.perf_counter()
    history = run.train(progress=progress)
    seconds = time.perf_counter() - started
    scores = score_images(run.model, run.split["val"], run.schema, run.spec.val_window, run.spec.val_overlap)
    return {**{f"val_{name}": value for name, value in scores.items()},
            "final_train_loss": history[-1]["train_loss"], "steps": run.steps, "train_seconds": seconds,
            "weights_used": run.model.weights, "history": history}


def _shared_fields(spec: RunSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.to_dict().items() if k not in _PER_RUN}


def study_key(spec: RunSpec, split: dict[str, list[tuple[Path, Path]]]) -> dict[str, Any]:
    """What makes two studies the same: the fields every run shares and the images of the split."""
    return {"spec": _shared_fields(spec), "train": [pair.image_id for pair in as_pairs(split["train"])],
            "val": [pair.image_id for pair in as_pairs(split["val"])]}


def results_filename(spec: RunSpec) -> str:
    """A results file name that keeps studies with other settings apart, e.g. ``runs_1a2b3c4d.json``
    (the fields each run sets, such as the labels and the seed, do not count)."""
    digest = hashlib.sha1(json.dumps(_shared_fields(spec), sort_keys=True).encode()).hexdigest()[:8]
    return f"runs_{digest}.json"


def read_results_file(path: str | Path, key: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The finished runs saved in ``path`` (none if it is absent). A file made for another study
    (settings or images differ from ``key``) is an error rather than something to overwrite."""
    path = Path(path)
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    if key is not None:
        theirs = saved.get("key", {})
        ours = json.loads(json.dumps(key))  # as the file holds it: lists, not tuples
        # a field added since the file was made: it ran with the default
        their_spec = {**_shared_fields(RunSpec()), **theirs.get("spec", {})}
        refuse_other_settings(path, {**their_spec, **_split_in_words(theirs)},
                              {**ours["spec"], **_split_in_words(ours)}, what="holds a study made",
                              fix="choose another results file (e.g. study.results_filename(spec)) "
                                  "or delete it")
    return list(saved.get("runs", []))


def _split_in_words(key: dict[str, Any]) -> dict[str, str]:
    """A study key's images, told apart in a message: how many, and a digest of their ids (the ids
    themselves would make it as long as the split)."""
    words = {}
    for part, name in (("train", "training images"), ("val", "validation images")):
        ids = list(key.get(part, []))
        words[name] = f"{len(ids)}, {hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:8]}"
    return words


def _write_results_file(path: Path, key: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Rewrite the runs of ``path`` atomically, keeping any other field the file holds."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.update(key=key, runs=runs)
    write_text(path, json.dumps(record, indent=1, default=float) + "\n")


def _find_run(runs: Sequence[dict[str, Any]], strategy: str, n_points: int | None, density: float | None,
              seed: int, changes: dict[str, Any]) -> dict[str, Any] | None:
    """The saved run of a setting, budget and seed, made with the same superpixels and rounds."""
    return next((r for r in runs if r["strategy"] == strategy and r["seed"] == seed
                 and r.get("points_per_mp") == density
                 and (density is not None or r["points_per_image"] == n_points)
                 and r.get("superpixel_area") == changes["superpixel_area"]
                 and r.get("self_training_rounds", 0) == changes["self_training_rounds"]), None)


def run_label_study(
    spec: RunSpec,
    points_per_image: Sequence[int] = (),
    *,
    points_per_mp: Sequence[float] = (),
    strategies: Sequence[str] = ("uniform", "stratified", PRIOR_CORRECTED),
    include_dense: bool = True,
    extra_rows: Sequence[tuple[str, float]] = (),
    seeds: Sequence[int] = (0,),
    superpixel_area: float = 900.0,
    self_training_rounds: int = 1,
    results_file: str | Path | None = None,
    reuse: str | Path | None = None,
    runs_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per run: every (setting, label budget) and dense labels, for every seed.

    ``spec`` is what every run shares (data, split, model, schedule, ...); each run replaces its
    labels and seed. A budget is a number of points per image (``points_per_image``) or a density
    in points per megapixel (``points_per_mp``, :func:`lc_utils.sparse.points_for_density`: the
    same share of the pixels whatever the image size). A setting is a strategy of
    :func:`lc_utils.sparse.sample_points` with any of :data:`MODIFIERS` (:func:`setting_changes`):
    :data:`PRIOR_CORRECTED` is the stratified points trained with the loss's logit adjustment for
    the true class prior (pixel shares of the training masks); ``"+propagation"`` spreads the
    points over superpixels of ``superpixel_area`` pixels; ``"+self-training"`` shares the steps
    with ``self_training_rounds`` rounds. ``extra_rows`` adds (setting, points per megapixel)
    outside that grid, such as one density of stratified points beside uniform ones. A seed
    draws the points, the starting weights and the crops; the images stay the same. Columns:
    strategy (the setting), points_per_image (the mean over the images for a density),
    points_per_mp (None for a count per image), seed, labelled_fraction (the points' share of all
    training pixels), superpixel_area, self_training_rounds, trained_fraction (the share the
    last training stage learned from), the validation scores of :func:`train_and_score`, the
    final training loss, steps and seconds. Annotations are made once per budget and seed at
    their one path under ``runs_dir`` and reused. With ``results_file`` (JSON) each finished run
    is saved there at once and reused when the study runs again, so an interrupted study loses at
    most the run under way; a file made with other settings or images is refused
    (:func:`results_filename` names one per setting). ``reuse``: another study's results file
    (the same settings and images) whose runs of this plan are taken as they are, marked
    ``reused_from`` (the plain points and dense rows of a density study, for a propagation study).
    """
    key = study_key(spec, load_data(spec).split)
    results_file = Path(results_file) if results_file is not None else None
    done = read_results_file(results_file, key) if results_file is not None else []
    budgets: list[tuple[int | None, float | None]] = ([(n, None) for n in points_per_image]
                                                      + [(None, d) for d in points_per_mp])
    plan = []  # seed by seed, so that a study stopped early holds whole seeds
    for seed in seeds:
        plan += [(s, n, d, seed) for s in strategies for n, d in budgets]
        plan += [(s, None, d, seed) for s, d in extra_rows]
        plan += [(DENSE, None, None, seed)] if include_dense else []
    reusable = read_results_file(reuse, key) if reuse is not None else []
    rows = []
    for strategy, n_points, density, seed in plan:
        if strategy == DENSE:
            amount = "dense labels"
        else:
            amount = f"{n_points} points per image" if density is None else f"{density:,g} points per MP"
        changes = setting_changes(strategy, superpixel_area, self_training_rounds)
        wanted = (strategy, n_points, density, seed, changes)
        saved = _find_run(done, *wanted)
        if saved is None and (saved := _find_run(reusable, *wanted)) is not None:
            # a reusable row has no propagation nor self-training: it trained on its labels alone
            saved = {"trained_fraction": saved["labelled_fraction"], **saved, "reused_from": Path(reuse).name}
            done.append(saved)
            if results_file is not None:
                _write_results_file(results_file, key, done)
        if saved is not None:
            rows.append(saved)
            if progress:
                print(f"{strategy:>16}, {amount}, seed {seed}: val mIoU {saved['val_mean_iou']:.3f} "
                      f"({'from ' + saved['reused_from'] if 'reused_from' in saved else 'saved earlier'})",
                      flush=True)
            continue
        run = build_run(spec.replace(points_per_image=n_points, points_per_mp=density, seed=seed, **changes),
                        runs_dir=runs_dir)
        if progress:
            print(f"{strategy:>16}, {amount} ({run.labelled_fraction:.4%} of pixels), seed {seed} ...",
                  flush=True)
        scores = train_and_score(run)
        n_points = None if strategy == DENSE else round(run.points_per_image)
        rows.append({"strategy": strategy, "points_per_image": n_points, "points_per_mp": density,
                     "seed": seed, "labelled_fraction": run.labelled_fraction,
                     "superpixel_area": changes["superpixel_area"],
                     "self_training_rounds": changes["self_training_rounds"],
                     "trained_fraction": run.trained_fraction, **scores})
        if results_file is not None:
            done.append(rows[-1])
            _write_results_file(results_file, key, done)
        if progress:
            print(f"{'':>16}  val mIoU {scores['val_mean_iou']:.3f} in {scores['train_seconds']:.0f} s",
                  flush=True)
    frame = pd.DataFrame(rows)
    frame.attrs["spec"] = spec.to_dict()
    return frame


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for every (strategy, points per image), with the
    ratio of each mean to the dense-label mean (when there is a dense run).

    Columns: strategy, points_per_image, points_per_mp (NaN for budgets per image),
    labelled_fraction, runs, miou_mean, miou_sd, pixel_accuracy_mean, miou_vs_dense, and
    trained_fraction where some run trained on more than its points (the labels' share after
    propagation or self-training). The standard deviation is the sample one (ddof=1).
    """
    frame = results.copy()
    frame["points_per_image"] = frame["points_per_image"].astype("Int64")
    if "points_per_mp" not in frame:
        frame["points_per_mp"] = np.nan
    grouped = frame.groupby(["strategy", "points_per_image"], dropna=False, sort=False)
    summary = grouped.agg(points_per_mp=("points_per_mp", "first"),
                          labelled_fraction=("labelled_fraction", "mean"), runs=("val_mean_iou", "size"),
                          miou_mean=("val_mean_iou", "mean"), miou_sd=("val_mean_iou", "std"),
                          pixel_accuracy_mean=("val_pixel_accuracy", "mean"),
                          **({"trained_fraction": ("trained_fraction", "mean")}
                             if _grows_labels(frame) else {})).reset_index()
    dense = summary.loc[summary["strategy"] == DENSE, "miou_mean"]
    summary["miou_vs_dense"] = summary["miou_mean"] / float(dense.iloc[0]) if len(dense) else np.nan
    summary["_order"] = summary["strategy"].map(_setting_order)
    return (summary.sort_values(["_order", "labelled_fraction"]).drop(columns="_order")
            .reset_index(drop=True))


def _setting_order(setting: str) -> tuple[int, int]:
    """Where a setting goes in a table: by strategy, each followed by its modified forms (prior,
    propagation, self-training, both), dense labels last."""
    strategy, *modifiers = setting.split("+")
    if strategy == DENSE:
        return len(_STRATEGY_ORDER) + 1, 0
    rank = _STRATEGY_ORDER.index(strategy) if strategy in _STRATEGY_ORDER else len(_STRATEGY_ORDER)
    return rank, sum(2 ** MODIFIERS.index(m) for m in modifiers if m in MODIFIERS)


def _grows_labels(runs: pd.DataFrame) -> bool:
    """Whether some run trained on more pixels than its points label (propagation, self-training)."""
    if "trained_fraction" not in runs:
        return False
    trained = runs["trained_fraction"].fillna(runs["labelled_fraction"])
    return bool((trained > runs["labelled_fraction"] + 1e-12).any())


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary (:func:`summarize`) as a notebook shows it: a row per setting, named as
    :func:`setting_label` names it, with the labelled pixels in percent, mIoU mean and sd, the
    ratio to dense labels, pixel accuracy and the number of runs (and the pixels trained on, in
    percent, where labels were grown)."""
    table = pd.DataFrame({
        "labelled %": summary["labelled_fraction"] * 100,
        **({"trained on %": summary["trained_fraction"] * 100} if "trained_fraction" in summary else {}),
        "mIoU": summary["miou_mean"], "sd": summary["miou_sd"], "vs dense": summary["miou_vs_dense"],
        "pixel accuracy": summary["pixel_accuracy_mean"], "runs": summary["runs"]})
    table.index = pd.Index(_setting_labels(summary), name="labels")
    return table


def setting_label(strategy: str, points_per_image: float | None, points_per_mp: float | None) -> str:
    """How a table names a setting: "dense", "uniform, 1,000/MP" or "uniform, 100 per image"."""
    if strategy == DENSE:
        return DENSE
    if points_per_mp is not None and not pd.isna(points_per_mp):
        return f"{strategy}, {points_per_mp:,.0f}/MP"
    return f"{strategy}, {points_per_image:,.0f} per image"


def _setting_labels(rows: pd.DataFrame) -> list[str]:
    """:func:`setting_label` of every row of runs or of a summary (records made before budgets per
    megapixel have no ``points_per_mp``)."""
    return [setting_label(r.strategy, r.points_per_image, getattr(r, "points_per_mp", None))
            for r in rows.itertuples()]


def per_class_iou(runs: pd.DataFrame, exclude: Sequence[str] = ("unknown",)) -> pd.DataFrame:
    """Mean validation IoU of each class per setting over its seeds (a row per setting, in the
    order the runs first name them), the classes in ``exclude`` left out as the headline mean
    leaves them out."""
    table = pd.DataFrame(list(runs["val_iou"])).groupby(_setting_labels(runs), sort=False).mean()
    table.index.name = "setting"
    return table.drop(columns=[c for c in exclude if c in table.columns])


def paired_gaps(runs: pd.DataFrame, reference: str = DENSE) -> pd.DataFrame:
    """Each setting's validation mIoU minus the ``reference``'s on the same seed: mean and sd over
    the seeds (a row per setting, the reference left out). ``reference`` is ``"dense"`` (every
    setting against dense masks) or a strategy such as ``"uniform"`` (every other setting of points
    against that strategy at the same budget: propagation against the points alone).

    A seed draws the points, the starting weights and the crops, and moves every setting of the
    study together: the spread over seeds of each mean can hide a gap that every seed shows."""
    frame = runs.assign(setting=_setting_labels(runs), budget=_budgets(runs))
    is_reference = frame["strategy"] == reference
    if not is_reference.any():
        raise ValueError(f"no run of the reference {reference!r}; the settings are "
                         f"{sorted(set(frame.strategy))}")
    key = ["seed"] if reference == DENSE else ["seed", "budget"]
    others = frame[~is_reference & ((frame["strategy"] != DENSE) | (reference == DENSE))]
    paired = others.merge(frame.loc[is_reference, [*key, "val_mean_iou"]], on=key,
                          suffixes=("", "_reference"))
    paired["gap"] = paired["val_mean_iou"] - paired["val_mean_iou_reference"]
    grouped = paired.groupby("setting", sort=False)["gap"]
    return pd.DataFrame({"gap_mean": grouped.mean(), "gap_sd": grouped.std(),
                         "seeds_below": grouped.agg(lambda gaps: int((gaps < 0).sum())),
                         "seeds": grouped.size()})


def _budgets(rows: pd.DataFrame) -> list[float]:
    """Each row's label budget: points per megapixel where set, else points per image (NaN: dense)."""
    per_mp = rows["points_per_mp"] if "points_per_mp" in rows else pd.Series(np.nan, index=rows.index)
    return list(per_mp.fillna(rows["points_per_image"].astype(float)))


def describe_record(record: dict[str, Any], width: int = 72) -> str:
    """Where, when and how a committed study record was made, and its command wrapped to ``width``
    characters (a notebook column), for printing above its results."""
    runs = pd.DataFrame(record["runs"])
    machine = record["machine"]
    weights = runs["weights_used"].iloc[0] or "random"
    command = " \\\n".join(textwrap.wrap(record["command"], width, subsequent_indent="    ",
                                         break_on_hyphens=False, break_long_words=False))
    return (f"{record['date']}, {machine['processor']}\n({machine['cpu_threads']} threads), "
            f"torch {machine['torch']}:\n{record['train_images']} training and {record['val_images']} "
            f"validation images, {int(runs['steps'].iloc[0])} steps per run,\n"
            f"DeepLabV3-{record['settings']['backbone']} from {weights} weights; made with:\n{command}")


@dataclass(frozen=True)
class StudyRecord:
    """A committed study record read back: its JSON, every run, and the summary per setting."""

    path: Path
    record: dict[str, Any]
    runs: pd.DataFrame
    summary: pd.DataFrame

    @property
    def majority_miou(self) -> float:
        """The mIoU of the majority class painted everywhere, on the same validation images."""
        return float(self.record["majority_baseline"]["mean_iou"])

    def describe(self, width: int = 72) -> str:
        """Where, when and how the study ran (:func:`describe_record`)."""
        return describe_record(self.record, width)

    def table(self) -> pd.DataFrame:
        """The summary as a notebook shows it (:func:`summary_table`)."""
        return summary_table(self.summary)

    def per_class_iou(self) -> pd.DataFrame:
        """Mean IoU of each scored class per setting (:func:`per_class_iou`)."""
        return per_class_iou(self.runs)

    def paired_gaps(self, reference: str = DENSE) -> pd.DataFrame:
        """Each setting's mIoU minus the reference's on the same seed (:func:`paired_gaps`)."""
        return paired_gaps(self.runs, reference)


def load_record(path: str | Path) -> StudyRecord:
    """Read a study record written by ``benchmarks/label_density.py`` and summarise its runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no study record here (run the command in the README to make it)")
    record = json.loads(path.read_text())
    runs = pd.DataFrame(record["runs"])
    return StudyRecord(path, record, runs, summarize(runs))
