#!/usr/bin/env bash
# The main job end to end on Fashion-MNIST: data set, a short fit, export, benchmark (about 15 min on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
start=$(date +%s)
[ -d data/fashion/train ] || synthaug datasets fashion-mnist data/fashion
run=runs/demo-$(date +%Y%m%d-%H%M%S)
synthaug fit data/fashion --out "$run" --minutes "${DEMO_MINUTES:-7}" --quiet
synthaug export --run "$run" --per-class 6000 --out demo-synth.h5 --overwrite --quiet
synthaug benchmark --synthetic demo-synth.h5 --ratios 1 --no-logreg --out reports/demo --quiet
echo "demo took $(( $(date +%s) - start )) s (after set-up)"
