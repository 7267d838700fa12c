"""The course's site (``make site``) in a real browser, served from 127.0.0.1.

Every notebook page shows every figure its executed notebook holds (loaded images, counted against
the notebook's ``image/png`` outputs), no internal link or image of any page is broken, and the
built-in search finds the notebooks. Reads the site that ``make site`` built from the executed
notebooks in ``build/`` (or in ``$LC_SITE_NOTEBOOKS``, as ``site/build_site.py`` does) at
``FOLDER/site``; building it needs the executed course (``make course``, minutes), so the test
does not build it: ``make test-site`` builds it and then runs this file, and ``make test-unit``
leaves it out. Skips with the reason where the site, Chromium or ``playwright`` is missing, unless
``LC_SITE_REQUIRED=1`` (``make test-site``), where a missing site fails.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from lc_utils.settings import PROJECT_ROOT

EXECUTED = Path(os.environ.get("LC_SITE_NOTEBOOKS") or PROJECT_ROOT / "build").expanduser().resolve()
SITE = EXECUTED / "site"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("LC_SITE_REQUIRED") == "1"

if not (SITE / "index.html").is_file():
    if REQUIRED:
        raise RuntimeError(f"no site at {SITE}: `make site` should have built it")
    pytest.skip(f"no site at {SITE} (make site)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow
NOTEBOOKS = sorted(p.stem for p in EXECUTED.glob("[0-9][0-9]_*.ipynb"))


def png_outputs(notebook: Path) -> int:
    """How many outputs of the executed notebook carry an ``image/png``."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum("image/png" in output.get("data", {}) for cell in cells for output in cell.get("outputs", []))


class _Links(HTMLParser):
    """Every ``href`` and ``src`` of a page, with the ``id`` attributes it defines."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)
            elif name in ("id", "name") and value:
                self.ids.add(value)


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A static file server for the site on a free port of 127.0.0.1 (as GitHub Pages serves it)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # no line per request in the test output
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    """Chromium with one context that reaches the local server only: a request to another host
    (the Colab badges, MathJax) fails at once, as on a machine without a network."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                      else route.abort())
        yield context
        context.close()
        chromium.close()


def test_the_site_has_a_page_for_every_executed_notebook() -> None:
    assert NOTEBOOKS, f"no executed notebooks in {EXECUTED}"
    missing = [name for name in NOTEBOOKS if not (SITE / "notebooks" / f"{name}.html").is_file()]
    assert not missing, f"executed notebooks without a page in {SITE}: {missing} (make site)"
    built = (SITE / "index.html").stat().st_mtime
    newer = [name for name in NOTEBOOKS if (EXECUTED / f"{name}.ipynb").stat().st_mtime > built]
    assert not newer, f"executed again after the site was built: {newer} (make site)"


# An image counts as shown once the browser has decoded it (naturalWidth > 0). External images
# (the Colab badges) are left out: a test machine may reach no other host.
_IMAGES = """() => {
  const local = [...document.images].filter(i => new URL(i.src).origin === location.origin);
  const shown = i => i.complete && i.naturalWidth > 0;
  return {
    outputs: local.filter(i => i.closest('.cell_output')).filter(shown).length,
    broken: local.filter(i => !shown(i)).map(i => i.getAttribute('src')),
  };
}"""


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_notebook_page_shows_every_figure_of_the_executed_notebook(browser, server: str, name: str) -> None:
    page = browser.new_page()
    try:
        response = page.goto(urljoin(server, f"notebooks/{name}.html"), wait_until="load")
        assert response is not None and response.ok, f"notebooks/{name}.html: {response and response.status}"
        images = page.evaluate(_IMAGES)
    finally:
        page.close()
    assert not images["broken"], f"{name}: images that did not load: {images['broken']}"
    expected = png_outputs(EXECUTED / f"{name}.ipynb")
    assert images["outputs"] == expected, (
        f"{name}: {images['outputs']} figures shown in cell outputs, the executed notebook has {expected}")


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def _resolve(server: str, page: str, link: str) -> str | None:
    """The site path a link of ``page`` points to, or None for another host or this very page."""
    split = urlsplit(link)
    if split.scheme or split.netloc or link.startswith("#"):
        return None
    target = urlsplit(urldefrag(urljoin(urljoin(server, page), link))[0]).path.lstrip("/")
    return target + "index.html" if target == "" or target.endswith("/") else target


def test_no_internal_link_is_broken(server: str) -> None:
    """Crawl from the front page and from every HTML file of the site: each relative href and
    src resolves to a file the server has, a fragment on a page to an id on that page, and every
    notebook page is reachable from the front page."""
    queue = ["index.html"] + sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html"))
    pages: dict[str, _Links] = {}
    leads_to: dict[str, set[str]] = {}
    status: dict[str, int] = {}
    broken: list[str] = []
    while queue:
        page = queue.pop(0)
        if page in pages:
            continue
        code, body = _fetch(urljoin(server, page))
        if code != 200:
            broken.append(f"{page}: HTTP {code}")
            continue
        pages[page] = _parse(body.decode("utf-8"))
        leads_to[page] = set()
        for link in pages[page].links:
            path = _resolve(server, page, link)
            if path is None:
                continue
            if path not in status:
                status[path] = _fetch(urljoin(server, path))[0]
            if status[path] != 200:
                broken.append(f"{page}: {link} -> HTTP {status[path]}")
            elif path.endswith(".html"):
                leads_to[page].add(path)
                queue.append(path)
    for page, parsed in pages.items():  # fragments, now that every page's ids are known
        for link in parsed.links:
            fragment = urlsplit(link).fragment
            path = page if link.startswith("#") else _resolve(server, page, link)
            if fragment and path in pages and fragment not in pages[path].ids:
                broken.append(f"{page}: {link} -> no id {fragment!r} there")
    assert not broken, "broken internal links:\n" + "\n".join(broken)
    reached, frontier = {"index.html"}, ["index.html"]
    while frontier:
        for path in leads_to.get(frontier.pop(), ()):
            if path not in reached:
                reached.add(path)
                frontier.append(path)
    unreachable = [name for name in NOTEBOOKS if f"notebooks/{name}.html" not in reached]
    assert not unreachable, f"notebook pages no link from the front page leads to: {unreachable}"
    print(f"{len(pages)} pages, {len(status)} distinct internal targets, all found")


def test_the_search_finds_the_notebooks(browser, server: str) -> None:
    """Sphinx's built-in search, in the browser: a word of the course finds its notebook pages."""
    page = browser.new_page()
    try:
        page.goto(urljoin(server, "search.html?q=DeepGlobe"), wait_until="load")
        page.wait_for_selector("#search-results ul.search li", timeout=30_000)
        found = page.eval_on_selector_all("#search-results ul.search li a",
                                          "links => links.map(a => a.getAttribute('href'))")
    finally:
        page.close()
    assert any(href.startswith("notebooks/") for href in found), found
