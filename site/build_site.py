"""Build the course's static site: ``python site/build_site.py`` (what ``make site`` calls).

Reads the executed notebooks that ``make course`` writes to ``build/`` and renders them with
Sphinx and myst-nb (``site/conf.py``; nothing is executed again) into ``build/site/``. Where an
executed copy is missing or older than its notebook, it runs the course first (every notebook, in
order: 05 tests the checkpoint 04 trains).

Another folder of executed notebooks can be given (``--executed DIR`` or ``$LC_SITE_NOTEBOOKS``):
it is used as it is, without running the course, and the site goes to ``DIR/site``; a notebook it
lacks is listed on the course map without a page. ``tests/test_site.py`` reads the same setting.

Two pages are generated from the repository at build time, never copied by hand: the course map
on the front page (the README's notebook table, one row per notebook) and the results page
(every plot in ``benchmarks/results/`` with the README's table for it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent
ROOT = SOURCES.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DEFAULT_EXECUTED = ROOT / "build"
EXECUTED_ENV = "LC_SITE_NOTEBOOKS"
REPO_URL = "https://github.com/landcover-course/sparse-label-segmentation"
PAGES = ("index.md", "results.md")


def executed_folder(given: Path | None = None) -> tuple[Path, bool]:
    """The folder of executed notebooks and whether it was chosen (argument or environment)
    rather than the default ``build/``."""
    if given is not None:
        return given.expanduser().resolve(), True
    if os.environ.get(EXECUTED_ENV):
        return Path(os.environ[EXECUTED_ENV]).expanduser().resolve(), True
    return DEFAULT_EXECUTED, False


def course_notebooks() -> list[Path]:
    """The course's numbered notebooks, in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def stale_notebooks(executed: Path) -> list[str]:
    """Names of the notebooks whose executed copy in ``executed`` is missing or older than the
    notebook itself."""
    stale = []
    for notebook in course_notebooks():
        copy = executed / notebook.name
        if not copy.is_file() or copy.stat().st_mtime < notebook.stat().st_mtime:
            stale.append(notebook.name)
    return stale


def ensure_executed(executed: Path, chosen: bool) -> list[Path]:
    """The executed notebooks to render, in course order. In the default folder a missing or
    stale copy runs the whole course first; a chosen folder is taken as it is (with a warning)."""
    stale = stale_notebooks(executed)
    if stale and not chosen:
        print(f"Executed notebooks missing or older than their notebook: {', '.join(stale)}; "
              "running the course first (make course) ...", flush=True)
        subprocess.run([sys.executable, "-m", "lc_utils.course", "--out", str(executed)],
                       cwd=ROOT, check=True)
        stale = stale_notebooks(executed)
        if stale:
            raise SystemExit(f"the course ran but left no fresh executed copy of {', '.join(stale)}")
    elif stale:
        print(f"warning: {executed} lacks a fresh executed copy of {', '.join(stale)}; "
              "the site shows what it has", file=sys.stderr)
    present = [executed / nb.name for nb in course_notebooks() if (executed / nb.name).is_file()]
    if not present:
        raise SystemExit(f"no executed notebooks in {executed}: run `make course` first")
    return present


# --- what the README says, read at build time -------------------------------------------------

@dataclass(frozen=True)
class NotebookRow:
    """One row of the README's notebook table."""

    name: str  # 01_data_exploration
    teaches: str  # the "what it teaches" cell, markdown
    colab: str  # the Colab badge, markdown


@dataclass(frozen=True)
class Figure:
    """A study plot as the README shows it: its section, alt text and caption (empty where the
    README does not embed it)."""

    heading: str
    alt: str
    caption: str
    position: int  # where the README first names it, for the page's order


def notebook_rows(readme: str) -> list[NotebookRow]:
    """The README's notebook table ("What the course is"), one row per notebook."""
    rows = []
    for line in readme.splitlines():
        match = re.match(r"\|\s*`(\d\d_[a-z0-9_]+)`\s*\|(.*)\|(.*)\|\s*$", line)
        if match:
            rows.append(NotebookRow(match[1], match[2].strip(), match[3].strip()))
    return rows


def readme_tables(readme: str) -> dict[str, str]:
    """The tables between ``<!-- NAME: start -->`` and ``<!-- NAME: end -->`` by name (the ones
    ``--readme`` of a study writes); empty blocks are left out."""
    blocks = re.finditer(r"<!-- ([a-z0-9_]+): start -->\n(.*?)<!-- \1: end -->", readme, re.DOTALL)
    return {m[1]: m[2].strip() for m in blocks if m[2].strip()}


def _heading_before(readme: str, position: int) -> str:
    headings = [m for m in re.finditer(r"^#{2,4} (.+)$", readme, re.MULTILINE) if m.start() < position]
    return headings[-1][1].strip() if headings else "Other results"


def readme_figures(readme: str, stems: list[str]) -> dict[str, Figure]:
    """For each plot named in ``stems`` that the README mentions (its image or its table), the
    section it sits in, its alt text and the caption line under the image."""
    figures = {}
    for stem in stems:
        image = re.search(rf"^!\[([^\]]*)\]\(benchmarks/results/{stem}\.png\)\n\n(\*.*\*)?",
                          readme, re.MULTILINE)
        table = re.search(rf"<!-- {stem}: start -->", readme)
        found = [m for m in (image, table) if m]
        if not found:
            continue
        position = min(m.start() for m in found)
        figures[stem] = Figure(heading=_heading_before(readme, position),
                               alt=image[1] if image else "", caption=(image[2] or "") if image else "",
                               position=position)
    return figures


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a README heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", ""))
    return text.replace(" ", "-")


# --- the generated pages ----------------------------------------------------------------------

def course_map(rows: list[NotebookRow], present: set[str]) -> str:
    """The front page's table: each notebook linked to its page (where this build has one)."""
    lines = ["| notebook | what it teaches | Colab |", "|---|---|---|"]
    for row in rows:
        name = (f"[`{row.name}`](notebooks/{row.name}.ipynb)" if row.name in present
                else f"`{row.name}` (not in this build)")
        lines.append(f"| {name} | {row.teaches} | {row.colab} |")
    return "\n".join(lines)


def toctree(present: list[str]) -> str:
    """The site's navigation: the notebooks in order, then the results page."""
    entries = "\n".join([f"notebooks/{name}" for name in present] + ["results"])
    return f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{entries}\n```"


def results_sections(readme: str, plots: list[Path]) -> str:
    """Every study plot with the README's table for it, grouped under the README's sections in
    the README's order; a plot the README does not mention comes last, under its file name."""
    stems = [p.stem for p in plots]
    figures = readme_figures(readme, stems)
    tables = readme_tables(readme)
    order = sorted(stems, key=lambda s: (figures[s].position if s in figures else len(readme), s))
    parts: list[str] = []
    heading = None
    for stem in order:
        figure = figures.get(stem)
        section = figure.heading if figure else "Other results"
        if section != heading:
            heading = section
            parts.append(f"## {section}\n")
            if figure:
                parts.append(f"The README's section: [{section}]({REPO_URL}#{github_anchor(section)}).\n")
        title = figure.alt if figure and figure.alt else f"`{stem}.png`"
        parts.append(f"### {title}\n")
        if stem in tables:
            parts.append(tables[stem] + "\n")
        parts.append(f"![{figure.alt if figure and figure.alt else stem}](benchmarks/results/{stem}.png)\n")
        if figure and figure.caption:
            parts.append(figure.caption + "\n")
        if (RESULTS / f"{stem}.json").is_file():
            parts.append(f"The record: {{download}}`{stem}.json <benchmarks/results/{stem}.json>`.\n")
    return "\n".join(parts)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def without_progress_bars(notebook: Path, copy: Path) -> int:
    """Copy an executed notebook without its widget outputs (the training progress bars, one per
    epoch, whose text stands in for a live bar: a page to read shows the epoch lines instead);
    return how many were left out. Every other output, figures included, is kept."""
    import nbformat

    node = nbformat.read(notebook, as_version=4)
    dropped = 0
    for cell in node.cells:
        kept = [output for output in cell.get("outputs", [])
                if WIDGET_VIEW not in output.get("data", {})]
        dropped += len(cell.get("outputs", [])) - len(kept)
        if "outputs" in cell:
            cell.outputs = kept
    nbformat.write(node, copy)
    return dropped


def stage(executed: list[Path], folder: Path) -> None:
    """Lay out Sphinx's source folder: the pages (generated parts filled in), the executed
    notebooks under ``notebooks/`` and the study results under ``benchmarks/results/``, as in
    the repository."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "notebooks").mkdir(parents=True)
    (folder / "benchmarks" / "results").mkdir(parents=True)
    for notebook in executed:
        without_progress_bars(notebook, folder / "notebooks" / notebook.name)
    plots = sorted(RESULTS.glob("*.png"))
    for path in plots + sorted(RESULTS.glob("*.json")):
        shutil.copy2(path, folder / "benchmarks" / "results" / path.name)
    readme = README.read_text(encoding="utf-8")
    present = [nb.stem for nb in executed]
    generated = {
        "<!-- site: course-map -->": course_map(notebook_rows(readme), set(present)),
        "<!-- site: toctree -->": toctree(present),
        "<!-- site: results -->": results_sections(readme, plots),
    }
    for page in PAGES:
        text = (SOURCES / page).read_text(encoding="utf-8")
        for marker, content in generated.items():
            text = text.replace(marker, content)
        (folder / page).write_text(text, encoding="utf-8")


def build(executed: Path, chosen: bool, out: Path) -> Path:
    """Build the site from the executed notebooks in ``executed`` into ``out``; return ``out``.

    Sphinx runs with ``-W --keep-going``: every warning (a broken reference or link to a page,
    an image it cannot read, an output it cannot render) fails the build, after all are listed."""
    notebooks = ensure_executed(executed, chosen)
    work = executed / ".site"
    stage(notebooks, work / "src")
    html = work / "html"  # myst-nb writes its output files beside Sphinx's output folder
    for folder in (html, out):
        if folder.exists():
            shutil.rmtree(folder)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", "-q",
               "-c", str(SOURCES), "-d", str(work / "doctrees"), str(work / "src"), str(html)]
    subprocess.run(command, cwd=ROOT, check=True)
    if (html / "_sources").is_dir() and not any((html / "_sources").iterdir()):
        (html / "_sources").rmdir()  # html_copy_source is off: nothing to publish there
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(html, out)
    print(f"Site of {len(notebooks)} executed notebooks in {out} (open {out / 'index.html'})")
    return out


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python site/build_site.py [--executed DIR] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", type=Path, default=None,
                        help=f"folder of executed notebooks (default: ${EXECUTED_ENV} or build/)")
    parser.add_argument("--out", type=Path, default=None, help="the site's folder (default: EXECUTED/site)")
    args = parser.parse_args(argv)
    executed, chosen = executed_folder(args.executed)
    try:
        build(executed, chosen, (args.out or executed / "site").resolve())
    except subprocess.CalledProcessError as error:
        print(f"site build failed: {' '.join(map(str, error.cmd[:4]))} ... exited {error.returncode}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
