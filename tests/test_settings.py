import re
from pathlib import Path

import pytest
import torch

from lc_utils import devices, settings
from lc_utils.course import pin_data_dir
from lc_utils.settings import prepare_data


def test_fast_mode_and_pick(monkeypatch) -> None:
    monkeypatch.setenv("LC_FAST", "1")
    assert settings.fast_mode() and settings.pick(100, 3) == 3
    monkeypatch.setenv("LC_FAST", "0")
    assert not settings.fast_mode() and settings.pick(100, 3) == 100
    monkeypatch.delenv("LC_FAST")
    assert not settings.fast_mode()


def test_device_choice_on_this_machine() -> None:
    device = devices.resolve_device(None)
    assert device == devices.default_device()
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.describe_device()


def test_seed_everything_repeats_draws() -> None:
    settings.seed_everything(5)
    a = torch.rand(3)
    settings.seed_everything(5)
    assert torch.equal(a, torch.rand(3))


def test_runs_dir(tmp_path: Path) -> None:
    assert settings.runs_dir(tmp_path / "r") == tmp_path / "r"
    assert (tmp_path / "r").is_dir()


def test_dataset_tag(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LC_FAST", "1")
    fast = settings.dataset_tag(tmp_path / "tiles_512")
    assert re.fullmatch(r"tiles_512-[0-9a-f]{6}_fast", fast)
    assert settings.dataset_tag(tmp_path / "x" / ".." / "tiles_512") == fast  # the folder, however named
    # Two folders of one name (two full_2448 of other originals) get their own annotations and runs.
    assert settings.dataset_tag(tmp_path / "other" / "tiles_512") != fast
    monkeypatch.setenv("LC_FAST", "0")
    assert re.fullmatch(r"sample-[0-9a-f]{6}_full", settings.dataset_tag(tmp_path / "sample" / "."))


def test_the_course_pins_a_relative_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "data")
    pin_data_dir()
    monkeypatch.chdir(tmp_path / "data")  # the notebooks' working directory is another one
    assert prepare_data() == tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", "nowhere")
    with pytest.raises(FileNotFoundError, match="relative path is read from"):
        prepare_data()


def test_lab_and_course_choose_fast_mode_without_a_gpu(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from lc_utils import course
    from lc_utils.lab import lab_command

    monkeypatch.setattr(course.torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("LC_FAST", raising=False)
    course.fast_mode_without_gpu()
    assert settings.fast_mode() and "No GPU found" in capsys.readouterr().out
    monkeypatch.setenv("LC_FAST", "0")  # a choice the user made stays
    course.fast_mode_without_gpu()
    assert not settings.fast_mode() and capsys.readouterr().out == ""
    command = lab_command(["--port", "8890"])
    assert command[1:4] == ["-m", "jupyterlab", str(settings.PROJECT_ROOT / "notebooks")]
    assert command[-2:] == ["--port", "8890"]


def test_smoke_mode_caps_steps_and_data_but_keeps_the_shapes(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lc_utils.datasets import read_pair
    from lc_utils.layouts import find_pairs

    monkeypatch.setenv("LC_FAST", "0")
    monkeypatch.delenv("LC_SMOKE", raising=False)
    assert not settings.smoke_mode() and settings.unless_smoke(20, smoke=2) == 20
    monkeypatch.setenv("LC_SMOKE", "1")
    assert settings.smoke_mode() and settings.unless_smoke(20, smoke=2) == 2
    assert settings.pick(256, 128) == 256 and settings.mode_name() == "full_smoke"
    # A smoke run never resumes (nor overwrites) a real full-mode run: its folders have their own tag.
    assert settings.dataset_tag(tmp_path / "sample").endswith("_full_smoke")
    monkeypatch.setattr(settings, "SAMPLE_SIZES", {"fast": {"n_images": 20, "size": 32},
                                                          "full": {"n_images": 30, "size": 48}})
    monkeypatch.setattr(settings, "sample_dir", lambda: tmp_path / "sample")
    monkeypatch.delenv("DATA_DIR", raising=False)
    pairs = find_pairs(prepare_data())
    assert len(pairs) == settings.SMOKE_IMAGES  # a few images ...
    assert read_pair(*pairs[0])[0].shape == (48, 48, 3)  # ... of the mode's size
