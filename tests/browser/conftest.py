"""Fixtures of the browser tests: Chromium, one JupyterLab server per session, screenshots.

The browser is Debian's ``chromium`` (``apt-get install chromium``; ``scripts/test.sh`` installs
it where it runs as root), or the executable named by ``$SRLIB_CHROMIUM``; Playwright drives it
through ``executable_path`` and never downloads a browser of its own. Without Chromium (or
without the ``playwright`` package) the browser tests skip with one line saying why, unless
``SRLIB_REQUIRE_BROWSER=1`` (set by CI), which turns that skip into a failure.

Settings read from the environment:

- ``SRLIB_SCREENSHOT_DIR``: where screenshots go (default: a new temporary folder, printed at
  the end of the session); it must lie outside the repository.
- ``SRLIB_BROWSER_TIMEOUT_S``: the bound on opening and running one notebook (default 360).
- ``SRLIB_QUICK``: passed to the kernels, ``1`` unless set (the lessons' quick mode).
"""

import os
import tempfile
from pathlib import Path

import pytest

from .chromium import chromium_or_skip, launched
from .server import REPOSITORY, LabServer, prepare_workspace

SCREENSHOT_VARIABLE = "SRLIB_SCREENSHOT_DIR"
_SESSION = {"screenshot_dir": None, "reports": []}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: runs the lessons in JupyterLab in headless Chromium (tests/browser)")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return chromium_or_skip("browser tests")


@pytest.fixture(scope="module")
def browser(chromium_path):
    # per module: Playwright's sync API cannot start while another instance runs in the same
    # thread, and the docs check (tests/test_docs.py) launches its own
    with launched(chromium_path) as chromium:
        yield chromium


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    folder = os.environ.get(SCREENSHOT_VARIABLE)
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="srlib-browser-screenshots-"))
    folder = folder.resolve()
    if folder.is_relative_to(REPOSITORY):
        pytest.fail(f"${SCREENSHOT_VARIABLE} must lie outside the repository {REPOSITORY}, "
                    f"got {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    _SESSION["screenshot_dir"] = folder
    return folder


@pytest.fixture(scope="session")
def lab_figures_dir(tmp_path_factory) -> Path:
    """Where the lessons run by the server save their figures (never the repository)."""
    return tmp_path_factory.mktemp("lab-figures")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, lab_figures_dir):
    """A JupyterLab server on a temporary copy of the lessons, stopped (kernels and all) at the
    end of the session, whatever happened."""
    base = tmp_path_factory.mktemp("lab")
    workspace = prepare_workspace(base / "workspace")
    environment = {
        "SRLIB_FIGURES_DIR": str(lab_figures_dir),
        # the checkout's data/ (or Debian's Fashion-MNIST), as a lesson run in the checkout sees
        "SRLIB_DATA_DIR": os.environ.get("SRLIB_DATA_DIR") or str(REPOSITORY / "data"),
        "SRLIB_QUICK": os.environ.get("SRLIB_QUICK", "1"),
    }
    with LabServer(workspace, base / "server", environment) as server:
        yield server


@pytest.fixture(scope="session")
def browser_reports() -> list:
    """The :class:`LessonReport` of every lesson run, printed at the end of the session."""
    return _SESSION["reports"]


def pytest_terminal_summary(terminalreporter):
    reports, folder = _SESSION["reports"], _SESSION["screenshot_dir"]
    if folder is None:
        return
    write = terminalreporter.write_line
    terminalreporter.section("browser tests")
    write(f"screenshots: {folder}")
    for report in reports:
        controls = sum(len(widget.controls) for widget in report.widgets)
        write(f"{report.notebook}: open {report.open_s:.0f} s, restart and run all "
              f"{report.run_s:.0f} s ({report.cells} cells), {len(report.widgets)} widget(s), "
              f"{controls} control(s) moved in {report.widgets_s:.0f} s")
        if report.slowest_cells:
            write(f"    slowest cells: {', '.join(report.slowest_cells)}")
        if report.failure:
            write(f"    FAILED at {report.failure}")
        for ignored in report.ignored_console_errors:
            write(f"    ignored console error: {ignored}")
