#!/usr/bin/env bash
# The main job end to end on Fashion-MNIST, with progress: a short fit of the default recipe and its export; the
# shipped generator's images with soft labels on top of the best classifier baseline; the rare-class top-up against
# the best imbalance baseline and the real-image ceiling; a closing table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
start=$(date +%s)
out=reports/demo-$(date +%Y%m%d-%H%M%S)
steps=${DEMO_STEPS:-400}
echo "== 1/5 Fashion-MNIST as labelled PNG folders (data/fashion/train, data/fashion/test)"
[ -d data/fashion/train ] || synthaug datasets fashion-mnist data/fashion
echo "== 2/5 a ${DEMO_FIT_MINUTES:-2}-minute fit with the default recipe, exported to HDF5"
synthaug fit data/fashion --out "$out/run" --minutes "${DEMO_FIT_MINUTES:-2}"
synthaug export --run "$out/run" --per-class 1000 --out "$out/own.h5"
echo "== 3/5 the shipped generator (60 CPU minutes) with a real-data teacher's soft labels, on top of the best"
echo "       classifier baseline (chosen on a validation split of the training folder; test/ is never opened)"
synthaug export --pretrained fashion-mnist --real data/fashion/train --per-class 6000 --soft-labels \
  --teacher-steps 1500 \
  --out "$out/shipped.h5"
synthaug benchmark --synthetic "$out/shipped.h5" --real data/fashion/train --ratios 1 --labels soft \
  --steps "$steps" --no-logreg --out "$out/shipped"
echo "== 4/5 rare classes: Coat, Shirt and Pullover keep 1% of their images; the best imbalance baseline, a top-up"
echo "       from a generator fitted on that, and the ceiling: the same top-up made of held-out real images"
synthaug benchmark --real data/fashion/train --imbalance Coat,Shirt,Pullover --keep 0.01 --steps "$steps" \
  --fit-minutes "${DEMO_TOPUP_MINUTES:-2}" --out "$out/rare"
echo "== 5/5 summary"
python scripts/demo_summary.py "$out"
echo "demo took $(( $(date +%s) - start )) s (after set-up); reports in $out"
