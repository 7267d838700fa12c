"""Training in two processes over gloo on the CPU, spawned by the tests and bounded in time:
validation sums the processes' confusion matrices into the one of a single process, two
processes with synchronised batch norm take the same steps as one process with the same global
batch, and ``torchrun -m lc_utils.cli`` finishes with one set of checkpoints."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lc_utils import distributed
from lc_utils.distributed import EpochSampler
from lc_utils.inference import evaluate
from lc_utils.settings import PROJECT_ROOT
from lc_utils.training import TrainingStep, fit, make_loader

PROCESSES = 2
TIME_LIMIT_S = 120
WEIGHT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
"""Two processes sum their batch statistics and gradients in another order than one process:
float32 rounding, ~1e-7 relative per step, is all that may differ."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(n: int, size: int = 16, seed: int = 0, sparse: bool = True) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=generator)
    labels = torch.randint(0, 7, (n, size, size), generator=generator)
    if sparse:  # a few labelled pixels, a different number in every image
        keep = torch.rand(n, size, size, generator=generator) < torch.linspace(0.02, 0.3, n)[:, None, None]
        labels[~keep] = 255
    return TensorDataset(images, labels)


def _model() -> nn.Module:
    torch.manual_seed(0)
    # No bias before the batch norm (as in ResNet): it would get a zero gradient up to rounding,
    # which AdamW scales up to full steps of noise.
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 7, 1))


def _steps(model: nn.Module, per_process_batch: int) -> nn.Module:
    """Two epochs of 16 images in global batches of 8, no shuffling noise beyond the sampler's."""
    loader = DataLoader(_images(16), batch_size=per_process_batch, sampler=EpochSampler(16, seed=3))
    fit(TrainingStep(model, lr=1e-2, schedule=None, channels_last=False), loader, epochs=2, progress=False,
        seed=0)
    return model  # fit wraps it in DistributedDataParallel for the steps, and trains it in place


def _worker(rank: int, port: int, task: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(PROCESSES), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        if task == "confusion":
            loader = make_loader(_images(5, sparse=False), 2, shuffle=False)
            result = torch.as_tensor(evaluate(_model(), loader, 7).matrix)
        else:
            model = _model()
            if task == "sync-bn":
                model = distributed.sync_batchnorm(model, torch.device("cpu"))
            result = _steps(model, 8 // PROCESSES).state_dict()
        if rank == 0:
            torch.save(result, out)
    finally:
        distributed.shutdown()


def _spawn(task: str, tmp_path: Path):
    import torch.multiprocessing as mp

    out = tmp_path / f"{task}.pt"
    context = mp.start_processes(_worker, args=(_free_port(), task, str(out)), nprocs=PROCESSES, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIME_LIMIT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{PROCESSES} processes did not finish '{task}' in {TIME_LIMIT_S} s")
    return torch.load(out, weights_only=True)


@pytest.mark.slow
def test_validation_sums_the_confusion_matrices_of_the_processes(tmp_path: Path) -> None:
    # 5 images over 2 processes: 3 and 2, none counted twice (a padding sampler would repeat one).
    summed = _spawn("confusion", tmp_path)
    single = evaluate(_model(), make_loader(_images(5, sparse=False), 2, shuffle=False), 7).matrix
    assert summed.sum() == 5 * 16 * 16
    assert torch.equal(summed, torch.as_tensor(single))


@pytest.mark.slow
def test_two_processes_with_sync_batchnorm_step_like_one_with_the_same_global_batch(tmp_path: Path) -> None:
    single = _steps(_model(), 8).state_dict()
    synced = _spawn("sync-bn", tmp_path)
    for name, value in single.items():
        torch.testing.assert_close(synced[name], value, **WEIGHT_TOLERANCE, msg=name)
    # Without synchronised statistics each process normalises with its own half batch: the steps
    # differ, so the check above can tell.
    unsynced = _spawn("plain", tmp_path)
    assert not all(torch.allclose(unsynced[k], v, **WEIGHT_TOLERANCE) for k, v in single.items()
                   if v.is_floating_point())


def test_global_batch_must_divide_and_one_process_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert distributed.world_size() == 1 and distributed.is_main() and not distributed.active()
    assert distributed.per_rank_batch(8) == 8
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="global batch size 8 does not divide among 3 processes"):
        distributed.per_rank_batch(8)


def test_epoch_sampler_shares_one_sequence_out() -> None:
    sampler = EpochSampler(5, 12, seed=1)
    sampler.set_epoch(2)
    sequence = list(sampler)
    assert len(sequence) == 12 and sorted(sequence[:5]) == list(range(5))  # each item once per pass
    sampler.set_epoch(3)
    assert list(sampler) != sequence
    shares = []
    for rank in range(3):
        share = EpochSampler(5, 12, seed=1)
        share.rank, share.world_size = rank, 3
        share.set_epoch(2)
        shares.append(list(share))
    assert [len(s) for s in shares] == [4, 4, 4]
    assert [x for step in zip(*shares) for x in step] == sequence  # interleaved, they are the sequence


@pytest.mark.slow
def test_torchrun_two_processes_train_and_write_one_run(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    from lc_utils.synthetic import make_sample_dataset

    data = make_sample_dataset(tmp_path / "data", n_images=16, size=64, seed=0)
    env = {**os.environ, "LC_FAST": "1", "OMP_NUM_THREADS": "1"}
    command = [torchrun, "--standalone", f"--nproc_per_node={PROCESSES}", "-m", "lc_utils.cli",
               "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--run-name", "ddp",
               "--backbone", "mobilenet_v3_large", "--weights", "none", "--crop", "64", "--batch-size", "4",
               "--epochs", "2", "--samples-per-epoch", "8", "--val-windows", "2", "--sync-bn"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
                          timeout=TIME_LIMIT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "global batch 4 = 2 x 2; 2 steps per epoch" in done.stdout
    assert done.stdout.count("epoch 2/2: loss") == 1  # rank 0 alone reports
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "history.csv", "last.pt", "run.toml"]
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["config"]["batch_size"] == 4
    assert not any(k.startswith("module.") for k in checkpoint["model"])  # the model, not its wrapper


def test_the_command_says_what_is_wrong(tmp_path: Path, sample_root: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from lc_utils.cli import main

    def error(*argv: str) -> str:
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    assert "nowhere: DATA_DIR is not a folder" in error("--data", str(tmp_path / "nowhere"))
    config = tmp_path / "run.toml"
    config.write_text('epochs = 3\nlearning_rate = 0.1\n')
    assert "run.toml: unknown option 'learning_rate'" in error("--config", str(config))
    config.write_text('epochs = 3\nbackbone = "resnet18"\n')
    assert "backbone = 'resnet18' is not one of" in error("--config", str(config))
    config.write_text('epochs = [3\n')
    assert "run.toml: not a readable TOML file" in error("--config", str(config))
    assert "missing.toml: config file not found" in error("--config", str(tmp_path / "missing.toml"))
    assert "potsdamm: neither a schema preset" in error("--schema", "potsdamm")
    # an annotation file with a coordinate no image has: one line naming the file and line, no traceback
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("image_id,row,col,label\n0000,99999999999999999999,4,1\n")
    assert "clicks.csv:2: row 99999999999999999999, col 4 is outside image '0000'" in error(
        "--data", str(sample_root), "--annotations", str(clicks), "--runs-dir", str(tmp_path / "runs"))


def test_the_command_trains_with_the_schema_it_is_given(tmp_path: Path) -> None:
    from lc_utils.cli import main
    from lc_utils.synthetic import make_standin

    data = make_standin(tmp_path / "data", "mmseg", "potsdam", n_images=8, size=48, coding="index")
    assert main(["--data", str(data), "--schema", "potsdam", "--runs-dir", str(tmp_path / "runs"),
                 "--run-name", "p", "--backbone", "mobilenet_v3_large", "--weights", "none", "--crop", "48",
                 "--batch-size", "2", "--epochs", "1", "--samples-per-epoch", "2", "--val-windows", "1"]) == 0
    checkpoint = torch.load(tmp_path / "runs" / "p" / "best.pt", weights_only=True)
    assert checkpoint["model"]["net.classifier.4.weight"].shape[0] == 6  # Potsdam's six classes
    points = next((tmp_path / "runs" / "annotations").rglob("*.csv")).read_text()
    assert "low vegetation" in points and "urban" not in points


def test_config_file_and_command_line(tmp_path: Path) -> None:
    from lc_utils.cli import parse_args

    config = tmp_path / "run.json"
    config.write_text('{"epochs": 3, "batch-size": 16, "samples_per_epoch": null, "sync_bn": true}')
    args = parse_args(["--config", str(config), "--epochs", "5"])
    assert (args.epochs, args.batch_size, args.samples_per_epoch, args.sync_bn) == (5, 16, None, True)
    toml = tmp_path / "run.toml"
    toml.write_text('lr = 0.01\nresume = false\nweights = "none"\n')
    args = parse_args(["--config", str(toml)])
    assert (args.lr, args.resume, args.weights) == (0.01, False, None)
