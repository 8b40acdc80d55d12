#!/usr/bin/env bash
# Build the documentation site: the pages in docs/, the lessons in notebooks/ (rendered from
# their committed outputs, never executed) and the API reference from srlib's docstrings, into
# static HTML that reads offline. Warnings are errors: a broken cross-reference, a missing
# image or a notebook that does not render fails the build.
# Usage: bash scripts/build_docs.sh [BUILD_DIR]     (default: docs/_build)
#   the site: BUILD_DIR/html/index.html; BUILD_DIR/work holds the staged sources and caches
#   (an unchanged page is not rebuilt; delete BUILD_DIR for a clean build).
# Python: $SRLIB_DOCS_PYTHON if set, else the active virtual environment, else the one
# scripts/setup.sh makes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/docs/_build}"
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
case "$build/" in
    "$root/docs/_build/"*) ;;
    "$root/docs/"*) echo "[docs] build folder $build lies inside docs/, which is copied into" \
                         "the build: use docs/_build or a folder outside docs/" >&2; exit 1 ;;
esac
build="$(mkdir -p "$build" && cd "$build" && pwd)"
cd "$root"

python="${SRLIB_DOCS_PYTHON:-}"
if [ -z "$python" ]; then
    if [ -z "${VIRTUAL_ENV:-}" ]; then
        # shellcheck disable=SC1091
        source scripts/setup.sh
        set -euo pipefail  # setup.sh turns these off for interactive shells
    fi
    python=python
fi
if ! "$python" -c "import sphinx, myst_nb, sphinx_book_theme" 2>/dev/null; then
    echo "[docs] $python lacks Sphinx, myst-nb or sphinx-book-theme: pip install -e '.[dev]'" >&2
    exit 1
fi

# One source tree: docs/ as it is, the lessons under lessons/ and the figures the pages show.
# Copies keep their times, so Sphinx rebuilds only what changed since the last build here.
source_dir="$build/work/source"
rm -rf "$source_dir"
mkdir -p "$source_dir/lessons"
tar -C docs --exclude=./_build -cf - . | tar -C "$source_dir" -xpf -
cp -p notebooks/*.ipynb "$source_dir/lessons/"
cp -rp figures "$source_dir/figures"

echo "[docs] building $build/html"
start=$SECONDS
SRLIB_DOCS_REPOSITORY="$root" "$python" -m sphinx -b html -W --keep-going -n -q \
    -d "$build/work/doctrees" "$source_dir" "$build/html"
echo "[docs] done in $((SECONDS - start)) s: open $build/html/index.html"
