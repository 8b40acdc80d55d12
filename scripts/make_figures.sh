#!/usr/bin/env bash
# Regenerate every figure in figures/ by executing the notebooks top to bottom, in place
# (their committed outputs are refreshed too). Usage: bash scripts/make_figures.sh [NOTEBOOK...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/setup.sh
bash scripts/get_fashion_mnist.sh
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/[0-9][0-9]_*.ipynb)
for notebook in "${notebooks[@]}"; do
    echo "[figures] executing $notebook"
    start=$SECONDS
    jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 \
        "$notebook"
    echo "[figures] $notebook done in $((SECONDS - start)) s"
done
ls -la figures/
