#!/usr/bin/env bash
# Make (or reuse) the virtual environment and install srlib with its pinned dependencies.
# Usage: source scripts/setup.sh   (activates the environment; SRLIB_VENV picks its folder)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SRLIB_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"

stamp="$venv/.srlib-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing srlib and its pinned dependencies (first run: a few minutes)"
    log="$venv/install.log"
    pip_install() {
        python -m pip install --quiet "$@" >>"$log" 2>&1 \
            || { tail -n 40 "$log"; echo "[setup] pip install $* failed; full log: $log"; exit 1; }
    }
    : >"$log"
    pip_install -e "$root[dev]"
    no_deps="$(python - "$root/pyproject.toml" <<'PY'
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["tool"]["srlib"]["no-deps"]))
PY
)"
    # shellcheck disable=SC2086
    pip_install --no-deps $no_deps
    python -m ipykernel install --sys-prefix --name python3 >/dev/null
    echo "$want" > "$stamp"
fi
# JupyterLab of this environment: widget messages on the kernel's main thread. By default
# (JupyterLab >= 4.4, ipykernel >= 7) they run on a subshell thread, concurrently with cells,
# and matplotlib is not thread-safe: a lesson's widget redrawing while a cell draws can break
# matplotlib's shared mathtext parser (ipympl issue 610).
python - "$venv/share/jupyter/lab/settings/overrides.json" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
settings = json.loads(path.read_text()) if path.is_file() else {}
plugin = settings.setdefault("@jupyterlab/apputils-extension:kernels-settings", {})
plugin["commsOverSubshells"] = "disabled"
text = json.dumps(settings, indent=2) + "\n"
if not path.is_file() or path.read_text() != text:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
PY
set +euo pipefail
