#!/usr/bin/env bash
# Every architecture at 32 px RGB on the oxygen icons, 3 minutes of one CPU core each, then scored in one run.
set -euo pipefail
export OMP_NUM_THREADS=1
for a in dcgan sngan sngan-cnn conv mlp mlp-maxout; do
  [ -f runs/rgb-$a/generator.pt ] || synthaug fit data/icons/train --arch $a --resolution 32 --minutes 3 \
      --augment translation,cutout --class-balance --out runs/rgb-$a --quiet
done
python benchmarks/bench_archs.py --real data/icons/train --test data/icons/test --per-class 500 --steps 500 \
  --json ${JSON:-rgb_archs.json} $(for a in dcgan sngan sngan-cnn conv mlp mlp-maxout; do echo --run $a=runs/rgb-$a; done)
