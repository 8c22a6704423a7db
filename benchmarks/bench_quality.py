"""Quality of a trained generator the way users measure it: train on synthetic, test on real.

    python benchmarks/bench_quality.py --run runs/fashion --real data/fashion/train --test data/fashion/test

Exports `--per-class` images, runs the real/synthetic/mixed benchmark and the feature metrics, prints one table
and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import synthaug
from synthaug import ExportConfig
from synthaug.report import format_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True, help="run folder or generator .pt")
    parser.add_argument("--real", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--per-class", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--json", default="bench_quality.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        syn = synthaug.export(args.run, Path(tmp) / "s.h5", ExportConfig(per_class=args.per_class), progress=False)
        report = synthaug.benchmark(args.real, args.test, syn, recipe=synthaug.ClassifierRecipe(steps=args.steps),
                                    progress=False, baseline=None)  # the generator's quality, not a recipe
        metrics = synthaug.evaluate(syn, args.real, progress=False)
    print(format_table(report))
    print()
    print("| metric | value |")
    print("|---|---:|")
    for key in ("label_agreement", "frechet_distance", "frechet_distance_per_class_mean", "precision", "recall",
                "density", "coverage"):
        print(f"| {key} | {metrics[key]:.4f} |")
    with open(args.json, "w") as f:
        json.dump({"benchmark": report, "metrics": metrics, "run": str(args.run)}, f, indent=1)


if __name__ == "__main__":
    main()
