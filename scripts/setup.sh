#!/usr/bin/env bash
# Idempotent set-up: Fashion-MNIST and the oxygen icons from Debian (when root), a venv with the torch pair, synthaug
# with its tests (a regular install, as users get it; re-run after changing the code).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && { [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
                           [ ! -d /usr/share/icons/oxygen/base ]; }; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist oxygen-icon-theme) >/dev/null ||
    echo "note: could not install dataset-fashion-mnist / oxygen-icon-theme"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
if ! python -c "import torch, torchvision" 2>/dev/null; then
  # the torch pair is a CUDA build of ~5.6 GB installed: fail early and say so, not half-way with ENOSPC
  free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt 8 ]; then
    echo "setup: $(pwd): only ${free_gb} GB free; the torch==2.14.1 + torchvision==0.29.1 install needs about 8 GB" >&2
    exit 1
  fi
fi
python -m pip install -q --no-cache-dir --upgrade pip
python -m pip install -q --no-cache-dir torch==2.14.1 torchvision==0.29.1
python -m pip install -q --no-cache-dir '.[test]'
