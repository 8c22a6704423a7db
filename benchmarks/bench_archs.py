"""Every architecture on one data set, scored the way users care about, in one run.

    python benchmarks/bench_archs.py --real data/fashion/train --test data/fashion/test \
        --run mlp-maxout=runs/mlp-maxout --run sngan=runs/sngan --run "sngan p>=0.9=runs/sngan@0.9" \
        --run "mlp-maxout |z|<=0.5=runs/mlp-maxout@t0.5"

For each run: export `--per-class` images (with `@P`: at export --min-confidence P; with `@tT`: --truncation T;
both: `@P,tT`), train the benchmark's
classifier on them alone (the same recipe and budget as the real-data row) and test on the real test folder;
label agreement and the classifier-feature Fréchet distance come from `synthaug.evaluate` against the real
training folder. The real-data row's metrics score the real test images the same way: what a perfect generator
would reach. Prints one Markdown table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import synthaug
from synthaug import ExportConfig, SamplingConfig
from synthaug.benchmarking import environment, load_real_and_test
from synthaug.conditions import Condition, export_source, run_conditions
from synthaug.metrics import feature_classifier, quality_metrics
from synthaug.train import resolve_device

METRICS = ("label_agreement", "frechet_distance", "frechet_distance_per_class_mean", "precision", "recall", "density",
           "coverage")


def export_options(opts: str) -> tuple[float | None, float | None]:
    """`"0.9,t0.5"` -> (min_confidence 0.9, truncation 0.5); either may be left out."""
    p = t = None
    for item in filter(None, opts.split(",")):
        if item.startswith("t"):
            t = float(item[1:])
        else:
            p = float(item)
    return p, t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN[@P][,tT]")
    parser.add_argument("--per-class", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--json", default="bench_archs.json")
    args = parser.parse_args()
    device = resolve_device("auto")
    recipe = synthaug.ClassifierRecipe(steps=args.steps)
    real, test, _ = load_real_and_test(args.real, args.test, None, progress=False)
    rows = {"real data": run_conditions([Condition()], real, test, recipe, 1, device)["real"]["runs"][0]}
    # The real test images scored like a generator: the values a perfect generator would reach.
    reference = quality_metrics(feature_classifier(real, progress=False), real, test.images, test.labels)
    rows["real data"].update({k: reference[k] for k in METRICS})
    for spec in args.run:
        name, _, source = spec.partition("=")
        path, _, opts = source.partition("@")
        p, t = export_options(opts)
        stats: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            config = ExportConfig(per_class=args.per_class, seed=0, real=str(args.real) if args.real else None,
                                  sampling=SamplingConfig(min_confidence=p, truncation=t))
            syn = synthaug.export(path, Path(tmp) / "s.h5", config, stats=stats, progress=False)
            alone = Condition(export_source(syn, real.class_names), with_real=False)
            row = run_conditions([alone], real, test, recipe, 1, device)[alone.name]["runs"][0]
            metrics = synthaug.evaluate(syn, args.real, progress=False)
        cfg = json.loads((Path(path) / "config.json").read_text()) if (Path(path) / "config.json").is_file() else {}
        rows[name] = {**row, **{k: metrics[k] for k in METRICS}, "acceptance": stats.get("acceptance"),
                      "min_confidence": p, "truncation": t, "run": path, "config": cfg}
        print(f"done {name}: {100 * row['accuracy']:.2f}%", flush=True)
    print("| training data | test accuracy | label agreement | feature FD (all / per class) | precision | recall | "
          "density | coverage |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        extra = (f"{100 * r['label_agreement']:.1f}% | {r['frechet_distance']:.2f} / "
                 f"{r['frechet_distance_per_class_mean']:.2f} | {r['precision']:.2f} | {r['recall']:.2f} | "
                 f"{r['density']:.2f} | {r['coverage']:.2f}" if "label_agreement" in r else "— | — | — | — | — | —")
        print(f"| {name} | {100 * r['accuracy']:.2f}% | {extra} |")
    with open(args.json, "w") as f:
        json.dump({"rows": rows, "per_class": args.per_class, "recipe": recipe.__dict__, **environment(device)}, f,
                  indent=1)


if __name__ == "__main__":
    main()
