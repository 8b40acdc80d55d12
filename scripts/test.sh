#!/usr/bin/env bash
# The whole test suite (unit, integration, DDP, notebooks through nbval) on a fresh machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/setup.sh
bash scripts/get_fashion_mnist.sh
# Debian's Chromium for the browser tests (tests/browser, tests/test_docs.py), where apt-get
# runs as root; elsewhere those tests skip with one line saying why
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[browser] installing Debian's chromium (about 100 MB)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "[browser] apt-get could not install chromium; browser tests skip"
fi
# unit, integration, docs and browser tests, then every notebook executed top to bottom by nbval
python -m pytest tests notebooks --nbval-lax --nbval-cell-timeout 900 "$@"
