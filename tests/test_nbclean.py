"""Notebooks stay clean: committed in their clean form, naming the installed kernel, and a git
filter that hides what JupyterLab writes into them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from traitlets.utils.importstring import import_item

from lc_utils.nbclean import (
    HOOK,
    KERNELSPEC,
    POST_HOOK,
    clean_notebook,
    clean_text,
    install_hook,
    post_save_hook,
    pre_save_hook,
)
from lc_utils.settings import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_clean_and_name_the_installed_kernel(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert clean_text(text) == text, f"{path.name}: run python -m lc_utils.nbclean {path}"
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNELSPEC["name"])
    except NoSuchKernel:
        pytest.skip("no python3 kernel installed here (make install registers it)")
    kernelspec = nbformat.reads(text, as_version=4).metadata["kernelspec"]
    if spec.display_name != KERNELSPEC["display_name"]:
        pytest.skip(f"the python3 kernel here is {spec.display_name!r}, not the one make install registers")
    assert kernelspec == {"name": KERNELSPEC["name"], "display_name": spec.display_name,
                          "language": spec.language}


def _as_jupyterlab_saves_it(path: Path) -> str:
    """The notebook after a run in JupyterLab: outputs, counts, trust flags, the Python version."""
    notebook = nbformat.read(path, as_version=4)
    for number, cell in enumerate(notebook.cells, start=1):
        cell.metadata["trusted"] = True
        if cell.cell_type == "code":
            cell.execution_count = number
            cell.metadata["execution"] = {"iopub.status.busy": "2026-11-25T10:00:00Z"}
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    notebook.metadata["language_info"]["version"] = "3.12.1"
    notebook.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    return nbformat.writes(notebook)


def test_clean_keeps_sources_and_tags_only() -> None:
    path = PROJECT_ROOT / "notebooks" / "04_training_partial_loss.ipynb"
    saved = _as_jupyterlab_saves_it(path)
    assert clean_text(saved) == path.read_text(encoding="utf-8")
    notebook = clean_notebook(nbformat.reads(saved, as_version=4))
    assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_sees_no_outputs_in_a_notebook_jupyterlab_saved(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "test@example.com")
    git("config", "user.name", "test")
    git("config", "filter.lc-notebook.clean", f"{sys.executable} -m lc_utils.nbclean")
    shutil.copy(PROJECT_ROOT / ".gitattributes", tmp_path / ".gitattributes")
    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "03_sparse_labeling.ipynb"
    shutil.copy(PROJECT_ROOT / "notebooks" / notebook.name, notebook)
    git("add", ".")
    git("commit", "-q", "-m", "notebook")
    notebook.write_text(_as_jupyterlab_saves_it(notebook), encoding="utf-8")
    assert git("diff", "--stat") == ""  # outputs and counts never reach a diff or a commit
    post_save_hook({"type": "notebook"}, os_path=str(notebook), contents_manager=None)
    assert git("status", "--porcelain") == ""  # what the server runs after each save
    edited = notebook.read_text().replace("Sparse point labels", "Sparse labels")
    notebook.write_text(edited, encoding="utf-8")
    post_save_hook({"type": "notebook"}, os_path=str(notebook), contents_manager=None)
    assert git("status", "--porcelain").strip() == "M notebooks/03_sparse_labeling.ipynb"  # real edits show
    assert git("diff", "--cached", "--stat") == ""  # and nothing is staged behind the learner's back


def test_pre_save_hook_drops_the_python_version_only() -> None:
    path = PROJECT_ROOT / "notebooks" / "03_sparse_labeling.ipynb"
    content = nbformat.read(path, as_version=4)
    content.metadata["language_info"]["version"] = "3.12.1"
    content.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    model = {"type": "notebook", "content": content}
    pre_save_hook(model, path="03_sparse_labeling.ipynb", contents_manager=None)
    assert "version" not in model["content"]["metadata"]["language_info"]
    assert model["content"].cells[2].outputs  # the learner's outputs stay
    pre_save_hook({"type": "file", "content": "text"})  # other files pass untouched


def test_install_hook_keeps_other_settings(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"ServerApp": {"port": 9999}}')
    assert install_hook(tmp_path) == config
    assert json.loads(config.read_text()) == {"ServerApp": {"port": 9999},
                                              "ContentsManager": {"pre_save_hook": HOOK},
                                              "FileContentsManager": {"post_save_hook": POST_HOOK}}
    assert import_item(HOOK) is pre_save_hook  # the names the server imports
    assert import_item(POST_HOOK) is post_save_hook
