"""Where srlib reads data and writes figures: explicit settings first, never its own source.

The package does not know the repository it came from (it may be installed from a wheel). A
folder is taken, in order, from

1. an explicit argument, or the environment variable (``SRLIB_DATA_DIR``, ``SRLIB_FIGURES_DIR``);
2. the srlib project checkout that encloses the working directory (the nearest folder upwards
   whose ``pyproject.toml`` names the project ``srlib``), so that a notebook run from
   ``notebooks/`` writes to the checkout's top-level ``figures/``;
3. the working directory itself.
"""

import os
import re
from pathlib import Path

DATA_ENV = "SRLIB_DATA_DIR"
FIGURES_ENV = "SRLIB_FIGURES_DIR"
PROJECT_NAME = "srlib"
_PROJECT_LINE = re.compile(r'^name\s*=\s*"srlib"\s*$', re.MULTILINE)


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The srlib checkout enclosing ``start`` (default: the working directory), or ``None``.

    A checkout is recognised by a ``pyproject.toml`` that declares ``name = "srlib"``.
    """
    folder = Path(start if start is not None else Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            try:
                if _PROJECT_LINE.search(pyproject.read_text(errors="replace")):
                    return candidate
            except OSError:
                continue
    return None


def _resolve(explicit, environment_variable: str, name: str) -> Path:
    if explicit is not None:
        return Path(explicit)
    override = os.environ.get(environment_variable)
    if override:
        return Path(override)
    root = project_root()
    return (root if root is not None else Path.cwd()) / name


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The folder datasets live in: ``explicit``, ``$SRLIB_DATA_DIR``, ``<checkout>/data`` or
    ``./data`` (see the module docstring)."""
    return _resolve(explicit, DATA_ENV, "data")


def figures_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The folder figures are saved to: ``explicit``, ``$SRLIB_FIGURES_DIR``,
    ``<checkout>/figures`` or ``./figures`` (see the module docstring)."""
    return _resolve(explicit, FIGURES_ENV, "figures")


__all__ = ["DATA_ENV", "FIGURES_ENV", "data_dir", "figures_dir", "project_root"]
