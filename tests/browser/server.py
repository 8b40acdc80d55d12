"""A throw-away JupyterLab server for the browser tests, and the folder it serves.

The server runs the project's own ``jupyterlab`` (``python -m jupyterlab`` of the interpreter
running the tests) on 127.0.0.1, on a free port, behind a random token, with its root in a
temporary *workspace*: a copy of ``notebooks/`` and of ``pyproject.toml`` (so that
``srlib.paths.project_root()`` finds the workspace, not the checkout) next to links to the
read-only folders the lessons read (``configs/``, ``tests/data`` ...). JupyterLab can save only
inside its root, figures go to ``$SRLIB_FIGURES_DIR`` (a temporary folder) and the user settings
turn autosave off: nothing the browser does reaches the repository.

Every process the server starts (kernels, their workers) inherits the environment variable
``SRLIB_BROWSER_TEST_SERVER=<id>``; :meth:`LabServer.close` stops the server, then kills every
process still carrying that id, so that no ``jupyter`` process outlives the tests, even when a
kernel was orphaned or a test failed half-way.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
MARKER_VARIABLE = "SRLIB_BROWSER_TEST_SERVER"
# Entries of the checkout the lessons may read through srlib.paths.project_root(); linked, not
# copied. figures/ (SRLIB_FIGURES_DIR), data/ (SRLIB_DATA_DIR) and notebooks/ (copied) are not.
LINKED_ENTRIES = ("configs", "tests", "srlib", "benchmarks", "scripts", "README.md")
START_TIMEOUT_S = 180  # a cold JupyterLab on a loaded 2-core machine takes 5-30 s
STOP_GRACE_S = 20  # the server shuts its kernels down before it exits
REQUEST_TIMEOUT_S = 30
PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it
# JupyterLab user settings of the test server (one file per plugin, in its own settings folder)
USER_SETTINGS = {
    # never write a notebook back, not even the workspace's copy
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # no "official Jupyter news?" toast over the screenshots, no update check (offline machine)
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    # each cell's start and end times in its metadata: the report names the slowest cells
    "@jupyterlab/notebook-extension/tracker": {"recordTiming": True},
    # widget messages on the kernel's main thread, as scripts/setup.sh sets for students: on a
    # subshell thread (the default) a widget's redraw races the cells' matplotlib calls, which
    # once broke matplotlib's shared mathtext parser in lesson 04
    "@jupyterlab/apputils-extension/kernels-settings": {"commsOverSubshells": "disabled"},
}


class LabServerError(RuntimeError):
    """The JupyterLab server did not start or did not answer."""


def lesson_notebooks(repository: Path = REPOSITORY) -> list[Path]:
    """The lessons, ``notebooks/NN_*.ipynb``, in order."""
    return sorted((repository / "notebooks").glob(NOTEBOOK_PATTERN))


def prepare_workspace(root: Path, repository: Path = REPOSITORY) -> Path:
    """Fill ``root`` (empty or missing) with what the lessons need; return ``root``.

    Args:
        root: the folder to fill; it becomes the server's root and the lessons' project root.
        repository: the checkout to copy the lessons and ``pyproject.toml`` from.
    """
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"the workspace {root} must be empty, it holds "
                              f"{sorted(entry.name for entry in root.iterdir())}")
    shutil.copy2(repository / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(repository / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for name in LINKED_ENTRIES:
        if (repository / name).exists():
            (root / name).symlink_to(repository / name)
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_user_settings(folder: Path) -> None:
    for plugin, values in USER_SETTINGS.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def marked_processes(marker: str) -> list[psutil.Process]:
    """Living processes whose environment holds ``SRLIB_BROWSER_TEST_SERVER=marker``."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # gone, zombie, or another user's
            if process.environ().get(MARKER_VARIABLE) == marker and process.is_running() \
                    and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


class LabServer:
    """``jupyter lab`` serving ``root``; a context manager that leaves no process behind.

    Args:
        root: the folder served (see :func:`prepare_workspace`).
        state_dir: an empty folder for the server's own files (settings, runtime, config, log).
        environment: variables added to the server's environment (kernels inherit them).
    """

    def __init__(self, root: Path, state_dir: Path, environment: dict[str, str] | None = None):
        self.root = Path(root)
        self.state_dir = Path(state_dir)
        self.extra_environment = dict(environment or {})
        self.token = secrets.token_hex(24)
        self.marker = secrets.token_hex(8)
        self.log_path = self.state_dir / "jupyter-lab.log"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    # -- start -------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        environment.pop("MPLBACKEND", None)  # kernels must use the inline backend, as for students
        environment.update({
            "JUPYTER_CONFIG_DIR": str(self.state_dir / "config"),  # no user configuration
            "JUPYTER_RUNTIME_DIR": str(self.state_dir / "runtime"),
            "IPYTHONDIR": str(self.state_dir / "ipython"),  # no user startup files
            MARKER_VARIABLE: self.marker,
        })
        environment.update(self.extra_environment)
        return environment

    def _command(self) -> list[str]:
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}", "--ServerApp.terminals_enabled=False",
            f"--LabApp.user_settings_dir={self.state_dir / 'settings'}",
            f"--LabApp.workspaces_dir={self.state_dir / 'workspaces'}",
            # window.jupyterapp: the tests read the notebook model (execution counts, error
            # outputs, kernel status) from it; every action goes through menus, keys and clicks
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",  # the machine is offline: no news feed
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # no queries to PyPI
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root
        return command

    def start(self) -> "LabServer":
        """Start the server and wait until its REST API answers."""
        for folder in ("config", "runtime", "ipython", "settings", "workspaces"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        _write_user_settings(self.state_dir / "settings")
        for attempt in range(PORT_ATTEMPTS):
            self.port = _free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self._command(), cwd=self.root, env=self._environment(),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            if self._wait_until_ready():
                return self
            in_use = "already in use" in self.log_tail()
            self.close()
            if not in_use:
                break
        raise LabServerError(f"jupyter lab did not start within {START_TIMEOUT_S} s (port "
                             f"{self.port}); the end of its log {self.log_path}:\n"
                             f"{self.log_tail()}")

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError, LabServerError):
                self.request("GET", "api/status")
                return True
            time.sleep(0.5)
        return False

    # -- use ---------------------------------------------------------------------------------
    def url(self, path: str, **query: str) -> str:
        """The browser address of ``path`` (e.g. ``lab/tree/notebooks/x.ipynb``), token included."""
        pairs = [f"{key}={value}" if value else key for key, value in query.items()]
        return f"http://127.0.0.1:{self.port}/{path}?" + "&".join([*pairs, f"token={self.token}"])

    def request(self, method: str, path: str, body: dict | None = None):
        """Call the server's REST API; the decoded JSON answer, or ``None`` when empty."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
                text = answer.read()
        except urllib.error.HTTPError as error:
            raise LabServerError(
                f"{method} /{path} answered {error.code} {error.reason}") from error
        return json.loads(text) if text.strip() else None

    def shutdown_kernels(self) -> None:
        """Stop every running kernel (between two lessons)."""
        for kernel in self.request("GET", "api/kernels") or []:
            with contextlib.suppress(LabServerError):
                self.request("DELETE", f"api/kernels/{kernel['id']}")

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the server's log."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-characters:]
        return ""

    # -- stop --------------------------------------------------------------------------------
    def _known_processes(self) -> set[psutil.Process]:
        known = set(marked_processes(self.marker))
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(self.process.pid)
            known |= {server, *server.children(recursive=True)}
        return known

    def close(self) -> None:
        """Stop the server and its kernels, then kill whatever is left; idempotent."""
        if self.process is None:
            return
        known = self._known_processes()
        if self.process.poll() is None:
            with contextlib.suppress(OSError, LabServerError):
                self.request("POST", "api/shutdown")  # stops the kernels, then the server
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S)
        known |= self._known_processes()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the server's own process group
        for process in known:  # kernels live in process groups of their own
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(list(known), timeout=STOP_GRACE_S)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE_S)
        self.process = None

    def __enter__(self) -> "LabServer":
        return self.start()

    def __exit__(self, *exception) -> None:
        self.close()
