"""The real-tile recipe benchmark: candidates at one pixel budget, the shrunk unseen originals, and
the committed record in the README."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._common import table_markers
from benchmarks.real_tile_recipe import (
    CANDIDATES,
    PIXELS_PER_RUN,
    RESULTS,
    VAL_OVERLAP,
    candidate_spec,
    markdown_table,
    shrunk_copy,
)
from lc_utils.layouts import find_pairs
from lc_utils.run_spec import REAL_IMAGERY_RECIPE, RunSpec
from lc_utils.settings import PROJECT_ROOT


def test_every_candidate_spends_the_same_pixels_and_is_scored_in_its_crop_windows() -> None:
    for name in CANDIDATES:
        spec = candidate_spec(name, Path("/data/tiles"), seed=1)
        steps = spec.epochs * spec.samples_per_epoch // spec.batch_size
        assert abs(steps * spec.batch_size * spec.crop**2 - PIXELS_PER_RUN) <= spec.batch_size * spec.crop**2
        assert (spec.val_window, spec.val_overlap, spec.seed) == (spec.crop, VAL_OVERLAP, 1)
        assert spec.val_windows * spec.crop**2 == 16 * 512**2  # every window of the 16 tiles


def test_shrunk_copy_keeps_pairs_and_mask_colours(sample_root: Path, tmp_path: Path) -> None:
    dest = shrunk_copy(sample_root, tmp_path / "small", size=48)
    source, shrunk = find_pairs(sample_root), find_pairs(dest)
    assert [i.name for i, _ in shrunk] == [i.name for i, _ in source]
    for (_, mask), (image, small_mask) in zip(source, shrunk):
        assert Image.open(image).size == Image.open(small_mask).size == (48, 48)
        colours = {tuple(c) for c in np.asarray(Image.open(mask).convert("RGB")).reshape(-1, 3)}
        assert {tuple(c) for c in np.asarray(Image.open(small_mask)).reshape(-1, 3)} <= colours
    (dest / "extra_sat.jpg").write_bytes(b"")  # made once: a second call does not rewrite the folder
    assert shrunk_copy(sample_root, dest, size=48) == dest and (dest / "extra_sat.jpg").exists()


def test_the_committed_record_chose_the_recipe_the_course_uses() -> None:
    record = json.loads(RESULTS.read_text())
    best = max(record["runs"], key=lambda run: run["val_mean_iou"])
    assert {name: best["spec"][name] for name in ("lr", "dice_weight")} == {
        name: REAL_IMAGERY_RECIPE[name] for name in ("lr", "dice_weight")}
    crops = best["spec"]["epochs"] * best["spec"]["samples_per_epoch"]
    assert crops == RunSpec.epochs * REAL_IMAGERY_RECIPE["samples_per_epoch"]  # fast mode's 20 epochs
    start, end = table_markers(RESULTS.stem)
    assert f"{start}\n{markdown_table(record)}\n{end}" in (PROJECT_ROOT / "README.md").read_text()
    assert RESULTS.with_suffix(".png").is_file() and record["command"] and record["machine"]
