"""The notebooks in a real browser: JupyterLab on 127.0.0.1, driven through headless Chromium.

Each test copies the notebooks into a temporary folder (JupyterLab saves what it opens), starts
JupyterLab there, runs cells as a learner would and checks what the page shows. Skips with the
reason where Chromium or the ``playwright`` package is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

from lc_utils.classes import DEEPGLOBE
from lc_utils.settings import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "lc-browser-test"
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the notebooks, next to a copy of the committed results they read."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(PROJECT_ROOT / "benchmarks" / "results", root / "benchmarks" / "results")
    return root


@pytest.fixture(scope="module")
def lab(workspace: Path) -> Iterator[str]:
    """A JupyterLab server on a free local port, in fast mode, with live widgets."""
    port = _free_port()
    settings = workspace / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)  # no "Jupyter news?" prompt over the notebook
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "LC_FAST": "1", "JUPYTER_CONFIG_DIR": str(workspace / ".jupyter"),
           "JUPYTERLAB_SETTINGS_DIR": str(workspace / ".lab-settings")}
    env.pop("LC_HEADLESS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}",
         f"--ServerApp.root_dir={workspace / 'notebooks'}", f"--IdentityProvider.token={TOKEN}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("JupyterLab did not start within 60 s")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


EMPTY_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'


class Notebook:
    """One notebook open in JupyterLab, with the page's console errors collected."""

    def __init__(self, browser, lab: str, name: str, width: int = 1440) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        # this machine reaches no other host: what a notebook links from outside (the Colab badge)
        # is answered here with an empty picture rather than failing in the console
        self.page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"),
                        lambda route: route.fulfill(status=200, content_type="image/svg+xml", body=EMPTY_SVG))
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{lab}/lab/tree/{name}?token={TOKEN}&reset")
        self.page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                    " && window.jupyterapp.shell.currentWidget.sessionContext",
                                    timeout=60_000)
        self.wait_idle(120)

    def command(self, name: str) -> None:
        self.page.evaluate(f"window.jupyterapp.commands.execute({json.dumps(name)})")

    def wait_idle(self, seconds: float) -> None:
        self.page.wait_for_function(
            "(() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;"
            " return s.session && s.session.kernel && s.kernelDisplayStatus === 'idle'; })()",
            timeout=seconds * 1000)

    def run_all(self, seconds: float = 300) -> None:
        self.command("notebook:run-all-cells")
        self.page.wait_for_timeout(1000)
        self.page.wait_for_function(
            "(() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;"
            " return s.kernelDisplayStatus === 'idle'; })()", timeout=seconds * 1000)

    def close(self) -> None:
        self.page.close()


def _prepare_checkpoint(workspace: Path) -> None:
    """A tiny run for notebook 05 to load: a few steps are enough for a browser to show."""
    from lc_utils import (
        checkpoints,
        datasets,
        layouts,
        models,
        point_files,
        settings,
        sparse,
        training,
        transforms,
    )

    root = settings.prepare_data()
    split = datasets.split_pairs(layouts.find_pairs(root), seed=0)
    annotations = point_files.ensure_annotations(workspace / "points.csv", split["train"][:4], n_points=50)
    train_set = sparse.SparseLandCoverDataset(split["train"][:4], annotations,
                                              transform=transforms.make_transforms(64))
    model = models.build_deeplabv3(7, "mobilenet_v3_large", None)
    training.fit(model, training.make_loader(train_set, 2, shuffle=True), epochs=1,
                 checkpoints=checkpoints.Checkpoints(workspace / "runs" / "tiny"), progress=False)
    path = workspace / "notebooks" / "05_testing_metrics.ipynb"
    notebook = nbformat.read(path, as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source += f'\nRUNS_DIR = "{workspace / "runs"}"\nRUN_NAME = "tiny"'
    nbformat.write(notebook, path)


def _widget_image(page) -> str:
    return page.locator(".widget-output img").last.get_attribute("src") or ""


SHOTS = Path(os.environ.get("LC_BROWSER_SHOTS", PROJECT_ROOT / "build" / "browser"))


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT_ROOT / "notebooks").glob("[0-9]*.ipynb")))
def test_opening_a_notebook_changes_nothing(browser, lab: str, workspace: Path, name: str) -> None:
    """Open, let the kernel start, save (as autosave would), close: the file is as committed. The
    kernel is the one ``make install`` registers, and the Python version JupyterLab writes into
    the metadata is taken out again on save (``lc_utils.nbclean.pre_save_hook``)."""
    path = workspace / "notebooks" / name
    committed = path.read_bytes()
    notebook = Notebook(browser, lab, name)
    notebook.page.wait_for_timeout(1500)  # metadata updates land after the kernel's first reply
    kernel = notebook.page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayName")
    assert kernel == "Python 3 (lc_utils)"
    notebook.command("docmanager:save")
    notebook.page.wait_for_function("!window.jupyterapp.shell.currentWidget.context.model.dirty")
    notebook.close()
    assert path.read_bytes() == committed
    assert notebook.errors == []


def test_density_slider_redraws_the_figure(browser, lab: str) -> None:
    notebook = Notebook(browser, lab, "03_sparse_labeling.ipynb", width=1024)
    notebook.run_all()
    page = notebook.page
    slider = page.locator(".widget-hslider").first
    slider.scroll_into_view_if_needed()
    caption = page.locator(".widget-html-content", has_text="per megapixel").first
    # The stand-alone copy of the figure (for readers without widgets) is gone once the widget is drawn.
    cell_images = page.locator(".jp-Cell", has=slider).locator("img")
    deadline = time.monotonic() + 30
    while cell_images.count() != 1 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert cell_images.count() == 1
    # The caption's widget is drawn first and given its text by the kernel's next message.
    page.wait_for_function("() => Array.from(document.querySelectorAll('.widget-html-content'))"
                           ".some(e => e.innerText.includes('per megapixel'))", timeout=30_000)
    before_text, before_image = caption.inner_text(), _widget_image(page)
    assert before_text.startswith("98 points") and before_image.startswith("data:image/png")
    track = slider.locator(".noUi-base, .slider").first.bounding_box()
    assert track["width"] >= 240  # about 20 px per step, even at 1024 px
    handle = slider.locator(".noUi-handle").first.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.9, handle["y"] + handle["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function(f"!document.body.innerText.includes({json.dumps(before_text)})", timeout=30_000)
    page.wait_for_timeout(500)
    notebook.wait_idle(60)
    after_text, after_image = caption.inner_text(), _widget_image(page)
    assert after_text != before_text and after_image != before_image
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".jp-OutputArea-output", has=slider).screenshot(path=str(SHOTS / "density_slider_1024.png"))
    assert notebook.errors == []
    notebook.close()


LAPTOP_NOTEBOOKS = ("01_data_exploration.ipynb", "02_mask_decoding.ipynb", "03_sparse_labeling.ipynb")
SMALLEST_SCALE = 0.75
"""How far JupyterLab may shrink a figure to fit the notebook column before its titles and legends
get too small to read (a 10-point title at 100 dpi stays above 10 pixels)."""


@pytest.fixture(scope="module")
def executed(workspace: Path) -> Path:
    """Notebooks 01-03 run in fast mode (their widgets as static figures), as a learner sees them."""
    from nbconvert.preprocessors import ExecutePreprocessor

    folder = workspace / "notebooks"
    os.environ.setdefault("LC_FAST", "1")
    for name in LAPTOP_NOTEBOOKS:
        notebook = nbformat.read(folder / name, as_version=4)
        ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(
            notebook, {"metadata": {"path": str(folder)}})
        nbformat.write(notebook, folder / f"executed_{name}")
    return folder


@pytest.mark.parametrize("name", LAPTOP_NOTEBOOKS)
def test_figures_read_well_on_a_laptop(browser, lab: str, executed: Path, name: str) -> None:
    """At 1024 px with the file browser open (a notebook column of about 590 px) no figure is shrunk
    below SMALLEST_SCALE of its size, and no printed line wraps."""
    notebook = Notebook(browser, lab, f"executed_{name}", width=1024)
    page = notebook.page
    page.wait_for_timeout(1000)
    assert page.locator(".jp-FileBrowser").first.is_visible()  # the file browser takes its share
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-RenderedImage img')).map(
        img => ({natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
                 column: img.closest('.jp-OutputArea-output').getBoundingClientRect().width}))""")
    assert sizes and all(s["natural"] > 0 for s in sizes)
    column = max(s["column"] for s in sizes)
    assert 500 <= column <= 700, column  # the column the issue measured (590 px)
    scales = [round(s["shown"] / s["natural"], 2) for s in sizes]
    assert min(scales) >= SMALLEST_SCALE, f"{name}: figures shown at {scales} of their size"
    wrapped = page.evaluate("""() => {
        const measure = document.createElement('canvas').getContext('2d');
        const lines = [];
        for (const pre of document.querySelectorAll(
                '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stdout"] pre')) {
            const style = getComputedStyle(pre);
            measure.font = style.font;
            const room = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            for (const line of pre.innerText.split('\\n')) {
                if (measure.measureText(line).width > room + 1) lines.push(line);
            }
        }
        return lines; }""")
    assert wrapped == [], f"{name}: printed lines too long for the column: {wrapped}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    widest = max(range(len(sizes)), key=lambda i: sizes[i]["natural"])
    figure = page.locator(".jp-RenderedImage").nth(widest)
    figure.scroll_into_view_if_needed()
    figure.screenshot(path=str(SHOTS / f"{Path(name).stem}_widest_figure_1024.png"))
    print(f"{name}: column {column:.0f} px, figures at {scales} of their size")
    assert notebook.errors == []
    notebook.close()


def test_prediction_browser_switches_images(browser, lab: str, workspace: Path) -> None:
    _prepare_checkpoint(workspace)
    notebook = Notebook(browser, lab, "05_testing_metrics.ipynb", width=1440)
    notebook.run_all()
    page = notebook.page
    dropdown = page.locator(".widget-dropdown select").last
    dropdown.scroll_into_view_if_needed()
    before = _widget_image(page)
    dropdown.select_option(index=1)
    page.wait_for_function(
        "src => { const imgs = document.querySelectorAll('.widget-output img');"
        " return imgs.length && imgs[imgs.length - 1].src !== src; }", arg=before, timeout=60_000)
    assert _widget_image(page) != before
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "prediction_browser_1440.png"
    page.locator(".jp-OutputArea-output", has=dropdown).screenshot(path=str(shot))
    assert notebook.errors == []
    notebook.close()


def _poll(read: Callable[[], object], expected: object, seconds: float = 30) -> object:
    """What ``read`` returns once it equals ``expected`` (or at the deadline)."""
    deadline = time.monotonic() + seconds
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def test_clicks_on_the_annotator_reach_the_annotation_file(browser, lab: str, workspace: Path) -> None:
    """Pick a class, click the image: the file gains that point at the clicked pixel; a click on
    the point removes it; undo brings it back. Everything goes through the real front end."""
    from lc_utils import files, layouts, point_files, settings

    image_path = layouts.find_pairs(settings.prepare_data())[0][0]
    csv = workspace / "clicked.csv"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from lc_utils import annotate, files\n"
        "from lc_utils.point_editor import PointEditor\n"
        f"image = {str(image_path)!r}\n"
        f"editor = PointEditor({str(csv)!r}, files.image_shapes([(image, None)]))\n"
        "annotate.PointAnnotator(editor, {files.image_id_of(image): image})")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, workspace / "notebooks" / "annotator.ipynb")
    height, width = files.image_shapes([(image_path, None)])[files.image_id_of(image_path)]

    def points() -> set[tuple[int, int, str]]:
        return {(row, col, DEEPGLOBE.names[label]) for row, col, label in _saved_points(csv)}

    opened = Notebook(browser, lab, "annotator.ipynb")
    opened.run_all(120)
    page = opened.page
    canvas = page.locator(".lc-canvas")
    canvas.wait_for(timeout=30_000)
    page.locator(".lc-class", has_text="forest").click()
    page.wait_for_selector(".lc-class.lc-active:has-text('forest')", timeout=10_000)
    box = canvas.bounding_box()
    x, y = box["x"] + 0.3 * box["width"], box["y"] + 0.6 * box["height"]
    page.mouse.click(x, y)
    # the whole image is shown: the clicked pixel is the same share of its width and height
    clicked = _poll(points, {(int(0.6 * height), int(0.3 * width), "forest")})
    assert len(clicked) == 1
    (row, col, _), = clicked
    pixel = max(height / box["height"], width / box["width"])  # image pixels per screen pixel
    assert abs(row - 0.6 * height) <= max(1, pixel) and abs(col - 0.3 * width) <= max(1, pixel)
    assert point_files.load_annotations(csv)[files.image_id_of(image_path)].sources[0] == "person"
    page.mouse.click(x + 2, y - 1)  # on the point, with its class: removed
    assert _poll(points, set()) == set()
    page.locator(".lc-tools button", has_text="undo").click()
    assert _poll(points, clicked) == clicked
    # the file is saved before the status line reaches the page: wait for the line, then read it
    page.locator(".lc-status", has_text="undone; 1 point on this image").wait_for(timeout=10_000)
    assert page.locator(".lc-status").inner_text().startswith("undone; 1 point on this image")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".lc-annotator").screenshot(path=str(SHOTS / "annotator.png"))
    assert opened.errors == []
    opened.close()



def _saved_points(csv: Path) -> set[tuple[int, int, int]]:
    """(row, col, class) of every point the annotation file holds; none before it exists."""
    from lc_utils import point_files

    if not csv.exists():
        return set()
    return {(int(r), int(c), int(k)) for a in point_files.load_annotations(csv).values()
            for r, c, k in zip(a.rows, a.cols, a.labels)}


def test_the_live_annotator_redraws_its_prediction_after_a_click_and_an_undo(browser, lab: str,
                                                                               workspace: Path) -> None:
    """Live mode in the real front end: a click with a class the model does not predict at that
    pixel reaches the annotation file, and the overlay drawn on the canvas at that pixel turns to
    the clicked class within seconds (the model's last layer refitted in the kernel); undo takes
    both back."""
    import numpy as np
    import torch

    from lc_utils import annotate, inference
    from lc_utils.models import build_deeplabv3
    from lc_utils.point_editor import PointEditor
    from lc_utils.synthetic import generate_pair

    setup = ("import torch\n"
             "from lc_utils.synthetic import generate_pair\n"
             "from lc_utils.models import build_deeplabv3\n"
             "image = generate_pair(0, 0, 96)[0]\n"
             "torch.manual_seed(0)\n"
             "model = build_deeplabv3(7, 'mobilenet_v3_large', None).eval()\n")
    csv = workspace / "live_clicks.csv"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        setup + "from lc_utils import annotate\n"
        "from lc_utils.live_head import LiveHead\n"
        "from lc_utils.point_editor import PointEditor\n"
        f"editor = PointEditor({str(csv)!r}, {{'tile': image.shape[:2]}})\n"
        "annotate.PointAnnotator(editor, {'tile': image}, live=LiveHead(model, tile_size=64))")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, workspace / "notebooks" / "live_annotator.ipynb")
    # the same image and model here: what the model predicts, and where the zoomed view puts a pixel
    image = generate_pair(0, 0, 96)[0]
    torch.manual_seed(0)
    model = build_deeplabv3(7, "mobilenet_v3_large", None).eval()
    base = inference.predict_tiled(model, image, tile_size=64)
    row, col = 40, 45
    label = next(k for k in DEEPGLOBE.known_indices() if k != base[row, col])
    replica = annotate.PointAnnotator(PointEditor(workspace / "replica.csv", {"tile": image.shape[:2]}),
                                      {"tile": image})
    replica.zoom(2)
    replica.zoom(2)  # what the "+" button does twice: an image pixel 16 screen pixels wide
    top, left, _, _ = replica.view
    x, y = (col + 0.5 - left) / replica.scale, (row + 0.5 - top) / replica.scale
    blends = 0.55 * image[row, col] + 0.45 * DEEPGLOBE.palette.astype(float)  # the overlay at 45%

    def overlay_class() -> int:
        """The class whose overlay colour the canvas shows inside pixel (row, col), beside its dot."""
        rgb = page.evaluate("([x, y]) => Array.from(document.querySelector('.lc-canvas').getContext('2d')"
                            ".getImageData(x, y, 1, 1).data.slice(0, 3))", [round(x + 6), round(y + 6)])
        return int(np.argmin(np.abs(blends - np.array(rgb)).sum(1)))

    def points() -> set[tuple[int, int, int]]:
        return _saved_points(csv)

    opened = Notebook(browser, lab, "live_annotator.ipynb")
    opened.run_all(180)
    page = opened.page
    canvas = page.locator(".lc-canvas")
    canvas.wait_for(timeout=60_000)
    assert page.locator(".lc-tools button", has_text="learn").is_visible()
    tools = page.locator(".lc-tools button")
    for _ in range(2):
        tools.filter(has_text="+").click()
    page.wait_for_timeout(500)
    assert _poll(overlay_class, int(base[row, col]), 10) == base[row, col]  # the model's own prediction
    page.locator(".lc-class", has_text=DEEPGLOBE.names[label]).click()
    page.wait_for_selector(f".lc-class.lc-active:has-text('{DEEPGLOBE.names[label]}')", timeout=10_000)
    box = canvas.bounding_box()
    width, height = page.evaluate("[document.querySelector('.lc-canvas').width, "
                                  "document.querySelector('.lc-canvas').height]")
    page.mouse.click(box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height)
    assert _poll(points, {(row, col, label)}, 10) == {(row, col, label)}
    assert _poll(overlay_class, label, 5) == label
    page.locator(".lc-status", has_text="learned from 1 point in").wait_for(timeout=5_000)
    page.locator(".lc-tools button", has_text="undo").click()
    assert _poll(points, set(), 10) == set()
    assert _poll(overlay_class, int(base[row, col]), 5) == base[row, col]
    page.locator(".lc-status", has_text="the head is back to 0 points").wait_for(timeout=5_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".lc-annotator").screenshot(path=str(SHOTS / "live_annotator.png"))
    assert opened.errors == []
    opened.close()
