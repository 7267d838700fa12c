"""Atomic writes and the refusal of a file made with other settings: the one helper of each."""

import os
import stat
import threading
from pathlib import Path

import pytest

from lc_utils.saved_files import OtherSettingsError, atomic_write, refuse_other_settings, write_text


def test_an_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = write_text(tmp_path / "points.csv", "old\n")
    with pytest.raises(RuntimeError, match="disk gone"), atomic_write(path) as file:
        file.write("half of the new")
        raise RuntimeError("disk gone")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["points.csv"]


def test_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    """Two writers of one file at once (two editors, two processes): each writes its own temporary
    file, so both renames succeed and the file holds one whole version, never a mix."""
    path = tmp_path / "clicks.csv"
    first_open, second_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with atomic_write(path) as file:
                file.write("first\n")
                first_open.set()
                second_done.wait(5)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    first_open.wait(5)
    write_text(path, "second\n")
    second_done.set()
    thread.join(5)
    assert not errors
    assert path.read_text() == "first\n"  # the later rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["clicks.csv"]


def test_permissions_are_those_of_a_new_file_or_the_existing_one(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        fresh = write_text(tmp_path / "fresh.txt", "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's private 0o600
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        kept.chmod(0o640)
        write_text(kept, "y")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_binary_writes_and_a_bad_mode(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "w.bin", "wb") as file:
        file.write(b"\x00\x01")
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="new files only"), atomic_write(tmp_path / "a.txt", "a"):
        pass


def test_refuse_other_settings_names_the_file_and_each_difference(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    refuse_other_settings(path, {"seed": 0, "n": 5, "extra": 1}, {"seed": 0, "n": 5})  # agree: nothing
    with pytest.raises(OtherSettingsError) as caught:
        refuse_other_settings(path, {"seed": 0, "n": 5}, {"seed": 1, "n": 5, "budget": 10},
                              fix="give it another name")
    message = str(caught.value)
    assert str(path) in message and "seed: 0 there, 1 now" in message
    assert "budget: None there, 10 now" in message and "n:" not in message
    assert message.endswith("give it another name")
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError still do
