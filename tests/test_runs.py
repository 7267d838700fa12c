"""One description of a run (RunSpec), one builder (build_run), and notebook 04's steps agreeing with it."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from lc_utils import checkpoints, files, point_files, run_data, run_spec, runs, settings, sparse, training
from lc_utils.cli import EXECUTION_OPTIONS, build_parser, main, parse_args, spec_from_args
from lc_utils.run_spec import DENSE, RunSpec
from lc_utils.runs import build_run
from lc_utils.transforms import LabelledRandomCrop

NOTEBOOK_04 = settings.PROJECT_ROOT / "notebooks" / "04_training_partial_loss.ipynb"


def _tiny(root: Path, **changes) -> RunSpec:
    """A spec that builds in a second on the 8 generated 96 x 96 images."""
    return RunSpec(**{"data": str(root), "backbone": "mobilenet_v3_large", "weights": None, "crop": 48,
                      "batch_size": 2, "epochs": 1, "samples_per_epoch": 4, "val_windows": 2,
                      "points_per_image": 20, **changes})


def test_a_spec_round_trips_through_toml_and_json(tmp_path: Path) -> None:
    spec = RunSpec(data="/data/deepglobe", weights=None, schedule=None, samples_per_epoch=None,
                   strategy="stratified", points_per_mp=150.5, prior_correction=True, label_smoothing=0.1)
    for name in ("run.toml", "run.json"):
        assert RunSpec.load(spec.save(tmp_path / name)) == spec
    toml = (tmp_path / "run.toml").read_text()
    assert 'weights = "none"' in toml and "prior_correction = true" in toml
    assert 'data = "/data/deepglobe"' in toml


def test_a_spec_says_what_is_wrong_and_names_the_source() -> None:
    with pytest.raises(ValueError, match="run.toml: unknown field 'learning_rate'"):
        RunSpec.from_dict({"learning_rate": 0.1}, "run.toml")
    with pytest.raises(ValueError, match="run.toml: epochs must be int, got 2.5"):
        RunSpec.from_dict({"epochs": 2.5}, "run.toml")
    with pytest.raises(ValueError, match="run.toml: .*backbone must be one of"):
        RunSpec.from_dict({"backbone": "resnet18"}, "run.toml")
    with pytest.raises(ValueError, match="strategy must be one of"):
        RunSpec(strategy="random")
    with pytest.raises(ValueError, match="points need a budget"):
        RunSpec(points_per_mp=None)
    with pytest.raises(ValueError, match="dense labels have none to correct"):
        RunSpec(strategy=DENSE, prior_correction=True)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        RunSpec(batch_size=0)
    with pytest.raises(ValueError, match="prior_correction must be bool"):
        RunSpec.from_dict({"prior_correction": "maybe"})
    with pytest.raises(ValueError, match="crop_sampling must be one of"):
        RunSpec(crop_sampling="rare-first")
    with pytest.raises(ValueError, match="color_jitter must be between 0 and 1"):
        RunSpec(color_jitter=1.5)
    with pytest.raises(ValueError, match="dice_weight cannot be negative"):
        RunSpec(dice_weight=-1)
    with pytest.raises(ValueError, match=r"val_overlap must be in \[0, 1\)"):
        RunSpec(val_overlap=1.0)


def test_a_spec_has_one_budget() -> None:
    """Points per image replace points per megapixel; an annotation file or dense labels replace both,
    so that two specs of the same run compare equal."""
    assert RunSpec(points_per_image=100) == RunSpec(points_per_mp=None, points_per_image=100)
    assert RunSpec(annotations="a.csv").points_per_mp is None
    assert RunSpec(strategy=DENSE) == RunSpec(strategy=DENSE, points_per_mp=7)
    assert RunSpec(weights="none").weights is None and RunSpec(data=Path("x")).data == "x"


def test_the_command_is_made_from_the_fields() -> None:
    """Every field has a docstring and one group; its option's help is that docstring, it sits in
    that group, and a field with choices takes only those (so the command cannot drift from the
    spec: nothing about a field is written twice)."""
    fields = [f.name for f in dataclasses.fields(RunSpec)]
    docs = RunSpec.field_docs()
    assert set(docs) == set(fields) and all(len(doc) > 10 for doc in docs.values())
    grouped = [name for names in run_spec.FIELD_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(fields)
    parser = build_parser()
    groups = {group.title: {action.dest for action in group._group_actions}
              for group in parser._action_groups}
    for title, names in run_spec.FIELD_GROUPS.items():
        assert set(names) <= groups[title]
    actions = {action.dest: action for action in parser._actions}
    for name in fields:
        assert actions[name].help.startswith(docs[name].replace("%", "%%")), name
    assert "(default: %(default)s)" in actions["lr"].help
    assert actions["backbone"].choices == list(run_spec.CHOICES["backbone"])
    assert "--lr LR" in parser.format_help() and "DeepLabV3's backbone" in parser.format_help()
    with pytest.raises(SystemExit):
        parse_args(["--crop-sampling", "rare-first"])


@pytest.mark.parametrize("fast", ["0", "1"])
def test_every_field_is_one_option_of_the_training_command(fast: str, monkeypatch) -> None:
    """A field added to RunSpec without its option (or an option that is neither a field nor an
    execution option) fails here; the command's defaults are notebook 04's, in either mode."""
    monkeypatch.setenv("LC_FAST", fast)
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    options = {action.dest for action in build_parser()._actions if action.dest != "help"}
    assert fields <= options, f"fields without an option: {sorted(fields - options)}"
    assert options - fields == set(EXECUTION_OPTIONS)
    spec = spec_from_args(parse_args([]))
    assert spec == RunSpec.course_defaults()
    assert spec_from_args(parse_args(["--points-per-image", "30", "--seed", "2", "--schedule", "none"])) == \
        RunSpec.course_defaults(points_per_image=30, seed=2, schedule=None)
    # Fast mode's recipe follows the data: the sample's rate, or real imagery's with the Dice term.
    real = spec_from_args(parse_args(["--data", "/data/tiles"]))
    assert real == RunSpec.course_defaults(data="/data/tiles")
    if fast == "1":
        for made, recipe in ((real, run_spec.REAL_IMAGERY_RECIPE), (spec, run_spec.SAMPLE_RECIPE)):
            assert {name: getattr(made, name) for name in recipe} == recipe
    assert spec_from_args(parse_args(["--data", "/data/tiles", "--lr", "0.01"])).lr == 0.01


def _notebook_04_steps(data: Path, runs_dir: Path) -> dict:
    """Notebook 04's code as a learner runs it, from its imports to the cell that builds the same run
    with build_run, with DATA_DIR and RUNS_DIR set after the parameters (as papermill would)."""
    notebook = nbformat.read(NOTEBOOK_04, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    start = next(i for i, c in enumerate(code) if "from lc_utils import" in c.source)
    end = next(i for i, c in enumerate(code) if "runs.build_run(" in c.source)
    namespace: dict = {}
    for cell in code[start:end + 1]:
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!")))
        exec(compile(source, str(NOTEBOOK_04), "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(DATA_DIR=str(data), RUNS_DIR=str(runs_dir))
    return namespace


@pytest.mark.slow
def test_notebook_04_step_by_step_is_what_build_run_builds(sample_root: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    """The same description gives the same split, points, first batch, validation windows and
    starting weights whether notebook 04 assembles it cell by cell or build_run does; the
    notebook's parameters are the training command's defaults."""
    monkeypatch.setenv("LC_FAST", "1")
    monkeypatch.delenv("LC_SMOKE", raising=False)
    steps = _notebook_04_steps(sample_root, tmp_path / "runs")
    spec = steps["spec"]
    assert spec == RunSpec.course_defaults(data=str(sample_root))
    run = build_run(spec, runs_dir=tmp_path / "runs")
    assert run.split == steps["split"] and run.annotations == steps["train_set"].annotations
    assert run.annotation_path == steps["path"]
    for ours, theirs in zip(training.first_batch(steps["train_loader"], spec.seed),
                            training.first_batch(run.train_loader, spec.seed)):
        assert torch.equal(ours, theirs)
    assert run.val_set.windows == steps["val_set"].windows
    notebook_weights, built_weights = steps["model"].state_dict(), run.model.state_dict()
    assert notebook_weights.keys() == built_weights.keys()
    assert all(torch.equal(notebook_weights[k], built_weights[k]) for k in notebook_weights)
    assert steps["same_batch"] and steps["same_weights"]  # what the notebook prints


@pytest.mark.slow
def test_a_run_folder_keeps_its_spec_and_refuses_another(sample_root: Path, tmp_path: Path) -> None:
    spec = _tiny(sample_root)
    run_dir = tmp_path / "runs" / "tiny"
    history = build_run(spec, runs_dir=tmp_path / "runs").train(run_dir, progress=False)
    assert len(history) == 1 and 0 <= history[0]["val_mean_iou"] <= 1
    assert RunSpec.load(run_dir / run_spec.SPEC_FILE) == spec
    assert checkpoints.load_checkpoint(run_dir / checkpoints.LAST)["config"]["strategy"] == "uniform"
    # Another description of the run is refused on resume, and run.toml stays the run's own.
    other = spec.replace(strategy="grid")
    with pytest.raises(ValueError, match=r"other settings \(.*strategy"):
        build_run(other, runs_dir=tmp_path / "runs").train(run_dir, progress=False)
    assert RunSpec.load(run_dir / run_spec.SPEC_FILE) == spec
    # The command reads the folder's run.toml back: the same run, found finished.
    args = ["--config", str(run_dir / run_spec.SPEC_FILE), "--runs-dir", str(tmp_path / "runs"),
            "--run-name", "tiny"]
    assert main(args) == 0
    assert main([*args, "--seed", "1"]) == 2  # another seed is another run
    # A checkpoint written before a field existed (no dice_weight in its config) is the same run
    # when the field keeps its default, and another run when it does not.
    state = checkpoints.load_checkpoint(run_dir / checkpoints.LAST)
    del state["config"]["dice_weight"]
    torch.save(state, run_dir / checkpoints.LAST)
    assert build_run(spec, runs_dir=tmp_path / "runs").train(run_dir, progress=False) == history
    with pytest.raises(ValueError, match=r"other settings \(dice_weight\)"):
        build_run(spec.replace(dice_weight=1.0), runs_dir=tmp_path / "runs").train(run_dir, progress=False)


def test_load_run_rebuilds_a_trained_run_from_its_checkpoint(sample_root: Path, tmp_path: Path) -> None:
    spec = _tiny(sample_root)
    trained = build_run(spec, runs_dir=tmp_path)
    trained.train(tmp_path / "run", progress=False)
    loaded = runs.load_run(tmp_path / "run" / checkpoints.BEST, runs_dir=tmp_path)
    assert loaded.spec == spec and loaded.split == trained.split
    assert loaded.annotation_path == trained.annotation_path
    assert loaded.annotations.keys() == trained.annotations.keys()
    assert not loaded.model.training
    for name, value in trained.model.state_dict().items():
        if not name.startswith("net.aux_classifier."):
            assert torch.equal(loaded.model.state_dict()[name], value), name
    state = checkpoints.load_checkpoint(tmp_path / "run" / checkpoints.BEST)
    del state["config"]
    torch.save(state, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt: the checkpoint holds no run spec"):
        runs.load_run(tmp_path / "bare.pt")


@pytest.mark.slow
def test_build_run_takes_dense_labels_an_annotation_file_and_loss_options(sample_root: Path,
                                                                          tmp_path: Path) -> None:
    dense = build_run(_tiny(sample_root, strategy=DENSE), runs_dir=tmp_path)
    assert dense.annotations is None and dense.labelled_fraction == 1.0
    assert dense.annotation_path is None
    sampled = build_run(_tiny(sample_root, strategy="stratified", prior_correction=True,
                              loss_weights="inverse-sqrt", label_smoothing=0.1), runs_dir=tmp_path)
    assert sampled.annotation_path.parent.parent == tmp_path / "annotations"
    assert sampled.loss_fn.logit_adjustment is not None and sampled.loss_fn.weight is not None
    assert sampled.loss_fn.label_smoothing == 0.1
    from_file = build_run(_tiny(sample_root, annotations=str(sampled.annotation_path)), runs_dir=tmp_path)
    assert from_file.annotations == sampled.annotations
    # The file holds every image's points; a run trains on its training images' points only.
    assert set(sampled.annotations) == set(files.image_shapes(sampled.split["train"]))
    on_file = point_files.load_annotations(sampled.annotation_path)
    assert len(on_file) == 8 and all(on_file[i] == sampled.annotations[i] for i in sampled.annotations)
    assert from_file.loss_fn.logit_adjustment is None and from_file.loss_fn.weight is None
    no_validation = build_run(_tiny(sample_root, val_windows=0), runs_dir=tmp_path)
    assert no_validation.val_loader is None
    held_out = build_run(_tiny(sample_root, val_images=3), runs_dir=tmp_path)
    assert sorted(held_out.split) == ["train", "val"]
    assert [len(held_out.split[k]) for k in ("train", "val")] == [5, 3]
    partial = tmp_path / "partial.csv"
    lines = sampled.annotation_path.read_text().splitlines()
    first_id = files.image_id_of(sampled.split["train"][0][0])
    partial.write_text("\n".join(line for line in lines if not line.startswith(f"{first_id},")) + "\n")
    with pytest.raises(ValueError, match="partial.csv: no points for 1 training images"):
        build_run(_tiny(sample_root, annotations=str(partial)), runs_dir=tmp_path)
    assert json.loads(json.dumps(sampled.spec.to_dict())) == sampled.spec.to_dict()  # plain values


def test_the_recipe_fields_reach_the_run(sample_root: Path, tmp_path: Path) -> None:
    run = build_run(_tiny(sample_root, strategy=DENSE, crop_sampling="class-balanced", color_jitter=0.2,
                          dice_weight=1.0), runs_dir=tmp_path)
    assert run.loss_fn.dice_weight == 1.0
    steps = run.train_set.transform.transforms
    assert any(isinstance(t, LabelledRandomCrop) and t.balance_classes for t in steps)
    assert any(isinstance(t, v2.ColorJitter) for t in steps)
    plain = build_run(_tiny(sample_root, strategy=DENSE), runs_dir=tmp_path)
    assert plain.loss_fn.dice_weight == 0.0
    assert not any(isinstance(t, v2.ColorJitter) or getattr(t, "balance_classes", False)
                   for t in plain.train_set.transform.transforms)


def test_superpixel_area_trains_on_the_points_spread_over_their_superpixels(sample_root: Path,
                                                                             tmp_path: Path) -> None:
    points = build_run(_tiny(sample_root), runs_dir=tmp_path)
    spread = build_run(_tiny(sample_root, superpixel_area=50), runs_dir=tmp_path)
    assert spread.annotations == points.annotations and spread.labelled_fraction == points.labelled_fraction
    for index, image_id in enumerate(spread.train_set.image_ids):
        _, labels = spread.train_set.read_item(index)
        annotation = spread.annotations[image_id]
        assert np.array_equal(labels[annotation.rows, annotation.cols], annotation.labels)
        assert (labels != 255).sum() > 3 * len(annotation)
    assert spread.trained_fraction > 3 * spread.labelled_fraction
    assert all(p.parent.name == f"propagated_{points.annotation_path.stem}"
               for p in spread.train_set.label_maps.values())
    with pytest.raises(ValueError, match="dense labels have none to spread"):
        RunSpec(strategy=DENSE, superpixel_area=50)
    assert spec_from_args(parse_args(["--superpixel-area", "900"])).superpixel_area == 900


def test_self_training_shares_the_epochs_and_adds_confident_pixels_around_the_points(
        sample_root: Path, tmp_path: Path) -> None:
    spec = _tiny(sample_root, epochs=2, self_training_rounds=1, pseudo_threshold=0.5, val_windows=0)
    run = build_run(spec, runs_dir=tmp_path)
    points_steps = build_run(spec.replace(self_training_rounds=0), runs_dir=tmp_path).steps
    history = run.train(tmp_path / "run", progress=False)
    assert [row["round"] for row in history] == [0, 1] and run.steps == points_steps
    assert (tmp_path / "run" / "round1" / "last.pt").is_file()
    assert run.trained_fraction > 3 * run.labelled_fraction
    for index, image_id in enumerate(run.train_set.image_ids):
        labels = run.train_set.read_item(index)[1]
        points = run.annotations[image_id]
        assert np.array_equal(labels[points.rows, points.cols], points.labels)
        assert not (labels == run.schema.unknown_index).sum() > len(points)
    resumed = build_run(spec, runs_dir=tmp_path)
    assert resumed.train(tmp_path / "run", progress=False) == history
    with pytest.raises(ValueError, match="shared evenly"):
        spec.replace(epochs=3)
    with pytest.raises(ValueError, match="dense labels leave no pixel"):
        RunSpec(strategy=DENSE, self_training_rounds=1, epochs=2)


def test_a_run_trains_on_other_labels_in_the_same_crops(sample_root: Path, tmp_path: Path) -> None:
    run = build_run(_tiny(sample_root, val_windows=0), runs_dir=tmp_path)
    _, first_targets = next(iter(run.train_loader))
    maps = {image_id: np.full((96, 96), 2, np.uint8) for image_id in run.train_set.image_ids}
    run.train_on(maps)
    images, targets = next(iter(run.train_loader))
    assert (targets == 2).all() and (first_targets == 255).any()
    assert run.trained_fraction == 1.0 and run.base_train_set is not run.train_set
    again = build_run(_tiny(sample_root, val_windows=0), runs_dir=tmp_path)
    assert torch.equal(next(iter(again.train_loader))[1], first_targets)
    again.train_on(maps)
    assert torch.equal(next(iter(again.train_loader))[0], images)  # the same seed, the same crops


def _images_only(sample_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The sample's images in a folder of their own, and points "clicked" from the set-aside masks
    on six of the eight images (a person has not got to the others yet)."""
    import shutil

    from lc_utils import layouts
    from lc_utils.masks import read_mask

    folder = tmp_path / "my_images"
    folder.mkdir()
    pairs = layouts.find_pairs(sample_root)
    for image, _ in pairs:
        shutil.copy(image, folder / image.name)
    clicked = {files.image_id_of(image): sparse.sample_points(read_mask(mask), n_points=30, seed=k)
               for k, (image, mask) in enumerate(pairs[:6])}
    clicked = {i: dataclasses.replace(a, sources=np.array(["person"] * len(a), dtype=object))
               for i, a in clicked.items()}
    return folder, point_files.save_annotations(clicked, tmp_path / "clicks.csv")


@pytest.mark.slow
@pytest.mark.parametrize("held_out", ["images", "areas"])
def test_images_without_masks_train_from_clicked_points_and_validate_on_held_out_ones(
        sample_root: Path, tmp_path: Path, held_out: str) -> None:
    folder, clicks = _images_only(sample_root, tmp_path)
    spec = _tiny(folder, annotations=str(clicks), held_out=held_out, held_out_share=0.3,
                 points_per_image=None, split_seed=1)
    run = build_run(spec, runs_dir=tmp_path / "runs")
    clicked = point_files.load_annotations(clicks)
    assert run.val_set is None and run.val_points
    assert {files.image_id_of(i) for i, _ in run.split["train"]} == set(run.annotations) <= set(clicked)
    for image_id, held in run.val_points.items():  # every held-out point is a clicked one, never trained on
        trained = run.annotations.get(image_id)
        held_pixels = set(zip(held.rows.tolist(), held.cols.tolist()))
        assert held_pixels <= set(zip(clicked[image_id].rows.tolist(), clicked[image_id].cols.tolist()))
        assert trained is None or not held_pixels & set(zip(trained.rows.tolist(), trained.cols.tolist()))
    if held_out == "images":
        assert not set(run.val_points) & set(run.annotations)
    history = run.train(tmp_path / "run", progress=False)
    assert 0 <= history[-1]["val_mean_iou"] <= 1 and 0 <= history[-1]["val_pixel_accuracy"] <= 1
    with pytest.raises(ValueError, match="has no mask; score the model on held-out points"):
        run.train_set.read_class_map(0)


def test_val_images_split_the_images_alike_with_their_masks_or_without(sample_root: Path,
                                                                      tmp_path: Path) -> None:
    folder, clicks = _images_only(sample_root, tmp_path)
    for val_images in (None, 3):
        with_masks = run_data.load_data(_tiny(sample_root, val_images=val_images)).split
        without = run_data.load_data(_tiny(folder, annotations=str(clicks), val_images=val_images)).split
        names = {part: [image.name for image, _ in pairs] for part, pairs in without.items()}
        assert names == {part: [image.name for image, _ in pairs] for part, pairs in with_masks.items()}
    assert len(names["val"]) == 3 and all(mask is None for _, mask in without["train"])


def test_images_without_masks_say_what_they_need(sample_root: Path, tmp_path: Path) -> None:
    folder, clicks = _images_only(sample_root, tmp_path)
    with pytest.raises(FileNotFoundError, match="none has a mask; to train from points clicked on these"):
        build_run(_tiny(folder))
    with pytest.raises(ValueError, match="no masks, so no dense labels"):
        build_run(_tiny(folder, strategy=DENSE, annotations=str(clicks)))
    with pytest.raises(ValueError, match="no true class prior"):
        build_run(_tiny(folder, annotations=str(clicks), prior_correction=True))
    (tmp_path / "train_only.csv").write_text("image_id,row,col,label\n")
    with pytest.raises(ValueError, match="no point to train on"):
        build_run(_tiny(folder, annotations=str(tmp_path / "train_only.csv")))
    assert main(["--data", str(folder), "--annotations", str(clicks), "--held-out", "areas",
                 "--backbone", "mobilenet_v3_large", "--weights", "none", "--crop", "48", "--batch-size", "2",
                 "--epochs", "1", "--samples-per-epoch", "4", "--runs-dir", str(tmp_path / "runs")]) == 0


def _clicks_on_every_image(folder: Path, path: Path, label_of) -> Path:
    """Ten points on each image of ``folder``, labelled ``label_of(image_id)``."""
    from lc_utils import layouts

    images = layouts.find_unlabelled_images(folder)
    ids = [files.image_id_of(image) for image in images]
    clicked = {i: sparse.PointAnnotation(np.arange(10), np.arange(10) * 3, np.full(10, label_of(i)))
               for i in ids}
    return point_files.save_annotations(clicked, path)


def test_held_out_points_that_no_score_counts_are_refused_when_the_run_is_built(sample_root: Path,
                                                                                 tmp_path: Path) -> None:
    """Every held-out point on "unknown" (left out of every score): an error before training, not
    after its first epoch."""
    folder, _ = _images_only(sample_root, tmp_path)
    split = run_data.load_data(_tiny(folder, annotations="x.csv", val_images=3)).split
    val_ids = {files.image_id_of(image) for image, _ in split["val"]}
    clicks = _clicks_on_every_image(folder, tmp_path / "unknown.csv", lambda i: 6 if i in val_ids else 1)
    with pytest.raises(ValueError, match="every point on the validation images is 'unknown', a class no"):
        build_run(_tiny(folder, annotations=str(clicks), val_images=3), runs_dir=tmp_path / "runs")


def test_points_on_test_images_are_named_rather_than_dropped(sample_root: Path, tmp_path: Path) -> None:
    folder, _ = _images_only(sample_root, tmp_path)
    clicks = _clicks_on_every_image(folder, tmp_path / "all.csv", lambda i: 1)
    with pytest.warns(UserWarning, match=r"10 of the 80 points lie on 1 test image\(s\).*neither trained on "
                                         "nor validated on. Give val_images=N"):
        run = build_run(_tiny(folder, annotations=str(clicks)), runs_dir=tmp_path / "runs")
    assert len(run.split["test"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no test part, nothing left out: no warning
        build_run(_tiny(folder, annotations=str(clicks), val_images=2), runs_dir=tmp_path / "runs")


def test_points_on_an_image_without_its_mask_say_so(sample_root: Path, tmp_path: Path) -> None:
    """DeepGlobe's layout: masks for train/, none for valid/. Points clicked on a valid/ image are
    named as points on an image without a mask, not as an image the folder does not hold."""
    import shutil

    folder = tmp_path / "deepglobe"
    shutil.copytree(sample_root / "train", folder / "train")
    (folder / "valid").mkdir()
    shutil.copy(next((folder / "train").glob("*_sat.jpg")), folder / "valid" / "0100_sat.jpg")
    ids = [files.image_id_of(image) for image in folder.rglob("*_sat.jpg")]
    clicked = {i: sparse.PointAnnotation(np.arange(5), np.arange(5), np.ones(5, dtype=int)) for i in ids}
    clicks = point_files.save_annotations(clicked, tmp_path / "clicks.csv")
    with pytest.raises(ValueError, match=r"clicks.csv: image\(s\) with points but no mask: '0100' "
                                         r"\(line \d+\); where some images have masks, a run trains"):
        build_run(_tiny(folder, annotations=str(clicks)), runs_dir=tmp_path / "runs")


def test_a_hand_edited_sampled_file_is_checked_when_the_run_is_built(sample_root: Path,
                                                                     tmp_path: Path) -> None:
    """The course's own sampled file, edited by hand: a point outside its image, or on an image the
    folder does not hold, is an error naming the file and line when the run is built, not when the
    image is first read."""
    spec = _tiny(sample_root)
    run = build_run(spec, runs_dir=tmp_path / "runs")
    path = run.annotation_path
    original = path.read_text()
    image_id = sorted(run.annotations)[0]
    for line, match in ((f"{image_id},500,3,1,agriculture", "row 500"),
                        ("9999,3,3,1,agriculture", "'9999'")):
        path.write_text(original.rstrip("\n") + f"\n{line}\n")
        with pytest.raises(ValueError, match=rf"{path.name}.*{match}"):
            build_run(spec, runs_dir=tmp_path / "runs")
