#!/usr/bin/env bash
# Make Fashion-MNIST available: Debian's dataset-fashion-mnist package where apt can install it
# (files land in /usr/share/datasets/fashion-mnist/); otherwise srlib falls back to data/ and,
# where the network allows, torchvision's download.
set -uo pipefail
debian_dir=/usr/share/datasets/fashion-mnist
if [ -f "$debian_dir/train-images-idx3-ubyte.gz" ] || [ -f "$debian_dir/train-images-idx3-ubyte" ]; then
    exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[data] installing Debian's dataset-fashion-mnist (30 MB)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "[data] apt-get could not install dataset-fashion-mnist; srlib will try data/ or a download"
else
    echo "[data] not root or no apt-get: srlib will look in data/fashion-mnist or download it"
fi
exit 0
