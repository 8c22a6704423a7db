"""What the classifier's baseline options cost: training images/s of the benchmark CNN under each augmentation
policy, random erasing, MixUp/CutMix and imbalance loss, as ratios to the default recipe measured in one run.

    python benchmarks/bench_baselines.py [--steps 150] [--base-steps 10] [--repeats 3] [--json bench_baselines.json]

Each repeat times every option back to back on the same random 28-px images (marginal rate: a long run minus a
short one, so set-up cancels); the table gives the median rate and its ratio to the default (`shift`, `ce`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from synthaug.classify import ClassifierRecipe, train_classifier

OPTIONS = {"default (shift, ce)": {}, "no augmentation": {"augment": "none"}, "trivial": {"augment": "trivial"},
           "randaugment": {"augment": "randaugment"}, "erasing 0.25": {"erasing": 0.25}, "mixup": {"mix": "mixup"},
           "cutmix": {"mix": "cutmix"}, "logit-adjusted": {"loss": "logit-adjusted"},
           "balanced sampling": {"loss": "balanced-sampling"}, "cmo": {"loss": "cmo"}}


def rate(change: dict, steps: int, base: int, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Training images/s: `steps` more steps than a `base`-step run, over the time they add."""
    times = []
    for n in (base, base + steps):
        t0 = time.perf_counter()
        train_classifier(images, labels, 10, ClassifierRecipe(steps=n, **change), progress=False)
        times.append(time.perf_counter() - t0)
    return steps * 128 / (times[1] - times[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--base-steps", type=int, default=10, help="the short run whose time is subtracted")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="bench_baselines.json")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4096, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (4096,), generator=g)
    rates = {name: [] for name in OPTIONS}
    # the first training in a process pays one-off set-up (lazy imports, allocator growth): keep it out of every rate
    train_classifier(images, labels, 10, ClassifierRecipe(steps=args.base_steps), progress=False)
    for _ in range(args.repeats):
        for name, change in OPTIONS.items():
            rates[name].append(rate(change, args.steps, args.base_steps, images, labels))
    base = statistics.median(rates["default (shift, ce)"])
    print(f"| option | images/s (median of {args.repeats}) | ÷ default |\n|---|---:|---:|")
    for name, r in rates.items():
        print(f"| {name} | {statistics.median(r):,.0f} | {statistics.median(r) / base:.2f} |")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"steps": args.steps, "base_steps": args.base_steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
                   "images_per_s": rates}, f, indent=1)


if __name__ == "__main__":
    main()
