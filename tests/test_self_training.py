"""Self-training as the field runs it: the student starts from a fully trained teacher, and its
control trains the same further epochs on the points alone, in the same crops."""

from pathlib import Path

import pytest
import torch

from lc_utils import checkpoints
from lc_utils.classes import IGNORE_INDEX
from lc_utils.run_spec import RunSpec
from lc_utils.runs import build_run
from lc_utils.self_training import ExtraTraining, from_teacher, pseudo_label_quality, train_further
from lc_utils.training import first_batch

EXTRA = ExtraTraining(epochs=1, color_jitter=0.4)


@pytest.fixture(scope="module")
def teacher(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A points-alone teacher trained its whole (tiny) schedule, its checkpoint kept."""
    work = tmp_path_factory.mktemp("teacher")
    spec = RunSpec(data=str(sample_root), backbone="mobilenet_v3_large", weights=None, crop=48, batch_size=2,
                   epochs=2, samples_per_epoch=8, val_windows=2, points_per_image=30, lr=2e-3,
                   pseudo_threshold=0.5)
    build_run(spec, runs_dir=work / "runs").train(work / "teacher", progress=False)
    return work / "teacher" / checkpoints.LAST


def test_the_student_and_the_control_start_from_the_teacher(teacher: Path, tmp_path: Path) -> None:
    saved = checkpoints.Checkpoint.read(teacher).weights
    for arm in ("points", "pseudo-labels"):
        run, _ = from_teacher(teacher, arm, EXTRA, runs_dir=teacher.parent.parent / "runs")
        weights = run.model.state_dict()
        assert all(torch.equal(weights[k], saved[k]) for k in weights), arm


def test_the_student_and_the_control_take_the_same_crops(teacher: Path) -> None:
    runs_dir = teacher.parent.parent / "runs"
    control, points = from_teacher(teacher, "points", EXTRA, runs_dir=runs_dir)
    student, pseudo = from_teacher(teacher, "pseudo-labels", EXTRA, runs_dir=runs_dir)
    (images_c, labels_c), (images_s, labels_s) = (first_batch(r.train_loader, 7) for r in (control, student))
    assert torch.equal(images_c, images_s)  # the same crops, flips, rotations and colour jitter
    labelled = labels_c != IGNORE_INDEX
    assert labelled.any() and torch.equal(labels_s[labelled], labels_c[labelled])  # points never overwritten
    assert (labels_s != IGNORE_INDEX).sum() > labelled.sum()  # the pseudo-labels add pixels
    assert all((pseudo[i] != IGNORE_INDEX).sum() >= (points[i] != IGNORE_INDEX).sum() for i in points)
    # the further epochs are jittered: without jitter the same crop differs
    plain, _ = from_teacher(teacher, "points", ExtraTraining(epochs=1, color_jitter=0.0), runs_dir=runs_dir)
    assert not torch.equal(first_batch(plain.train_loader, 7)[0], images_c)


def test_the_further_epochs_train_resumably_and_the_pseudo_labels_are_scored(teacher: Path,
                                                                             tmp_path: Path) -> None:
    runs_dir = teacher.parent.parent / "runs"
    student, pseudo = from_teacher(teacher, "pseudo-labels", EXTRA, runs_dir=runs_dir)
    history = train_further(student, "pseudo-labels", EXTRA, tmp_path / "student")
    assert len(history) == EXTRA.epochs and "val_mean_iou" in history[-1]
    saved = checkpoints.Checkpoint.read(tmp_path / "student" / checkpoints.LAST)
    assert saved.config["arm"] == "pseudo-labels" and saved.config["extra_color_jitter"] == 0.4
    again, _ = from_teacher(teacher, "pseudo-labels", EXTRA, runs_dir=runs_dir)
    assert train_further(again, "pseudo-labels", EXTRA, tmp_path / "student") == history  # resumed: done
    quality = pseudo_label_quality(student, pseudo)
    assert {"precision", "coverage"} <= set(quality.columns)
    assert ((quality["precision"].dropna() >= 0) & (quality["precision"].dropna() <= 1)).all()
    with pytest.raises(ValueError, match="arm must be one of"):
        from_teacher(teacher, "dense", EXTRA, runs_dir=runs_dir)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        ExtraTraining(epochs=0)


def test_the_consistency_arm_trains_the_points_with_the_term(teacher: Path, tmp_path: Path) -> None:
    runs_dir = teacher.parent.parent / "runs"
    run, maps = from_teacher(teacher, "consistency", EXTRA, runs_dir=runs_dir)
    control, points = from_teacher(teacher, "points", EXTRA, runs_dir=runs_dir)
    assert all((maps[i] == points[i]).all() for i in points)  # the labels are the points alone
    assert run.spec.consistency().weight == EXTRA.consistency_weight and control.spec.consistency() is None
    assert torch.equal(first_batch(run.train_loader, 3)[0], first_batch(control.train_loader, 3)[0])
    history = train_further(run, "consistency", EXTRA, tmp_path / "consistency")
    saved = checkpoints.Checkpoint.read(tmp_path / "consistency" / checkpoints.LAST)
    assert len(history) == 1 and saved.config["consistency_weight"] == EXTRA.consistency_weight
