"""Training throughput per architecture (images/s of one D step + one G step), with and without channels_last.

    python benchmarks/bench_training.py [--archs sngan,conv] [--batch-size 64] [--json out.json]

Ratios within one run are what to compare; bare images/s depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from synthaug.config import ModelConfig, TrainConfig
from synthaug.losses import get_loss
from synthaug.models import get_arch, list_archs
from synthaug.train import build_training, d_step, g_step


def images_per_s(arch: str, batch: int, channels_last: bool, steps: int = 15) -> float:
    """Measured images/s of the training step for one architecture at 28x28x1."""
    torch.manual_seed(0)
    defaults = get_arch(arch)
    model_cfg = ModelConfig(arch, 28, 1, 10, ema=defaults.ema)
    m = build_training(model_cfg, TrainConfig(**{k: v for k, v in defaults.train_defaults.items()}), torch.device("cpu"))
    loss = get_loss(defaults.train_defaults.get("loss", "bce"))
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        m.g.to(memory_format=torch.channels_last)
        m.d.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        d_step(m, loss, x, y, 0.9, False)
        g_step(m, loss, y, False)
    start = time.perf_counter()
    for _ in range(steps):
        d_step(m, loss, x, y, 0.9, False)
        g_step(m, loss, y, False)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", default=",".join(list_archs()))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", default="bench_training.json")
    args = parser.parse_args()
    rows = []
    print(f"| arch | images/s (NCHW) | images/s (channels_last) | speed-up |  (batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads)")
    print("|---|---:|---:|---:|")
    for arch in args.archs.split(","):
        plain = images_per_s(arch, args.batch_size, False)
        cl = images_per_s(arch, args.batch_size, True)
        rows.append({"arch": arch, "nchw": plain, "channels_last": cl, "speedup": cl / plain})
        print(f"| {arch} | {plain:.0f} | {cl:.0f} | {cl / plain:.2f}x |")
    with open(args.json, "w") as f:
        json.dump({"batch_size": args.batch_size, "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
