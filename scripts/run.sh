#!/usr/bin/env bash
# The main job: train the default recipe (configs/default.yaml, Fashion-MNIST) into runs/.
# Extra arguments go to `python -m srlib.train` (e.g. --epochs 3, --device cuda).
# Without a GPU it runs as 2 local data-parallel processes (`--local-processes auto`: each gets
# half the batch and half the cores; the global batch stays the recipe's); give
# `--local-processes 1` for a single process.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/setup.sh
bash scripts/get_fashion_mnist.sh
python -m srlib.train --local-processes auto "$@"
