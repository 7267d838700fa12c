"""The notebooks as files: the shared skeleton, no stored outputs, one repository URL everywhere.

Executing them is nbval's job (`make test` runs `pytest --nbval-lax notebooks`); notebook 02 is
also executed here on the real DeepGlobe tiles.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from lc_utils.run_spec import DATA_VARIABLES
from lc_utils.settings import PROJECT_ROOT, REPO_URL

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_data_exploration", "02_mask_decoding", "03_sparse_labeling", "04_training_partial_loss",
            "05_testing_metrics", "06_label_density_study", "07_more_from_points",
            "08_label_your_own_imagery", "09_active_labeling"]


def _read(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_the_course_has_its_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_skeleton(path: Path) -> None:
    notebook = _read(path)
    cells = notebook.cells
    assert notebook.metadata.kernelspec.name == "python3"
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# {path.stem[:2]} · ")
    assert "What you will learn" in cells[0].source and "Where this sits" in cells[0].source
    colab = [c for c in cells if c.cell_type == "code" and '"google.colab" in sys.modules' in c.source]
    assert len(colab) == 1
    assert re.findall(r'REPO_URL = "([^"]+)"', colab[0].source) == [REPO_URL]
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "DATA_DIR = None" in parameters[0].source
    headings = [c.source.splitlines()[0] for c in cells if c.cell_type == "markdown"]
    assert "## Setup" in headings and "## Parameters" in headings and "## Summary" in headings
    assert re.search(r"\*\*Exercises\*\*", cells[-1].source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_pass_on_the_data_variables_make_sets(path: Path) -> None:
    """`make course DATA_SCHEMA=...` reaches the data through the parameters cell: the data layer
    reads no environment, so SCHEMA, IMAGE_SUFFIX and MASK_SUFFIX, where a notebook has them,
    start from those variables."""
    cells = _read(path).cells
    source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    for field, variable in DATA_VARIABLES.items():
        assigned = re.findall(rf"^{field.upper()} = (.*?)(?:  #.*)?$", source, re.MULTILINE)
        assert assigned in ([], [f'settings.env_value("{variable}")']), f"{path.name}: {field.upper()}"


def test_readme_and_notebooks_share_the_repository_url() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert REPO_URL in readme
    assert set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", readme)) == {REPO_URL}


def _execute(name: str) -> str:
    """Run notebook ``name`` as it is committed; the text of all its outputs."""
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = _read(PROJECT_ROOT / "notebooks" / f"{name}.ipynb")
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(
        notebook, {"metadata": {"path": str(PROJECT_ROOT / "notebooks")}})
    return "\n".join(str(output.get("data", {}).get("text/plain", output.get("text", "")))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "schema", "environment", "expected"), [
    ("loveda", "loveda", {}, ["LoveDA: single-channel index masks", "agriculture", "no data"]),
    ("mmseg", "potsdam", {"DATA_SCHEMA": "potsdam"},
     ["ISPRS Potsdam: RGB-coded masks or single-channel index masks", "impervious surfaces", "no data"]),
])
def test_data_notebooks_follow_another_schema(layout: str, schema: str, environment: dict[str, str],
                                              expected: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebooks 01 and 02 on stand-ins of LoveDA and of mmsegmentation's Potsdam (index masks
    with "no data"): the classes, legends and tables are the schema's, never DeepGlobe's."""
    from lc_utils.synthetic import make_standin

    root = make_standin(tmp_path / layout, layout, schema, n_images=12, size=64, coding="index")
    monkeypatch.setenv("DATA_DIR", str(root))
    monkeypatch.setenv("LC_HEADLESS", "1")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    text = _execute("01_data_exploration") + _execute("02_mask_decoding")
    for word in expected:
        assert word in text
    assert "urban" not in text and "rangeland" not in text  # DeepGlobe's classes
    assert "round trip exact: True" in text


@pytest.mark.slow
def test_mask_decoding_notebook_on_real_tiles(real_tiles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(real_tiles))
    monkeypatch.setenv("LC_HEADLESS", "1")
    text = _execute("02_mask_decoding")
    assert "0177_mask.png" in text  # the census puts the real tile with stray red pixels first
    assert "InvalidMaskError" in text and "(255, 0, 0) x7" in text
    assert "round trip exact: True" in text
