#!/usr/bin/env bash
# The whole test suite (unit, integration, DDP, notebooks through nbval) on a fresh machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/setup.sh
bash scripts/get_fashion_mnist.sh
# unit and integration tests, then every notebook executed top to bottom by nbval
python -m pytest tests notebooks --nbval-lax "$@"
