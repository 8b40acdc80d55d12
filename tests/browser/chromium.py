"""The browser of the browser tests: Debian's ``chromium``, never a download of Playwright's.

``scripts/test.sh`` installs Debian's ``chromium`` package where it runs as root with
``apt-get``; elsewhere install it yourself or point ``$SRLIB_CHROMIUM`` at a Chromium executable.
Playwright launches it through ``executable_path``.
"""

import contextlib
import importlib.util
import os
import shutil

import pytest

REQUIRE_VARIABLE = "SRLIB_REQUIRE_BROWSER"  # "1": no Chromium is a failure, not a skip (CI)
CHROMIUM_VARIABLE = "SRLIB_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser")  # Debian's and Ubuntu's names
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    # containers often give /dev/shm 64 MB, too little for a long notebook's page; Debian's
    # launcher script adds this flag itself only when its /dev/shm check works
    "--disable-dev-shm-usage",
    # no connection of Chromium's own: on an offline machine each one is refused, many at a time
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # the page reaches the test server only: every other host name fails to resolve, on a laptop
    # as in CI with or without internet, and the tests report what the page asked for
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def find_chromium() -> tuple[str | None, str]:
    """``(path, "")`` of a usable Chromium, or ``(None, why not)``."""
    if importlib.util.find_spec("playwright") is None:
        return None, "the playwright package is not installed (pip install -e '.[dev]')"
    explicit = os.environ.get(CHROMIUM_VARIABLE)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit, ""
        return None, f"${CHROMIUM_VARIABLE}={explicit} is not an executable file"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found, ""
    return None, ("no Chromium found (apt-get install chromium, or set $SRLIB_CHROMIUM to a "
                  "Chromium executable)")


def browser_required() -> bool:
    """Whether a missing Chromium must fail the tests rather than skip them."""
    return os.environ.get(REQUIRE_VARIABLE) == "1"


def chromium_or_skip(what: str) -> str:
    """The Chromium path; otherwise skip ``what`` with one line saying why, or fail it when
    ``$SRLIB_REQUIRE_BROWSER=1`` (CI)."""
    path, reason = find_chromium()
    if path is None:
        if browser_required():
            pytest.fail(f"{what} cannot run: {reason}; ${REQUIRE_VARIABLE}=1 requires them")
        pytest.skip(f"{what} skipped: {reason}")
    return path


@contextlib.contextmanager
def launched(path: str):
    """Chromium at ``path`` under Playwright, with :data:`CHROMIUM_ARGS` and a fresh temporary
    profile (Playwright's own, removed on close)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
