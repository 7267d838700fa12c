"""The Colab setup cell, executed: a kernel that looks like Colab's (a stand-in ``google.colab``
module, Colab's torch, torchvision, ipywidgets and kagglehub already installed) runs the cell; the
clone URL stays the cell's one constant and git is told to fetch it from a snapshot of this checkout.
The cell must clone, install ``lc_utils`` without touching the preinstalled packages, and the next
cell's GPU check must give Colab's advice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from lc_utils.settings import PROJECT_ROOT, REPO_URL

NOTEBOOK = PROJECT_ROOT / "notebooks" / "04_training_partial_loss.ipynb"
COLAB_COURSE_DIR = 'COURSE_DIR = "/content/course"'
# What a Colab machine has before the cell runs (versions of late 2025); the cell must leave them.
PREINSTALLED = {"torch": "2.5.1+cu121", "torchvision": "0.20.1+cu121", "ipywidgets": "7.7.1",
                "kagglehub": "0.3.13"}

STAND_IN = '''"""A stand-in for Colab's google.colab: enough for the course's Colab branches."""
from . import drive, output  # noqa: F401
'''
OUTPUT = '''enabled = []


def enable_custom_widget_manager():
    enabled.append(True)
'''
DRIVE = '''def mount(path):
    raise RuntimeError("the stand-in google.colab cannot mount Google Drive")
'''


def _colab_cells() -> list[str]:
    cells = []
    for path in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        cells += [c.source for c in notebook.cells
                  if c.cell_type == "code" and '"google.colab" in sys.modules' in c.source]
    return cells


def test_every_notebook_has_the_same_colab_cell() -> None:
    cells = _colab_cells()
    assert len(cells) == len(list((PROJECT_ROOT / "notebooks").glob("*.ipynb"))) and len(set(cells)) == 1
    assert cells[0].count(COLAB_COURSE_DIR) == 1 and cells[0].count(REPO_URL) == 1
    (install,) = [line for line in cells[0].splitlines() if "%pip" in line]
    assert "torch" not in install  # no reinstall of Colab's torch
    # No GPU on the runtime: fast mode, said once, unless LC_FAST was set either way.
    assert 'if not torch.cuda.is_available() and "LC_FAST" not in os.environ:' in cells[0]
    assert 'os.environ["LC_FAST"] = "1"' in cells[0]
    assert "No GPU on this runtime: fast mode (LC_FAST=1)" in cells[0]
    assert "Runtime > Change runtime type > GPU for the full course" in cells[0]


def _fake_distribution(site_packages: Path, name: str, version: str) -> None:
    info = site_packages / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("colab\n")
    (info / "RECORD").write_text("")


def _snapshot_repository(dest: Path) -> Path:
    """A git repository holding this checkout's files as they are now (what would be pushed:
    tracked and new files, none that git ignores), for the Colab cell to clone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, check=True, capture_output=True, text=True).stdout
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=course", "-c", "user.email=course@localhost",
           "-c", "init.defaultBranch=main"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(git + command, cwd=dest, check=True)
    return dest


def _colab_kernel(tmp: Path, origin: Path) -> tuple[Path, Path]:
    """A kernel spec whose Python is a fresh virtual environment that sees this one's packages
    (as Colab's Python sees its preinstalled ones) but not lc_utils; returns (jupyter path,
    the environment's site-packages)."""
    venv = tmp / "colab-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    # A plain path line: this environment's packages become importable, while their .pth files
    # (this checkout's editable install of lc_utils among them) are not run.
    (site_packages / "preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for name, version in PREINSTALLED.items():
        _fake_distribution(site_packages, name, version)
    stand_in = tmp / "stand-in"
    (stand_in / "google" / "colab").mkdir(parents=True)
    (stand_in / "google" / "colab" / "__init__.py").write_text(STAND_IN)
    (stand_in / "google" / "colab" / "drive.py").write_text(DRIVE)
    (stand_in / "google" / "colab" / "output.py").write_text(OUTPUT)
    (stand_in / "sitecustomize.py").write_text("import google.colab  # noqa: F401  (Colab imports it)\n")
    env = {
        "PYTHONPATH": str(stand_in),
        # The URL in the cell stays as it is; git fetches it from this checkout instead.
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{origin}.insteadOf",
        "GIT_CONFIG_VALUE_0": REPO_URL,
        # Nothing may be downloaded: a requirement Colab's packages do not meet fails the install.
        "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "MPLBACKEND": "agg",
    }
    kernels = tmp / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python", "env": env}))
    return tmp / "jupyter", site_packages


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for o in cell.outputs)


@pytest.mark.slow
def test_the_colab_cell_clones_installs_and_checks_the_gpu(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the course to clone from")
    from nbclient import NotebookClient

    jupyter_path, site_packages = _colab_kernel(tmp_path, _snapshot_repository(tmp_path / "origin"))
    before = {p.name for p in site_packages.iterdir()}
    content = tmp_path / "content"
    content.mkdir()
    course = content / "course"
    source = nbformat.read(NOTEBOOK, as_version=4)
    setup = next(c for c in source.cells if '"google.colab" in sys.modules' in c.source)
    imports = source.cells[source.cells.index(setup) + 1]
    assert "describe_device()" in imports.source
    setup_here = setup.source.replace(COLAB_COURSE_DIR, f'COURSE_DIR = "{course}"')
    check = ("import os, lc_utils, torch, ipywidgets\nfrom google.colab import output\n"
             "from lc_utils import settings\n"
             "print(lc_utils.__file__, os.getcwd(), torch.__version__, ipywidgets.__version__, "
             "output.enabled == [True], settings.fast_mode(), sep='\\n')")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup_here), imports,
                                               nbformat.v4.new_code_cell(check),
                                               nbformat.v4.new_code_cell(setup_here)])  # run again
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.delenv("LC_FAST", raising=False)  # a fresh Colab runtime sets none
    NotebookClient(notebook, kernel_name="colab", timeout=600,
                   resources={"metadata": {"path": str(content)}}).execute()

    assert (course / ".git").is_dir() and (course / "lc_utils" / "__init__.py").is_file()
    assert "On Colab: Runtime > Change runtime type > GPU" in _text(notebook.cells[1])
    # no GPU here: the cell switched fast mode on and said so, once (the second run leaves it)
    assert "No GPU on this runtime: fast mode (LC_FAST=1)" in _text(notebook.cells[0])
    assert "No GPU on this runtime" not in _text(notebook.cells[3])
    module, cwd, torch_version, ipywidgets_version, widgets_enabled, fast = _text(notebook.cells[2]).split()
    assert fast == "True"
    assert widgets_enabled == "True"  # third-party widgets (the annotator) drawn, once per run of the cell
    assert Path(module) == course / "lc_utils" / "__init__.py" and Path(cwd) == course / "notebooks"
    # The real packages still answer (the stand-in versions only say what Colab has) ...
    assert torch_version.split("+")[0] == __import__("torch").__version__.split("+")[0]
    assert ipywidgets_version == __import__("ipywidgets").__version__
    # ... and the install added lc_utils alone: Colab's torch, torchvision, ipywidgets and kagglehub
    # stayed.
    added = {p.name for p in site_packages.iterdir()} - before - {"__pycache__"}
    assert added and all("lc_utils" in name.replace("-", "_") for name in added), _text(notebook.cells[0])
    for name, version in PREINSTALLED.items():
        assert (site_packages / f"{name}-{version}.dist-info" / "METADATA").is_file()
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.outputs)


def _fake_colab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mount) -> list[str]:
    """A ``google.colab`` whose ``drive.mount`` is ``mount``, Drive's mount point and the course's
    default runs folder under ``tmp_path``, and no folder chosen yet; the mount calls made."""
    import types

    from lc_utils import settings

    calls: list[str] = []
    drive = types.ModuleType("google.colab.drive")
    drive.mount = lambda path: (calls.append(path), mount(Path(path)))
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.setattr(settings, "DRIVE", tmp_path / "drive")
    monkeypatch.setattr(settings, "COLAB_RUNS", tmp_path / "drive" / "MyDrive" / "lc-runs")
    monkeypatch.setattr(settings, "_colab_runs", None)
    monkeypatch.setattr(settings, "_workspace", lambda: tmp_path / "course")
    return calls


def test_on_colab_runs_go_to_google_drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          recwarn: pytest.WarningsRecorder) -> None:
    from lc_utils import settings

    calls = _fake_colab(monkeypatch, tmp_path, lambda path: (path / "MyDrive").mkdir(parents=True))
    assert settings.runs_dir() == tmp_path / "drive" / "MyDrive" / "lc-runs"
    assert settings.runs_dir(None).is_dir() and calls == [str(tmp_path / "drive")]  # mounted once
    assert settings.run_folder(tmp_path / "data", name="r").parent == settings.COLAB_RUNS
    assert settings.runs_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # a chosen folder stays
    assert not recwarn.list


def test_on_colab_without_drive_runs_stay_on_the_runtime_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lc_utils import settings

    def declined(path: Path) -> None:
        raise ValueError("mount failed")  # what Colab raises when the learner declines

    calls = _fake_colab(monkeypatch, tmp_path, declined)
    with pytest.warns(UserWarning) as caught:
        first = settings.runs_dir()
        again = settings.annotation_path(tmp_path / "data", "points.csv").parents[2]
    assert first == again == tmp_path / "course" / "runs" and first.is_dir()
    assert len(caught) == 1 and len(calls) == 1
    message = str(caught[0].message)
    assert "Google Drive could not be mounted (mount failed)" in message
    assert "lost when the runtime disconnects" in message
    assert not (tmp_path / "drive").exists()
    # A folder on Drive, asked for by name, is an error when Drive cannot be mounted.
    with pytest.raises(ValueError, match="mount failed"):
        settings.runs_dir(tmp_path / "drive" / "MyDrive" / "mine")
