"""The lessons work where students use them: in JupyterLab, in a browser, with the widgets moving.

nbval executes the notebooks' code; these tests open each ``notebooks/NN_*.ipynb`` in JupyterLab
in headless Chromium, run it from a fresh kernel through the menus, and check what the page
shows: no error output, every figure drawn, nothing fetched from outside the machine, every
widget rendered, each of its controls changes its figure (shown once), no uncaught error in the
browser console (see ``lesson_page.py``). Notebooks written here check that every kind of
control is moved, and that each failure names the notebook, the cell and the screenshot;
servers started here check that no ``jupyter`` process outlives the tests.

Run them alone with ``python -m pytest tests/browser -q`` (see ``conftest.py`` for settings).
"""

import os
import re
import signal
import time
from pathlib import Path

import nbformat
import pytest

from . import lesson_page
from .chromium import browser_required, find_chromium
from .lesson_page import LessonError, run_lesson
from .server import LabServer, lesson_notebooks, marked_processes

pytestmark = pytest.mark.browser
if find_chromium()[0] is None and not browser_required():
    # one line for the whole module; with SRLIB_REQUIRE_BROWSER=1 each test fails instead
    pytest.skip(f"browser tests skipped: {find_chromium()[1]}", allow_module_level=True)

NOTEBOOKS = lesson_notebooks()
TIMEOUT_S = float(os.environ.get("SRLIB_BROWSER_TIMEOUT_S", "360"))
BROKEN_TIMEOUT_S = 120  # a two-cell notebook
SCREENSHOT = re.compile(r"screenshot: (\S+\.png)")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_lesson_runs_in_jupyterlab(notebook, browser, lab_server, lab_figures_dir, screenshot_dir,
                                   browser_reports):
    try:
        report = run_lesson(browser, lab_server, f"notebooks/{notebook.name}", screenshot_dir,
                            TIMEOUT_S)
    except LessonError as error:
        browser_reports.append(error.report)  # its timings still go into the summary
        raise
    finally:
        lab_server.shutdown_kernels()
    browser_reports.append(report)
    assert report.widgets and all(widget.controls for widget in report.widgets)
    assert all(path.is_file() for path in report.screenshots), report.screenshots
    # the lesson's figures went to the server's SRLIB_FIGURES_DIR, not to the repository
    assert sorted(lab_figures_dir.glob(f"{notebook.name[:2]}_*")), (
        f"{notebook.name} saved no figure into {lab_figures_dir}")


# -- the checks themselves, on notebooks written here ------------------------------------------
CLOSE_LINE = "    plt.close(fig)  # shown once, as the returned value\n"
EVERY_CONTROL = '''
import matplotlib.pyplot as plt
from ipywidgets import (Checkbox, Dropdown, IntSlider, RadioButtons, ToggleButton, ToggleButtons,
                        interact)

def draw(shape="line", flip=False, color="C0", width=2, bold=False, steps=3):
    fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
    values = [(-1 if flip else 1) * x ** (2 if shape == "square" else 1) for x in range(steps)]
    ax.plot(values, color=color, linewidth=width)
    ax.set_title(shape, fontweight="bold" if bold else "normal")
    plt.close(fig)  # shown once, as the returned value
    return fig

interact(draw, shape=Dropdown(options=["line", "square"], description="shape"),
         flip=Checkbox(value=False, description="flip"),
         color=ToggleButtons(options=["C0", "C1"], description="colour"),
         width=RadioButtons(options=[2, 6], description="width"),
         bold=ToggleButton(value=False, description="bold"),
         steps=IntSlider(value=3, min=2, max=10, description="steps"));
'''


def test_every_kind_of_control_moves_its_figure(browser, lab_server, tmp_path):
    write_notebook(lab_server.root / "scratch" / "every_control.ipynb", [EVERY_CONTROL])
    try:
        report = run_lesson(browser, lab_server, "scratch/every_control.ipynb", tmp_path,
                            BROKEN_TIMEOUT_S)
    finally:
        lab_server.shutdown_kernels()
    [widget] = report.widgets
    assert widget.cell == 2 and sorted(widget.kinds) == sorted(
        ["select", "checkbox", "toggle-buttons", "radio", "toggle-button", "slider"]), widget


# -- failures name the notebook, the cell and the screenshot ----------------------------------
def write_notebook(path: Path, sources: list[str]) -> str:
    """A notebook of a title cell and one code cell per source; its path relative to the root."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path.name


def failure(browser, server, sources_or_text, name: str, screenshots: Path) -> str:
    """The LessonError message of a scratch notebook that must fail; checks its screenshot."""
    path = server.root / "scratch" / name
    if isinstance(sources_or_text, str):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sources_or_text)
    else:
        write_notebook(path, sources_or_text)
    try:
        with pytest.raises(LessonError) as caught:
            run_lesson(browser, server, f"scratch/{name}", screenshots, BROKEN_TIMEOUT_S)
    finally:
        server.shutdown_kernels()
    message = str(caught.value)
    assert message.startswith(f"{name}, "), message
    shown = SCREENSHOT.search(message)
    assert shown and Path(shown.group(1)).is_file(), message
    return message


def test_an_error_output_names_its_cell(browser, lab_server, tmp_path):
    message = failure(browser, lab_server, ["x = 1", "raise ValueError('deliberate failure')",
                                            "y = 2"], "error_cell.ipynb", tmp_path)
    # cell 3: the title is cell 1, "x = 1" cell 2
    assert "cell 3: ValueError: deliberate failure" in message, message


def test_a_dying_kernel_names_its_cell(browser, lab_server, tmp_path):
    # the kill waits a moment: killed at once, the kernel may take the previous cell's reply
    # down with it (ZMQ sends in the background), as no real death mid-computation does
    message = failure(browser, lab_server, ["import os, signal, time",
                                            "time.sleep(1); os.kill(os.getpid(), signal.SIGKILL)",
                                            "print('never')"], "dying_kernel.ipynb", tmp_path)
    assert "cell 3: the kernel died" in message, message


def test_a_lesson_without_a_widget_fails(browser, lab_server, tmp_path):
    message = failure(browser, lab_server, ["print(6 * 7)"], "no_widget.ipynb", tmp_path)
    assert "the notebook: no widget" in message, message


def test_a_widget_that_never_renders_fails(browser, lab_server, tmp_path, monkeypatch):
    # a widget view whose model the kernel never created: the front end cannot draw it
    monkeypatch.setattr(lesson_page, "WIDGET_TIMEOUT_S", 5)
    view = {"model_id": "0" * 32, "version_major": 2, "version_minor": 0}
    message = failure(browser, lab_server, [
        "from IPython.display import display",
        "display({'application/vnd.jupyter.widget-view+json': %r, 'text/plain': 'a widget'},"
        " raw=True)" % view], "unrendered_widget.ipynb", tmp_path)
    assert "cell 3: the widget in output 1 never rendered" in message, message


def test_a_lesson_that_needs_the_internet_fails(browser, lab_server, tmp_path):
    message = failure(browser, lab_server, [
        "from IPython.display import HTML",
        "HTML('<img src=\"https://example.invalid/figure.png\">')"], "online_only.ipynb", tmp_path)
    assert "cell 3: the page asked for 1 address(es) outside this machine, " \
           "['https://example.invalid/figure.png']" in message, message


def test_a_widget_that_shows_its_figure_twice_fails(browser, lab_server, tmp_path):
    # the figure is left open: the inline backend shows it, and interact shows it as returned
    assert CLOSE_LINE in EVERY_CONTROL
    message = failure(browser, lab_server, [EVERY_CONTROL.replace(CLOSE_LINE, "")], "twice.ipynb",
                      tmp_path)
    assert "cell 2: the widget in output 1 before moving" in message, message
    assert "the widget shows the same figure twice" in message, message


def test_a_notebook_that_does_not_open_fails(browser, lab_server, tmp_path):
    message = failure(browser, lab_server, "{ this is not a notebook", "not_json.ipynb", tmp_path)
    assert "the notebook: did not open in JupyterLab" in message, message


# -- no process outlives the server ------------------------------------------------------------
def test_the_server_leaves_no_process_behind(tmp_path):
    (tmp_path / "workspace").mkdir()
    server = LabServer(tmp_path / "workspace", tmp_path / "server")
    with server:
        server.request("POST", "api/kernels", {"name": "python3"})
        deadline = time.monotonic() + 60
        while len(marked_processes(server.marker)) < 2:  # the server and its kernel
            assert time.monotonic() < deadline, "the kernel did not start"
            time.sleep(0.2)
        started = {process.pid for process in marked_processes(server.marker)}
    assert marked_processes(server.marker) == [], started


def test_an_orphaned_kernel_is_killed(tmp_path):
    # the server dies without stopping its kernel (its own process group): close() finds the
    # kernel by the marker in its environment
    (tmp_path / "workspace").mkdir()
    with LabServer(tmp_path / "workspace", tmp_path / "server") as server:
        kernel_id = server.request("POST", "api/kernels", {"name": "python3"})["id"]
        deadline = time.monotonic() + 60
        while not (kernels := [process for process in marked_processes(server.marker)
                               if kernel_id in " ".join(process.cmdline())]):
            assert time.monotonic() < deadline, "the kernel did not start"
            time.sleep(0.2)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        assert kernels[0].is_running(), "the kernel should outlive its killed server"
    assert marked_processes(server.marker) == []
