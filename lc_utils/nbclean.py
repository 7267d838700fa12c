"""Notebooks as committed: no outputs, no execution counts, no per-machine metadata.

Opening a notebook in JupyterLab writes the kernel's exact Python version into it (JupyterLab then
shows the notebook as modified), so with autosave a notebook that was only looked at would differ
from the committed one. :func:`pre_save_hook`, which ``make install`` sets up for the project's
Jupyter server, takes the version out again before a notebook is saved: open and close (saving or
not) leaves the file as it was. After a save with outputs the file's size differs from the one git
recorded, and git then lists the notebook as modified without running its clean filter, although
``git diff`` is empty; :func:`post_save_hook` refreshes git's record of the file whenever its clean
form is what git already has, so ``git status`` stays clean too (real edits still show).

``python -m lc_utils.nbclean --install-hook`` sets up both hooks (``make install`` runs it).
``python -m lc_utils.nbclean`` reads a notebook on standard input and writes its clean form to
standard output: the git "clean" filter that ``make install`` sets up for ``notebooks/*.ipynb``
(see ``.gitattributes``), so that outputs and execution counts never reach a diff or a commit.
With file arguments it cleans those files in place.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (lc_utils)", "language": "python", "name": "python3"}
"""The kernel ``make install`` registers; every notebook names it."""

LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}
"""What the kernel reports about its language, less the exact Python version (one per machine)."""

_CELL_METADATA_KEPT = ("tags", "jupyter")


def clean_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` without outputs, execution counts, front-end cell state (trusted, collapsed,
    execution timings) or widget state; the kernel named :data:`KERNELSPEC` and its language
    described by :data:`LANGUAGE_INFO` (no Python version)."""
    for cell in notebook.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in _CELL_METADATA_KEPT}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["language_info"] = dict(LANGUAGE_INFO)
    notebook.metadata.pop("widgets", None)  # saved widget state: outputs by another name
    return notebook


def pre_save_hook(model: dict, **kwargs: object) -> None:
    """Jupyter server hook: drop the Python version from a notebook's ``language_info`` before it
    is written (outputs are the learner's and stay)."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        model["content"].get("metadata", {}).get("language_info", {}).pop("version", None)


def refresh_git_record(path: str | Path) -> bool:
    """Where git's index holds exactly the clean form of the notebook at ``path`` (only outputs,
    counts or the Python version changed), refresh the index's record of the file (``git add``
    stores nothing new then) and return True; change nothing otherwise (real edits, files outside
    a repository, no git, no clean filter set up)."""
    path = Path(path).resolve()
    if path.suffix != ".ipynb":
        return False

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path.parent, check=True, capture_output=True,
                              text=True, timeout=30).stdout.strip()

    try:
        staged = git("ls-files", "--stage", "--", path.name).split()
        if len(staged) < 2 or git("hash-object", "--path", path.name, "--", path.name) != staged[1]:
            return False
        git("add", "--", path.name)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def post_save_hook(model: dict, os_path: str, **kwargs: object) -> None:
    """Jupyter server hook: after a notebook is saved, :func:`refresh_git_record`."""
    if model.get("type") == "notebook":
        refresh_git_record(os_path)


HOOK = "lc_utils.nbclean.pre_save_hook"
POST_HOOK = "lc_utils.nbclean.post_save_hook"


def install_hook(prefix: str | Path = sys.prefix) -> Path:
    """Name :func:`pre_save_hook` and :func:`post_save_hook` in the Jupyter server configuration of
    the environment at ``prefix`` (``<prefix>/etc/jupyter/jupyter_server_config.json``, other
    settings kept)."""
    path = Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.setdefault("ContentsManager", {})["pre_save_hook"] = HOOK
    config.setdefault("FileContentsManager", {})["post_save_hook"] = POST_HOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def clean_text(text: str) -> str:
    """The clean form of a notebook's JSON text (what the git filter writes)."""
    return nbformat.writes(clean_notebook(nbformat.reads(text, as_version=4))) + "\n"


def main(argv: list[str] | None = None) -> None:
    paths = sys.argv[1:] if argv is None else argv
    if paths == ["--install-hook"]:
        print(f"pre- and post-save hooks set in {install_hook()}")
        return
    if not paths:
        sys.stdout.write(clean_text(sys.stdin.read()))
        return
    for path in map(Path, paths):
        path.write_text(clean_text(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
