"""One lesson in JupyterLab, as a student runs it: open, restart and run all, move the widgets.

:func:`run_lesson` opens a notebook of the test server's workspace in a fresh browser page,
clears its outputs (Edit > Clear Outputs of All Cells), runs it from a fresh kernel (Kernel >
Restart Kernel and Run All Cells...), waits until every cell has run, then checks in the page:

- no cell has an error output, and the kernel never died;
- every image the kernel sent (figures) is drawn in the page;
- the page asks for nothing outside the machine (Chromium resolves no other host name);
- every widget output rendered as a widget (its controls are in the DOM), not as the
  ``Loading widget...`` placeholder, an error or the plain-text repr;
- moving each control of each widget (keyboard on sliders, another option of a dropdown, a click
  on toggle buttons, check boxes and radio buttons) changes the image its cell shows;
- the browser console reported no uncaught error.

A failure raises :class:`LessonError`, whose message names the notebook, the cell and the
screenshot saved at that moment. The page is read through ``window.jupyterapp`` (see
``page_script.js``); everything the page is asked to *do* goes through menus, keys and clicks.
"""

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PAGE_SCRIPT = (Path(__file__).with_name("page_script.js")).read_text()
VIEWPORT = {"width": 1280, "height": 900}
POLL_S = 0.5
OPEN_TIMEOUT_S = 120  # page load and first kernel start on a loaded machine
WIDGET_TIMEOUT_S = 90  # one widget update: the lessons promise a few seconds on a laptop
SCREENSHOT_MAX_HEIGHT_PX = 16000  # whole-notebook screenshots are cut there
# Console errors that are JupyterLab's and not the lessons', each with the reason it is ignored.
IGNORED_CONSOLE_ERRORS = (
    # JupyterLab's debugger extension asks every kernel it connects to for its debug state; the
    # test restarts the kernel right after the page opens, which cancels that pending request.
    (re.compile(r"Could not restore the debugger state: Canceled future for debug_request"),
     "the debugger's pending state request, cancelled by the kernel restart"),
)
DIED = ("autorestarting", "dead")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
SLOWEST_CELLS = 3  # named in the report: where a quick mode would save time


class LessonError(AssertionError):
    """A lesson failed in the browser; the message names the notebook, the cell, the screenshot."""


@dataclass
class WidgetReport:
    """One widget output and the controls moved in it."""

    cell: int  # 1-based, as JupyterLab's status bar counts cells
    controls: list[str] = field(default_factory=list)  # "description (kind): seconds"
    kinds: list[str] = field(default_factory=list)  # slider, select, toggle-buttons, ...


@dataclass
class LessonReport:
    """What :func:`run_lesson` saw in one notebook."""

    notebook: str
    open_s: float = 0.0
    run_s: float = 0.0
    widgets_s: float = 0.0
    cells: int = 0
    widgets: list[WidgetReport] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    ignored_console_errors: list[str] = field(default_factory=list)
    slowest_cells: list[str] = field(default_factory=list)  # "cell N: S s", slowest first
    failure: str | None = None  # the first line of the LessonError, when there was one


def _save_png(page, path: Path, **options) -> Path:
    """A screenshot written whole or not at all (temporary file, then rename)."""
    data = page.screenshot(**options)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path


class _Lesson:
    def __init__(self, page, server, path: str, screenshot_dir: Path, timeout_s: float):
        self.page, self.server, self.path = page, server, path
        self.name = Path(path).stem
        self.screenshot_dir = screenshot_dir
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.report = LessonReport(notebook=Path(path).name)
        self.console: list[str] = []
        self.external: list[str] = []  # addresses the page asked for outside this machine
        page.on("request", self._on_request)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.console.append(f"uncaught: {error}"))
        page.on("crash", lambda _: self.console.append("the page crashed"))

    def _on_console(self, message) -> None:
        if message.type == "error":
            source = (message.location or {}).get("url")  # for a failed load: the resource
            self.console.append(f"{message.text} [{source}]" if source else message.text)

    def _on_request(self, request) -> None:
        if urlsplit(request.url).scheme in ("http", "https", "ws", "wss") \
                and urlsplit(request.url).hostname not in LOCAL_HOSTS:
            self.external.append(request.url)

    def call(self, function: str, *arguments):
        return self.page.evaluate(f"([a]) => window.srlibTest.{function}(...a)", [list(arguments)])

    def fail(self, message: str, cell: int | None = None) -> LessonError:
        """A LessonError with the notebook, the cell (0-based here) and a fresh screenshot."""
        where = f"cell {cell + 1}" if cell is not None else "the notebook"
        screenshot = self.screenshot_dir / f"{self.name}-FAILED.png"
        try:
            if cell is not None:
                self.show_cell(cell)
            _save_png(self.page, screenshot)
            shown = str(screenshot)
        except Exception as error:  # a crashed page cannot be photographed
            shown = f"(no screenshot: {type(error).__name__}: {error})"
        unexpected = self.unexpected_console_errors()
        console = f"\nbrowser console errors: {unexpected}" if unexpected else ""
        error = LessonError(f"{self.report.notebook}, {where}: {message}\nscreenshot: {shown}"
                            f"{console}")
        self.report.failure = f"{where}: {message}".split("\n")[0]
        error.report = self.report
        return error

    def show_cell(self, index: int) -> str:
        """Scroll cell ``index`` (0-based) to the top of the notebook; its CSS selector."""
        self.call("tagCell", self.path, index)
        # cells above it are drawn as they come into view (content-visibility), which moves it:
        # scroll once more when the layout has settled
        self.page.wait_for_timeout(300)
        return self.call("tagCell", self.path, index)

    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def menu(self, menu: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel").get_by_text(menu, exact=True).click()
        self.page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).click()

    # -- open ----------------------------------------------------------------------------------
    def open(self) -> None:
        __tracebackhide__ = True
        started = time.monotonic()
        self.page.goto(self.server.url(f"lab/tree/{self.path}", reset=""))
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started",
                                    timeout=OPEN_TIMEOUT_S * 1000)
        self.page.evaluate(f"({PAGE_SCRIPT})()")
        limit = time.monotonic() + OPEN_TIMEOUT_S
        while True:
            state = self.call("openState", self.path)
            if state["dialog"]:
                raise self.fail(f"did not open in JupyterLab: {state['dialog']!r}")
            if state["ready"] and state["kernel"] == "idle":
                break
            if time.monotonic() > limit:
                raise self.fail(f"not open with an idle kernel after {OPEN_TIMEOUT_S} s "
                                f"(ready: {state['ready']}, kernel: {state['kernel']})")
            time.sleep(POLL_S)
        # fold the file browser away: more room for the notebook in the screenshots
        self.page.evaluate("() => jupyterapp.commands.execute('application:toggle-left-area')")
        self.report.open_s = time.monotonic() - started

    # -- run -----------------------------------------------------------------------------------
    def run_all(self) -> dict:
        __tracebackhide__ = True
        started = time.monotonic()
        self.menu("Edit", "Clear Outputs of All Cells")
        self.call("watchKernel", self.path)
        self.menu("Kernel", "Restart Kernel and Run All Cells…")
        self.page.locator(".jp-Dialog button.jp-mod-accept").click()  # "Restart"
        while True:
            state = self.call("state", self.path)
            self.report.cells = state["total"]
            self.report.run_s = time.monotonic() - started
            timed = sorted((cell for cell in state["cells"] if cell["seconds"] is not None),
                           key=lambda cell: -cell["seconds"])[:SLOWEST_CELLS]
            self.report.slowest_cells = [f"cell {cell['index'] + 1}: {cell['seconds']:.0f} s"
                                         for cell in timed]
            died = [status for status in state["statuses"] if status["status"] in DIED]
            if died:
                time.sleep(2 * POLL_S)  # replies of cells run before the death still arrive
                state = self.call("state", self.path)
                # cells run in order: the first one without an execution count was running
                waiting = [cell["index"] for cell in state["cells"]
                           if not cell["empty"] and cell["count"] is None]
                raise self.fail("the kernel died (JupyterLab: "
                                f"{state['dialog'] or died[0]['status']!r})",
                                (waiting or died[0]["running"] or [None])[0])
            code = [cell for cell in state["cells"] if not cell["empty"]]
            busy = any(cell["running"] for cell in code) or state["kernel"] != "idle"
            errors = [cell for cell in code if cell["errors"]]
            if errors and not busy:
                first = errors[0]
                error = first["errors"][0]
                raise self.fail(f"{error['ename']}: {error['evalue']} (the cell starts with "
                                f"{first['line']!r})", first["index"])
            if not busy and all(cell["count"] is not None for cell in code):
                break
            if self.remaining_s() == 0:
                running = [cell["index"] for cell in code if cell["running"]]
                waiting = [cell["index"] for cell in code if cell["count"] is None]
                stuck = (running or waiting or [None])[0]
                raise self.fail(f"not finished within {self.timeout_s:.0f} s (kernel "
                                f"{state['kernel']}; {len(waiting)} of {len(code)} code cells not "
                                "run yet)", stuck)
            time.sleep(POLL_S)
        return state

    def check_figures(self, state: dict) -> None:
        """Every image the kernel sent is drawn in the page."""
        __tracebackhide__ = True
        for cell in state["cells"]:
            if cell["images"]:
                shown = self.call("shownImages", self.path, cell["index"])
                if shown < cell["images"]:
                    raise self.fail(f"the kernel sent {cell['images']} image(s), the page draws "
                                    f"{shown}", cell["index"])

    # -- widgets -------------------------------------------------------------------------------
    def wait_for_figure(self, cell: int, before: dict | None, what: str) -> dict:
        """The cell's figure once the kernel is idle and it is stable (and differs from before)."""
        __tracebackhide__ = True
        limit = time.monotonic() + WIDGET_TIMEOUT_S
        previous = None
        while True:
            figure = self.call("figure", self.path, cell)
            if figure["traceback"]:
                raise self.fail(f"{what} raised an error inside the widget:\n"
                                f"{figure['tracebackText']}", cell)
            kernel = self.call("openState", self.path)["kernel"]
            changed = before is None or (figure["images"] and (
                figure["images"] != before["images"] or figure["text"] != before["text"]))
            if kernel == "idle" and changed and figure == previous:
                if figure["repeated"]:
                    raise self.fail(f"{what}: the widget shows the same figure twice (left "
                                    "open for the inline backend and returned or displayed as "
                                    "well: close it, plt.close(fig), before returning it)", cell)
                return figure
            if kernel in DIED:
                raise self.fail(f"the kernel died after {what}", cell)
            if time.monotonic() > limit:
                reason = "the figure did not change" if before is not None else "never settled"
                raise self.fail(f"{what}: {reason} within {WIDGET_TIMEOUT_S} s (images before: "
                                f"{before and before['images']}, after: {figure['images']})", cell)
            previous = figure
            time.sleep(POLL_S)

    def move(self, control: dict) -> None:
        element = self.page.locator(control["selector"])
        element.scroll_into_view_if_needed()
        if control["kind"] == "slider":
            element.focus()
            element.press("PageUp" if control["value"] < control["max"] else "PageDown")
        elif control["kind"] == "select":
            element.select_option(index=(control["value"] + 1) % control["options"])
        else:
            element.click()

    def moved(self, selector: str, value: str, timeout_s: float = 15.0) -> bool:
        limit = time.monotonic() + timeout_s
        while self.call("controlValue", selector) == value:
            if time.monotonic() > limit:
                return False
            time.sleep(0.1)
        return True

    def check_widgets(self, state: dict) -> None:
        __tracebackhide__ = True
        started = time.monotonic()
        outputs = [(cell["index"], output) for cell in state["cells"] for output in cell["widgets"]]
        if not outputs:
            raise self.fail("no widget: every lesson has at least one (ipywidgets interact or a "
                            "control wired to a figure), and this one shows none")
        for index, output in outputs:
            self.show_cell(index)
            widget = self.wait_for_render(index, output)
            what = f"the widget in output {output + 1}"
            if not widget["controls"]:
                raise self.fail(f"{what} has no control this test can move (it knows sliders, "
                                "dropdowns, toggle buttons, check boxes and radio buttons; "
                                f"found only {widget['other'] or 'nothing'})", index)
            report = WidgetReport(cell=index + 1)
            for control in widget["controls"]:
                name = f"{control['description']!r} ({control['kind']})"
                before = self.wait_for_figure(index, None, f"{what} before moving {name}")
                value = self.call("controlValue", control["selector"])
                moved_at = time.monotonic()
                self.move(control)
                if widget["run"]:
                    self.page.locator(widget["run"]).click()
                if not self.moved(control["selector"], value):
                    raise self.fail(f"{name} did not move when the test acted on it", index)
                self.wait_for_figure(index, before, f"moving {name}")
                report.controls.append(f"{name}: {time.monotonic() - moved_at:.1f} s")
                report.kinds.append(control["kind"])
            self.report.widgets.append(report)
        self.report.widgets_s = time.monotonic() - started

    def wait_for_render(self, index: int, output: int) -> dict:
        __tracebackhide__ = True
        limit = time.monotonic() + WIDGET_TIMEOUT_S
        while True:
            widget = self.call("describeWidget", self.path, index, output)
            if widget["rendered"] and widget["controls"]:
                return widget
            if time.monotonic() > limit:
                if widget["rendered"]:
                    return widget  # rendered without a known control: check_widgets says so
                raise self.fail(f"the widget in output {output + 1} never rendered within "
                                f"{WIDGET_TIMEOUT_S} s; the page shows {widget['text']!r}", index)
            time.sleep(POLL_S)

    # -- finish --------------------------------------------------------------------------------
    def check_offline(self) -> None:
        """The page asked for nothing outside this machine (a classroom may be offline)."""
        __tracebackhide__ = True
        if self.external:
            addresses = sorted(set(self.external))
            cell = self.call("cellReferencing", self.path, addresses[0])
            raise self.fail(f"the page asked for {len(addresses)} address(es) outside this "
                            f"machine, {addresses}: a lesson must work offline",
                            cell if cell >= 0 else None)

    def unexpected_console_errors(self) -> list[str]:
        unexpected, ignored = [], []
        for text in self.console:
            reasons = [reason for pattern, reason in IGNORED_CONSOLE_ERRORS if pattern.search(text)]
            if reasons:
                ignored.append(f"{text[:120]} ({reasons[0]})")
            else:
                unexpected.append(text)
        self.report.ignored_console_errors = ignored
        return unexpected

    def check_console(self) -> None:
        __tracebackhide__ = True
        unexpected = self.unexpected_console_errors()
        if unexpected:
            raise self.fail(f"the browser console reported {len(unexpected)} error(s)")

    def take_screenshots(self) -> None:
        """The whole notebook (a viewport as tall as it, up to a bound), then each widget's cell
        as the test left it."""
        self.show_cell(0)  # back to the top
        height = self.call("notebookHeight", self.path)
        self.page.set_viewport_size({"width": VIEWPORT["width"],
                                     "height": min(height + 100, SCREENSHOT_MAX_HEIGHT_PX)})
        self.page.wait_for_timeout(1000)  # let the layout follow the new size
        path = self.screenshot_dir / f"{self.name}.png"
        self.report.screenshots.append(_save_png(self.page, path))
        for widget in self.report.widgets:
            selector = self.show_cell(widget.cell - 1)
            path = self.screenshot_dir / f"{self.name}-widget-cell{widget.cell}.png"
            self.report.screenshots.append(_save_png(self.page.locator(selector), path))
        self.page.set_viewport_size(VIEWPORT)


def run_lesson(browser, server, path: str, screenshot_dir: Path, timeout_s: float) -> LessonReport:
    """Open ``path`` (relative to the server's root) and check it as the module docstring says.

    Args:
        browser: a Playwright ``Browser``; the lesson gets a fresh context (cookies, storage).
        server: the running :class:`~tests.browser.server.LabServer`.
        path: the notebook, relative to the server's root, e.g. ``notebooks/01_x.ipynb``.
        screenshot_dir: where ``<name>.png`` (whole notebook), ``<name>-widget-cellN.png`` and,
            on failure, ``<name>-FAILED.png`` are written.
        timeout_s: the bound on opening and running the notebook (each widget update has its
            own, ``WIDGET_TIMEOUT_S``).

    Raises:
        LessonError: the lesson failed; the message names the notebook, cell and screenshot.
    """
    __tracebackhide__ = True  # a failure shows its message, not this module's source
    (screenshot_dir / f"{Path(path).stem}-FAILED.png").unlink(missing_ok=True)  # an older run's
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(OPEN_TIMEOUT_S * 1000)
        lesson = _Lesson(page, server, path, screenshot_dir, timeout_s)
        try:
            lesson.open()
            state = lesson.run_all()
            lesson.check_figures(state)
            lesson.check_offline()
            lesson.check_widgets(state)
            lesson.check_offline()
            lesson.check_console()
            lesson.take_screenshots()
        except LessonError:
            raise
        except Exception as error:  # Playwright timeouts, a crashed page: same report
            raise lesson.fail(f"{type(error).__name__}: {error}") from error
        return lesson.report
    finally:
        context.close()
