"""Settings for the whole test session (tests/ and the notebooks nbval executes).

Figures are written to a temporary folder, not to the repository's figures/: running the tests
changes nothing tracked. Notebook kernels started by nbval inherit this environment.
"""

import os
import shutil
import tempfile

_FIGURES = tempfile.mkdtemp(prefix="srlib-test-figures-")


def pytest_configure(config):
    os.environ["SRLIB_FIGURES_DIR"] = _FIGURES


def pytest_unconfigure(config):
    shutil.rmtree(_FIGURES, ignore_errors=True)
