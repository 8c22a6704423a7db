"""Levers on the benchmark classifier's training step: thread count and torch.compile, measured in one run.

    python benchmarks/bench_classifier_step.py [--steps 60] [--repeats 3] [--json bench_classifier_step.json]

Each repeat times `--steps` training steps of the benchmark CNN (batch 128, 28-px grayscale, AdamW, channels-last)
after 15 warm-up steps, for: eager at 2 threads, eager at 1 thread, torch.compile (inductor) at 2 threads. The
table gives the median images/s and its ratio to eager at 2 threads.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from synthaug.classify import build_classifier


def rate(compiled: bool, threads: int, steps: int) -> float:
    """Training images/s of the CNN under one setting."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_classifier("cnn", 1, 10, 28).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 2e-3)
    run = torch.compile(model) if compiled else model
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step() -> None:
        loss = F.cross_entropy(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(15):  # warm-up (and compilation)
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * 128 / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="bench_classifier_step.json")
    args = ap.parse_args()
    settings = {"eager, 2 threads": (False, 2), "eager, 1 thread": (False, 1), "torch.compile, 2 threads": (True, 2)}
    rates: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, (compiled, threads) in settings.items():
            rates[name].append(rate(compiled, threads, args.steps))
    base = statistics.median(rates["eager, 2 threads"])
    print("| setting | images/s (median) | ÷ eager, 2 threads |\n|---|---:|---:|")
    for name, rs in rates.items():
        print(f"| {name} | {statistics.median(rs):,.0f} | {statistics.median(rs) / base:.2f} |")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"steps": args.steps, "repeats": args.repeats, "images_per_s": rates}, f, indent=1)


if __name__ == "__main__":
    main()
