import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lc_utils import checkpoints
from lc_utils.checkpoints import BEST, LAST, Checkpoint, Checkpoints, load_checkpoint, save_checkpoint
from lc_utils.classes import IGNORE_INDEX
from lc_utils.inference import evaluate, validator
from lc_utils.layouts import find_pairs
from lc_utils.metrics import ConfusionMatrix
from lc_utils.models import build_deeplabv3, load_trained_model
from lc_utils.point_files import ensure_annotations
from lc_utils.sparse import SparseLandCoverDataset
from lc_utils.training import (
    NonFiniteLossError,
    Schedule,
    TrainingStep,
    fit,
    lr_factor,
    make_loader,
    reestimate_batchnorm,
)
from lc_utils.transforms import make_transforms


def _colour_task(n: int = 16, size: int = 8, seed: int = 0) -> TensorDataset:
    """Images whose class is given by which channel is bright; 10% of pixels labelled."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n, size, size), generator=g)
    images = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 2 - 1
    images += 0.3 * torch.randn(images.shape, generator=g)
    sparse = labels.clone()
    sparse[torch.rand(labels.shape, generator=g) > 0.1] = IGNORE_INDEX
    return TensorDataset(images, sparse), TensorDataset(images, labels)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1))


def test_loss_falls_and_validation_improves_from_sparse_labels() -> None:
    sparse, dense = _colour_task()
    model = _tiny_model()
    before = evaluate(model, make_loader(dense, 8, shuffle=False), 3).summary()["pixel_accuracy"]
    history = fit(TrainingStep(model, lr=0.05), make_loader(sparse, 4, shuffle=True), epochs=8,
                  validate=validator(make_loader(dense, 8, shuffle=False)), progress=False)
    frame = pd.DataFrame(history)
    assert list(frame.columns) == ["epoch", "train_loss", "lr", "seconds", "images_per_s",
                                   "labelled_px_per_batch", "batches_without_labels",
                                   "val_mean_iou", "val_pixel_accuracy", "val_seconds"]
    assert frame.train_loss.iloc[-1] < 0.5 * frame.train_loss.iloc[0]
    assert frame.val_pixel_accuracy.iloc[-1] > 0.95 > before
    assert frame.lr.iloc[-1] < frame.lr.iloc[0]  # poly schedule


def _sample_run(sample_root: Path, tmp_path: Path):
    pairs = find_pairs(sample_root)[:4]
    annotations = ensure_annotations(tmp_path / "points.csv", pairs, n_points=50, seed=0)
    dataset = SparseLandCoverDataset(pairs, annotations, transform=make_transforms(48))
    return make_loader(dataset, 2, shuffle=True)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_resume_gives_identical_weights(sample_root: Path, tmp_path: Path) -> None:
    loader = _sample_run(sample_root, tmp_path)
    kwargs = {"epochs": 2, "seed": 3, "progress": False}

    torch.manual_seed(0)
    straight = build_deeplabv3(backbone="mobilenet_v3_large")
    fit(straight, loader, checkpoints=Checkpoints(tmp_path / "straight"), **kwargs)

    torch.manual_seed(0)
    first = build_deeplabv3(backbone="mobilenet_v3_large")
    # A disconnect at the first step of epoch 2: the model raises from its forward pass.
    calls = {"n": 0}

    class Disconnect(Exception):
        pass

    def crash_on_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > len(loader):
            raise Disconnect
        return original_forward(*args, **kwargs)

    original_forward = first.forward
    first.forward = crash_on_second_epoch  # type: ignore[method-assign]
    with pytest.raises(Disconnect):
        fit(first, loader, checkpoints=Checkpoints(tmp_path / "resumed"), **kwargs)
    assert load_checkpoint(tmp_path / "resumed" / LAST)["epoch"] == 0

    torch.manual_seed(123)  # a fresh process: other weights and RNG state until resume
    resumed = build_deeplabv3(backbone="mobilenet_v3_large")
    history = fit(resumed, loader, checkpoints=Checkpoints(tmp_path / "resumed"), resume=True, **kwargs)
    assert [r["epoch"] for r in history] == [1, 2]
    expected, got = _weights(straight), _weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    sparse, _ = _colour_task()
    loader = make_loader(sparse, 4, shuffle=True)
    fit(_tiny_model(), loader, epochs=1, checkpoints=Checkpoints(tmp_path), progress=False)
    with pytest.raises(ValueError, match="other settings \\(epochs\\)"):
        fit(_tiny_model(), loader, epochs=3, checkpoints=Checkpoints(tmp_path), resume=True, progress=False)
    with pytest.raises(ValueError, match="other settings \\(lr\\)"):
        fit(TrainingStep(_tiny_model(), lr=0.5), loader, epochs=1, checkpoints=Checkpoints(tmp_path),
            resume=True, progress=False)


WEIGHTS_ONLY = {"model", "epoch", "config", "model_config", "history", "best"}
RESUME_STATE = WEIGHTS_ONLY | {"optimizer", "scheduler", "scaler", "rng"}


@pytest.mark.parametrize(("every", "resume_points"), [(1, [0, 1, 2]), (2, [1])])
def test_checkpoint_contents(tmp_path: Path, monkeypatch, every: int, resume_points: list[int]) -> None:
    written = []

    def recording_save(state, path):
        written.append((Path(path).name, state["epoch"], set(state)))
        return save_checkpoint(state, path)

    monkeypatch.setattr(checkpoints, "save_checkpoint", recording_save)
    sparse, dense = _colour_task()
    fit(_tiny_model(), make_loader(sparse, 4, shuffle=True), epochs=4,
        checkpoints=Checkpoints(tmp_path, every, config={"note": "test"}),
        validate=validator(make_loader(dense, 8, shuffle=False)), progress=False)
    last = [(epoch, keys) for name, epoch, keys in written if name == LAST]
    # The resume state while there is something left to resume; the final weights alone at the end.
    assert last == [(e, RESUME_STATE) for e in resume_points] + [(3, WEIGHTS_ONLY)]
    assert all(keys == WEIGHTS_ONLY for name, _, keys in written if name == BEST)
    state = load_checkpoint(tmp_path / LAST)
    assert state["epoch"] == 3 and state["config"]["note"] == "test"
    assert len(pd.read_csv(tmp_path / "history.csv")) == 4


def test_a_finished_run_resumes_to_nothing(tmp_path: Path, capsys) -> None:
    sparse, _ = _colour_task()
    loader = make_loader(sparse, 4, shuffle=True)
    model = _tiny_model()
    history = fit(model, loader, epochs=2, checkpoints=Checkpoints(tmp_path), progress=False)
    again = _tiny_model()
    assert fit(again, loader, epochs=2, checkpoints=Checkpoints(tmp_path), resume=True) == history
    assert Checkpoint.read(tmp_path / LAST).finished
    assert "nothing left to train" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(tmp_path: Path) -> None:
    sparse, _ = _colour_task()
    loader = make_loader(sparse, 4, shuffle=True)
    model = _tiny_model()
    fit(model, loader, epochs=1, checkpoints=Checkpoints(tmp_path), progress=False)
    good = load_checkpoint(tmp_path / LAST)["model"]

    def poisoned(logits, target):
        return logits.sum() * float("nan")

    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 1, step 1"):
        fit(TrainingStep(model, poisoned), loader, epochs=1, checkpoints=Checkpoints(tmp_path / "b"),
            progress=False)
    after = load_checkpoint(tmp_path / LAST)["model"]
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint({"epoch": 1, "w": torch.ones(3)}, tmp_path / LAST)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [LAST]


def test_load_trained_model(sample_root: Path, tmp_path: Path) -> None:
    loader = _sample_run(sample_root, tmp_path)
    model = build_deeplabv3(backbone="mobilenet_v3_large")
    fit(model, loader, epochs=1, checkpoints=Checkpoints(tmp_path / "run"), progress=False)
    loaded = load_trained_model(tmp_path / "run" / LAST)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        load_trained_model(tmp_path / "nowhere.pt")


def test_empty_loader_is_refused() -> None:
    sparse, _ = _colour_task(n=3)
    with pytest.raises(ValueError, match="no batch"):
        fit(_tiny_model(), make_loader(sparse, 4, shuffle=True, drop_last=True), epochs=1, progress=False)


def test_evaluate_tiles_images_larger_than_a_window() -> None:
    from lc_utils.inference import predict_tiled

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    images = torch.randn(2, 3, 40, 48)
    labels = torch.randint(0, 3, (2, 40, 48))
    loader = make_loader(TensorDataset(images, labels), 1, shuffle=False)
    tiled = evaluate(model, loader, 3, tile_size=32)
    expected = ConfusionMatrix(3, schema=None)
    for image, label in zip(images, labels):
        expected.update(torch.from_numpy(predict_tiled(model, image, tile_size=32)), label)
    np.testing.assert_array_equal(tiled.matrix, expected.matrix)
    whole = evaluate(model, loader, 3, tile_size=64)
    assert not np.array_equal(whole.matrix, tiled.matrix)  # seams differ a little from one pass


def test_default_run_name_keeps_data_and_modes_apart(tmp_path: Path, monkeypatch) -> None:
    from lc_utils.settings import default_run_name

    monkeypatch.setenv("LC_FAST", "1")
    assert re.fullmatch(r"sparse_tiles_512-[0-9a-f]{6}_fast", default_run_name(tmp_path / "tiles_512"))
    monkeypatch.setenv("LC_FAST", "0")
    assert re.fullmatch(r"sparse_sample-[0-9a-f]{6}_full", default_run_name(tmp_path / "sample" / "."))


@pytest.mark.parametrize("schedule", ["poly", "cosine", None])
def test_warmup_then_decay(schedule: str | None) -> None:
    factors = [lr_factor(step, 100, schedule, warmup_steps=10) for step in range(100)]
    assert factors[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert factors[10] == pytest.approx(1.0)
    after = np.array(factors[10:])
    if schedule is None:
        assert (after == 1).all()
    else:
        assert (np.diff(after) < 0).all() and after[-1] < 0.05
    assert lr_factor(0, 100, schedule) == 1.0  # no warm-up: the full rate from the first step
    with pytest.raises(ValueError, match="schedule must be"):
        lr_factor(0, 10, "linear")
    with pytest.raises(ValueError, match="schedule must be"):
        Schedule("linear")


def test_fit_follows_the_warmup_schedule() -> None:
    sparse, _ = _colour_task(n=8)
    history = fit(TrainingStep(_tiny_model(), lr=0.1, schedule=Schedule("cosine", warmup_steps=4)),
                  make_loader(sparse, 4, shuffle=True), epochs=4, progress=False)
    # The lr recorded after each epoch (2 steps): warm-up to 0.1 over 4 steps, then cosine down.
    assert [round(r["lr"], 4) for r in history] == [round(0.1 * lr_factor(s, 8, "cosine", 4), 4)
                                                    for s in (2, 4, 6, 8)]


def test_samples_per_epoch_passes_over_every_image_in_turn() -> None:
    dataset = TensorDataset(torch.arange(5))
    torch.manual_seed(0)
    loader = make_loader(dataset, 3, shuffle=True, samples_per_epoch=15)
    seen = torch.cat([batch for (batch,) in loader])
    assert len(loader) == 5 and len(seen) == 15
    for k in range(3):  # three full passes, each a permutation of the five images
        assert sorted(seen[5 * k:5 * k + 5].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="shuffle"):
        make_loader(dataset, 3, shuffle=False, samples_per_epoch=15)


def test_reestimated_batchnorm_shows_lagging_running_statistics() -> None:
    """With torchvision's MobileNetV3 momentum (0.01) the running statistics still describe the
    random start after a short run: re-estimating them moves them much further than with 0.1.
    The re-estimate is the plain mean of the layer's inputs over the batches it saw."""
    sparse, _ = _colour_task(n=16)

    def shift_after_training(momentum: float) -> float:
        model = _tiny_model()
        model[1].momentum = momentum
        fit(TrainingStep(model, lr=0.05), make_loader(sparse, 4, shuffle=True), epochs=5, progress=False)
        before = model[1].running_mean.clone()
        inputs = []
        hook = model[1].register_forward_hook(lambda _, args, __: inputs.append(args[0]))
        reestimate_batchnorm(model, make_loader(sparse, 4, shuffle=False), batches=3)
        hook.remove()
        assert len(inputs) == 3 and model[1].momentum == momentum
        expected = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
        torch.testing.assert_close(model[1].running_mean, expected)
        return float((model[1].running_mean - before).abs().max())

    assert shift_after_training(0.01) > 2 * shift_after_training(0.1)
