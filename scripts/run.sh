#!/usr/bin/env bash
# The main job: train the default recipe (configs/default.yaml, Fashion-MNIST) into runs/.
# Extra arguments go to `python -m srlib.train` (e.g. --epochs 3, --device cuda).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/setup.sh
bash scripts/get_fashion_mnist.sh
python -m srlib.train "$@"
