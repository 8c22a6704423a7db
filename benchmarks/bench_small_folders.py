"""A user's own small, uneven folder with the defaults and no flags: fit, tune, then benchmark what tune chose.

    python benchmarks/bench_small_folders.py --data data/icons --json reports/small-icons.json
    python benchmarks/bench_small_folders.py --data data/fashion --cut 3000 --json reports/small-fashion-3000.json

`--cut N` first makes an uneven N-image training folder from `--data`/train (class sizes spread linearly over
4x, in a seeded random class order, like the folders users bring; symlinks, nothing copied). Then, on the
training folder alone: `fit` with the default recipe, `tune` (validation split of the training folder), and on
the test folder, over `--seeds` classifier seeds: real only, synthetic only, real + synthetic with tune's
recipe (tune's ratio; when it says "no synthetic data", that row is real only and the 1:1 mix is shown
beside it), and the rare-class recall (classes under half the largest) of real only against every class
topped up to the largest with synthetic images. Prints one table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import synthaug
from synthaug import protocols
from synthaug.benchmarking import uneven_indices
from synthaug.data.folder import scan_folder
from synthaug.runs import GENERATOR_FILE


def uneven_cut(data: Path, total: int, out: Path, spread: float = 4.0) -> Path:
    """`out/train` with `total` images of `data/train` in class sizes spread linearly over `spread`x, and
    `out/test` linked to `data/test`."""
    index = scan_folder(data / "train")
    keep = uneven_indices(np.asarray(index.labels), total, spread)
    train = protocols.subset_folder(data / "train", out / "train", keep)
    if not (out / "test").exists():
        (out / "test").symlink_to((data / "test").resolve())
    return train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="a folder with train/ and test/")
    parser.add_argument("--cut", type=int, default=None, help="first cut train/ to this many images, unevenly")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500, help="steps of each benchmark classifier")
    parser.add_argument("--work", type=Path, default=Path("runs/small"))
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    name = args.data.name + (f"-{args.cut}" if args.cut else "")
    work = args.work / name
    train = uneven_cut(args.data, args.cut, work / "data") if args.cut else args.data / "train"
    recipe = synthaug.ClassifierRecipe(steps=args.steps)
    times = {}
    t = time.perf_counter()
    run = work / "run"
    if not (run / GENERATOR_FILE).is_file():
        synthaug.fit(train, run)  # the default recipe: no flags
    times["fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    tuned = synthaug.tune(run)
    times["tune_s"] = time.perf_counter() - t
    ratio = tuned["advice"]["synthetic"]["ratio"] if tuned["advice"]["synthetic"] else 0.0
    t = time.perf_counter()
    labels = "soft" if tuned["sampling"]["soft_labels"] else "hard"
    report = synthaug.benchmark(train, None, run, recipe=recipe, ratios=(ratio or 1.0,), seeds=args.seeds,
                                labels=labels, progress=False, baseline=None)
    times["benchmark_s"] = time.perf_counter() - t
    t = time.perf_counter()
    options = protocols.TopUpOptions(synthetic=str(run), real=str(train), seeds=args.seeds, recipe=recipe,
                                     work=str(work / "top-up"), baseline=None)
    rare = protocols.top_up(options, progress=False, rows=("top-up",))
    times["top_up_s"] = time.perf_counter() - t
    res = report["results"]
    tag = " (soft labels)" if labels == "soft" else ""
    real = res["real"]
    rare_ids = protocols.class_ids_of(rare["class_names"], rare["rare"], train)
    real_rare = protocols.rare_recall(real["runs"], rare_ids)
    top = rare["results"]["real + synthetic top-up"]
    mixed = res[f"mixed x{ratio or 1.0:g}{tag}"]
    chosen = real if ratio == 0 else mixed
    rows = [("real only", real["accuracy"], real["accuracy_std"]),
            (f"synthetic only{tag}", res[f"synthetic{tag}"]["accuracy"], res[f"synthetic{tag}"]["accuracy_std"]),
            (f"real + synthetic, tune's recipe ({'real only' if ratio == 0 else f'x{ratio:g}{tag}'})",
             chosen["accuracy"], chosen["accuracy_std"])]
    if ratio == 0:
        rows.append((f"real + synthetic x1{tag} (not chosen)", mixed["accuracy"], mixed["accuracy_std"]))
    print(f"## {name}: {sum(rare['class_counts'])} training images, classes {rare['class_counts']}, "
          f"{args.seeds} seeds, CNN {args.steps} steps")
    print(f"tune: {tuned['verdict']}")
    print("| training data | test accuracy | rare-class recall |")
    print("|---|---:|---:|")
    for label, acc, std in rows:
        print(f"| {label} | {100 * acc:.2f} ± {100 * std:.2f} | |")
    print(f"| real only, rare classes {rare['rare']} | | {100 * real_rare[0]:.1f} ± {100 * real_rare[1]:.1f} |")
    print(f"| real + synthetic top-up to {max(rare['class_counts'])} per class | {100 * top['accuracy']:.2f} ± "
          f"{100 * top['accuracy_std']:.2f} | {100 * top['rare_recall']:.1f} ± {100 * top['rare_recall_std']:.1f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"name": name, "train": str(train), "tune": tuned, "benchmark": report,
                                     "top_up": rare, "real_rare_recall": real_rare, "times": times,
                                     "config": json.loads((run / "config.json").read_text())}, indent=1))


if __name__ == "__main__":
    main()
