#!/usr/bin/env bash
# The main job. Extra arguments are passed on.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/setup.sh
bash scripts/get_fashion_mnist.sh
python -m srlib.zoo "$@"
