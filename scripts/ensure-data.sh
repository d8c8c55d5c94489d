#!/usr/bin/env bash
# Make sure Fashion-MNIST is on this machine (Debian's dataset-fashion-mnist package).
set -euo pipefail
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DIR/t10k-labels-idx1-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Fashion-MNIST (apt-get install dataset-fashion-mnist)..."
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  }
  exit 0
fi
echo "Fashion-MNIST is missing: run 'sudo apt-get install -y dataset-fashion-mnist'," \
     "or pass --data-dir DIR holding the four IDX files." >&2
exit 2
