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


# --- Opening in Colab and what it costs there -----------------------------------------------------

BADGE = re.compile(r"\[!\[Open in Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                   r"\((https://colab\.research\.google\.com/github/[^)\s]+)\)")


def _colab_link(repo_url: str, notebook: str) -> str:
    """The "Open in Colab" address of ``notebook`` (a file under notebooks/) of the repository at
    ``repo_url``, on its main branch."""
    owner_repo = repo_url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{notebook}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_title_cell_opens_the_notebook_in_colab(path: Path) -> None:
    """The badge of the title cell opens this notebook from the repository its setup cell clones,
    which is the course's one URL."""
    cells = _read(path).cells
    setup = next(c.source for c in cells
                 if c.cell_type == "code" and '"google.colab" in sys.modules' in c.source)
    (repo_url,) = re.findall(r'REPO_URL = "([^"]+)"', setup)
    assert repo_url == REPO_URL
    assert BADGE.findall(cells[0].source) == [_colab_link(repo_url, path.name)]


def test_the_readme_table_opens_every_notebook_in_colab() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = [line for line in readme.splitlines() if re.match(r"\| `0\d_", line)]
    assert [re.match(r"\| `(\w+)`", line)[1] for line in table] == EXPECTED
    for line, name in zip(table, EXPECTED):
        assert BADGE.findall(line) == [_colab_link(REPO_URL, f"{name}.ipynb")]
    assert len(BADGE.findall(readme)) == len(EXPECTED)


def test_the_readme_says_where_the_rendered_course_is() -> None:
    owner, repo = REPO_URL.removeprefix("https://github.com/").split("/")
    top = (PROJECT_ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert f"https://{owner}.github.io/{repo}/" in top and "rendered course" in top


ESTIMATE = re.compile(r"^\*\*Time on a Colab GPU\*\* \(full mode; an estimate, not yet measured on a GPU\): "
                      r"(.+)$", re.MULTILINE)
ASSUMED = re.compile(r"an assumed ([\d.]+) s per step of 8 x 256² crops for DeepLabV3-ResNet50 on a T4")


def _full_mode_parameters(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The parameters cell of ``path`` as full mode (a Colab GPU, the generated sample) sets it."""
    for name in ("LC_FAST", "LC_SMOKE", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    cells = _read(path).cells
    source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec("from lc_utils import run_spec, settings, study", namespace)  # what the cells use
    exec(source, namespace)
    return namespace


def _full_mode_steps(name: str, monkeypatch: pytest.MonkeyPatch) -> int | None:
    """The training steps notebook ``name`` takes in full mode on the generated sample, counted
    from its parameters (None where it trains nothing)."""
    from lc_utils.datasets import SPLIT_FRACTIONS, split_items
    from lc_utils.synthetic import SAMPLE_SIZES

    train = len(split_items(list(range(SAMPLE_SIZES["full"]["n_images"])), SPLIT_FRACTIONS, 0)[0])
    p = _full_mode_parameters(PROJECT_ROOT / "notebooks" / f"{name}.ipynb", monkeypatch)
    ours = _full_mode_parameters(PROJECT_ROOT / "notebooks" / "04_training_partial_loss.ipynb", monkeypatch)
    assert ours["SAMPLES_PER_EPOCH"] is None  # full mode: every training image once per epoch
    epoch = train // ours["BATCH_SIZE"]  # batches of an epoch (the last, partial one dropped)
    if name.startswith("04"):
        return ours["EPOCHS"] * epoch
    if name.startswith("06"):
        spec = p["SETTINGS"]
        assert spec.samples_per_epoch is None and spec.batch_size == ours["BATCH_SIZE"]
        runs = (len(p["STRATEGIES"]) * len(p["POINTS_PER_MP"]) + 1) * len(p["SEEDS"])  # + dense masks
        return runs * spec.epochs * epoch
    if name.startswith("07"):
        density = _full_mode_parameters(PROJECT_ROOT / "notebooks" / "06_label_density_study.ipynb",
                                        monkeypatch)
        # notebook 06's points-alone and dense runs are reused: the same settings, densities and seeds
        assert p["SETTINGS"] == density["SETTINGS"] and p["SEEDS"] == density["SEEDS"]
        assert set(p["STUDY_POINTS_PER_MP"]) <= set(density["POINTS_PER_MP"]) and "uniform" in p["STUDY"]
        new = (len(p["STUDY"]) - 1) * len(p["STUDY_POINTS_PER_MP"]) * len(p["SEEDS"])
        return new * p["SETTINGS"].epochs * epoch
    if name.startswith("08"):
        return p["EPOCHS"] * epoch
    if name.startswith("09"):
        return 2 * p["FINE_TUNE_EPOCHS"] * epoch  # margin picks and random picks, each fine-tuned
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_title_cell_estimates_the_full_mode_time_on_a_colab_gpu(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One line, labelled an estimate: the steps the parameters give in full mode, at the one
    assumed time per step every notebook states, or "a few minutes" where nothing heavy trains."""
    (line,) = ESTIMATE.findall(_read(path).cells[0].source)
    steps = _full_mode_steps(path.stem, monkeypatch)
    if steps is None:
        assert line.startswith("a few minutes")
        return
    assumed = {float(s) for p in NOTEBOOKS for s in ASSUMED.findall(_read(p).cells[0].source)}
    assert len(assumed) == 1 and ASSUMED.search(line)
    assert re.match(rf"{steps:,} training steps ", line), line
    minutes = steps * assumed.pop() / 60
    quoted = re.search(r"(under a minute|about ([\d,]+) minutes?) of training", line)
    if minutes < 1:
        assert quoted[1] == "under a minute"
    else:
        assert int(quoted[2].replace(",", "")) == round(minutes)
