"""The documentation site: ``scripts/build_docs.sh`` builds it with warnings as errors (a broken
cross-reference, a missing image or a notebook that does not render fails), then headless
Chromium opens its pages offline and checks that every image loads, that math is typeset and
that no page shows an error.

The site is built once per session into a temporary folder (never the repository). The
browser part needs Debian's ``chromium`` and the ``playwright`` package (see
``tests/browser/chromium.py``); without them it skips with one line saying why, unless
``SRLIB_REQUIRE_BROWSER=1``, which makes that a failure. ``SRLIB_SCREENSHOT_DIR`` (outside the
repository) keeps a screenshot of every page opened.
"""

import functools
import html
import http.server
import importlib
import inspect
import io
import json
import os
import pkgutil
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import srlib
from browser.chromium import chromium_or_skip, launched

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[1]
LESSONS = sorted(path.stem for path in (REPOSITORY / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# every page of the site: the landing page, the lessons, then the rest
PAGES = ["index.html", "lessons/index.html", *[f"lessons/{name}.html" for name in LESSONS],
         "install.html", "recipes.html", "results.html",
         *sorted(f"api/{path.stem}.html" for path in (REPOSITORY / "docs" / "api").glob("*.md"))]
# what an error looks like on a built page: a cell's traceback (myst-nb), a docutils problem
# left in the page, a MathJax error, a widget view that was not replaced by its note
ERROR_SELECTORS = [".output.traceback", ".output.error", ".system-message", ".problematic",
                   "mjx-merror", 'script[type="application/vnd.jupyter.widget-view+json"]']
PAGE_TIMEOUT_MS = 60_000


sys.path.insert(0, str(REPOSITORY / "docs" / "_ext"))
import srlib_docstrings  # noqa: E402 (the site's Sphinx extension, docs/_ext)
import srlib_offline  # noqa: E402

# docutils' complaints about layout; Sphinx's roles (:mod:, :func:) are unknown to plain docutils
LAYOUT_PROBLEMS = ("Unexpected indentation", "unexpected unindent", "Inconsistent literal block")


def rest_problems(text: str) -> tuple[list[str], list]:
    """docutils' layout problems with ``text`` as reST, and its literal blocks."""
    from docutils import nodes
    from docutils.core import publish_doctree

    stream = io.StringIO()
    tree = publish_doctree(text, settings_overrides={"warning_stream": stream,
                                                     "report_level": 2, "halt_level": 5})
    problems = [line for line in stream.getvalue().splitlines()
                if any(problem in line for problem in LAYOUT_PROBLEMS)]
    return problems, list(tree.findall(nodes.literal_block))


def test_plain_text_docstring_blocks_become_code_blocks():
    text = """Title line.

The recurrence:
    H[t] = V[t-1] + (X[t] - V[t-1]) / tau      (charge)
        continued deeper
Back to text, then an example.

    import srlib
    model = srlib.create_model("spikingresformer_ti")

* a list item
  whose continuation is not a block:
      lr(s) = min_lr + (lr - min_lr) s / S
* done"""
    problems, _ = rest_problems(text)
    assert problems, "the sample should trouble plain reST"
    converted = srlib_docstrings.literal_blocks(text.splitlines())
    problems, blocks = rest_problems("\n".join(converted))
    assert not problems, problems
    assert [block.astext() for block in blocks] == [
        "H[t] = V[t-1] + (X[t] - V[t-1]) / tau      (charge)\n    continued deeper",
        'import srlib\nmodel = srlib.create_model("spikingresformer_ti")',
        "lr(s) = min_lr + (lr - min_lr) s / S"]
    assert [block["classes"][-1] for block in blocks] == ["text", "python", "text"]
    for info in pkgutil.walk_packages(srlib.__path__, "srlib."):  # every module docstring
        if info.name.endswith("__main__"):
            continue
        doc = inspect.getdoc(importlib.import_module(info.name)) or ""
        converted = srlib_docstrings.literal_blocks(doc.splitlines())
        problems, _ = rest_problems("\n".join(converted))
        assert not problems, (info.name, problems)


def test_reexported_and_missing_names():
    assert srlib_docstrings.import_target("srlib.create_model") is srlib.models.create_model
    assert srlib_docstrings.import_target("srlib.neurons") is srlib.neurons
    assert srlib_docstrings.import_target("srlib.no_such_name") is None
    assert srlib_docstrings.import_target("srlib.models.no_such_module.x") is None


def test_matplotlib_animation_player_is_made_offline():
    """matplotlib's HTML player links a web stylesheet; the site drops it and loads nothing."""
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1), dpi=20)
    line, = figure.add_subplot().plot([0, 1])
    player = FuncAnimation(figure, lambda step: [line], frames=2).to_jshtml()
    assert srlib_offline.REMOTE_LINK.search(player), "expected the player's web stylesheet"
    cleaned = srlib_offline.REMOTE_SCRIPT.sub("", srlib_offline.REMOTE_LINK.sub("", player))
    assert not srlib_offline.REMOTE_ANY.search(cleaned)
    assert "anim-buttons" in cleaned and "data:image/png;base64," in cleaned


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built site's html folder."""
    build = tmp_path_factory.mktemp("docs")
    environment = {**os.environ, "SRLIB_DOCS_PYTHON": sys.executable}
    start = time.perf_counter()
    result = subprocess.run(["bash", str(REPOSITORY / "scripts" / "build_docs.sh"), str(build)],
                            cwd=REPOSITORY, env=environment, capture_output=True, text=True,
                            timeout=900, check=False)
    seconds = time.perf_counter() - start
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"the docs build failed ({seconds:.0f} s):\n{output}"
    print(f"[docs] built in {seconds:.0f} s")
    return build / "html"


def test_every_lesson_page_and_api_module_is_built(site):
    missing = [page for page in PAGES if not (site / page).is_file()]
    assert not missing, f"pages not built: {missing}"
    assert len(LESSONS) >= 6, LESSONS
    lessons_index = (site / "lessons" / "index.html").read_text()
    for name in LESSONS:  # in order in the lessons' table of contents
        assert f'href="{name}.html"' in lessons_index, name
    positions = [lessons_index.index(f'href="{name}.html"') for name in LESSONS]
    assert positions == sorted(positions), "lessons out of order"
    modules = (site / "py-modindex.html").read_text()
    names = [info.name for info in pkgutil.walk_packages(srlib.__path__, "srlib.")
             if not info.name.rsplit(".", 1)[-1].startswith("_")]
    undocumented = [name for name in names if f">{name}<" not in modules]
    assert not undocumented, (f"modules on no API page: {undocumented}; add an automodule "
                              f"directive for each to a page in docs/api/")


def page_text(path: Path) -> str:
    """A built page's text: tags dropped, entities decoded, line continuations joined."""
    text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))
    return re.sub(r"\\\n\s*", "", text)


def table_rows(path: Path) -> list[list[str]]:
    """The cells of the first table of a built page, row by row (header first)."""
    table = re.search(r"<table.*?</table>", path.read_text(), re.DOTALL).group(0)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.DOTALL)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.DOTALL)]


def test_recipes_and_benchmarks_come_from_the_repository(site):
    rows = table_rows(site / "recipes.html")
    header = rows[0]
    ours = {row[0]: dict(zip(header, row)) for row in rows[1:] if row[1] == "srlib"}
    default = yaml.safe_load((REPOSITORY / "configs" / "default.yaml").read_text())
    for path in sorted((REPOSITORY / "configs").glob("*.yaml")):
        recipe = {**default, **yaml.safe_load(path.read_text())}
        row = ours[path.stem]  # every recipe has its row, showing its own values
        assert (int(row["epochs"]), float(row["lr"]), int(row["batch / process"])) == \
            (recipe["epochs"], recipe["lr"], recipe["batch_size"]), path.stem
    # the paper's ImageNet settings (Shi, Hao, Yu, CVPR 2024, and the authors' configs)
    paper = {rows[i][0]: dict(zip(header, rows[i + 1])) for i in range(1, len(rows) - 1)
             if rows[i + 1][1] == "paper"}
    for name, lr, batch in (("imagenet_ti", 1e-3, 32), ("imagenet_m", 8e-4, 28),
                            ("imagenet_l", 5e-4, 16)):
        assert (int(paper[name]["epochs"]), float(paper[name]["lr"]),
                int(paper[name]["batch / process"])) == (320, lr, batch), name
    results = page_text(site / "results.html")
    for path in sorted((REPOSITORY / "benchmarks" / "results").glob("*.md")):
        assert f"(benchmarks/results/{path.name})" in results, path.name
        assert f"--name {path.stem}" in results, f"no command for {path.name}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served_site(site):
    """``http://127.0.0.1:PORT/`` serving the built site, on a free port."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chromium():
    with launched(chromium_or_skip("docs browser check")) as browser:
        yield browser


# Run in the page once it has loaded: make lazy images load, wait for every image and for
# MathJax's typesetting, then report images, errors and math.
PAGE_REPORT_JS = """async (selectors) => {
    const images = Array.from(document.images);
    images.forEach(image => { image.loading = "eager"; });
    await Promise.all(images.map(image => image.decode().catch(() => null)));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
        await MathJax.startup.promise;
    }
    const errors = [];
    for (const selector of selectors) {
        for (const element of document.querySelectorAll(selector)) {
            errors.push(selector + ": " + (element.textContent || "").trim().slice(0, 200));
        }
    }
    return {
        images: images.map(image => ({src: (image.currentSrc || image.src).slice(0, 120),
                                      width: image.naturalWidth})),
        errors: errors,
        math: document.querySelectorAll(".math").length,
        typeset: document.querySelectorAll("mjx-container").length,
        title: document.title,
    };
}"""


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders_offline_without_errors(chromium, served_site, page_path):
    origin = urlsplit(served_site).netloc
    outside, problems, console = [], [], []
    context = chromium.new_context(viewport={"width": 1280, "height": 900})

    def route(request_route):  # the site must not need the network: everything else fails
        if urlsplit(request_route.request.url).netloc == origin or \
                request_route.request.url.startswith("data:"):
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    def response(answer):
        if answer.status >= 400:
            problems.append(f"{answer.status} {answer.url}")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and console.append(message.text))
    page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
    page.on("response", response)
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    try:
        page.goto(served_site + page_path, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        report = page.evaluate(PAGE_REPORT_JS, ERROR_SELECTORS)
        folder = os.environ.get("SRLIB_SCREENSHOT_DIR")
        if folder and not Path(folder).resolve().is_relative_to(REPOSITORY):
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / (page_path.replace("/", "_") + ".png")),
                            full_page=False)
    finally:
        context.close()
    summary = json.dumps(report, indent=1)[:3000]
    assert not outside, f"{page_path} asked for the network: {outside}"
    assert not problems, f"{page_path}: requests that failed: {problems}"
    assert not console, f"{page_path}: browser console errors: {console}"
    assert not report["errors"], f"{page_path} shows errors: {report['errors']}"
    broken = [image["src"] for image in report["images"] if image["width"] == 0]
    assert not broken, f"{page_path}: images that did not load: {broken}"
    if report["math"]:
        assert report["typeset"] >= report["math"], \
            f"{page_path}: math not typeset by MathJax: {summary}"
    if page_path.startswith("lessons/0"):
        notebook = json.loads((REPOSITORY / "notebooks" / (Path(page_path).stem + ".ipynb"))
                              .read_text())
        saved = sum("image/png" in output.get("data", {})
                    for cell in notebook["cells"] for output in cell.get("outputs", []))
        shown = sum(image["src"].startswith(served_site + "_images/") or
                    "/_images/" in image["src"] for image in report["images"])
        assert shown >= saved, f"{page_path}: {saved} saved figures, {shown} on the page"
