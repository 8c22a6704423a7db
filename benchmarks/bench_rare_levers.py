"""Generator levers for rare classes on the Fashion-MNIST rare protocol: each fit setting alone or combined, its
top-up (raw, and as shaped on validation) on top of the best baseline, tested over seeds.

    python benchmarks/bench_rare_levers.py --levers "lecam=0.01" "minutes=20" "lecam=0.01,minutes=20" \
        [--steps 1000 --seeds 3 --json docs/results-rare-levers.json]

Each lever is a set of `FitSettings` fields over the imbalance protocol's own fit (10 minutes, DiffAugment
translation+cutout, class-balanced sampling). The training folder is the protocol's (Coat, Shirt and Pullover
cut to 1% of data/fashion/train); the generator is fitted on it alone and exported to top every class up to the
largest. The rows that do not depend on the generator (real, best baseline, ceiling) are those of
`synthaug benchmark --imbalance` (docs/results-rare-fashion.json) and are not trained again. Every finished lever
lands in the JSON at once, so a stopped measurement resumes with the next one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import synthaug
from synthaug.benchmarking import rare_cut_indices
from synthaug.config import ExportConfig, FitSettings
from synthaug.data.folder import scan_folder
from synthaug.protocols import ImbalanceOptions, fit_and_export, rare_class_comparison, subset_folder
from synthaug.sources import ExportSource

RARE = ("Coat", "Shirt", "Pullover")
FIT_FIELDS = {f.name: f.type for f in dataclasses.fields(FitSettings)}


def lever_settings(spec: str) -> FitSettings:
    """The protocol's fit with the lever's fields, e.g. 'lecam=0.01,minutes=20'; '' is the protocol's own."""
    base = next(f for f in dataclasses.fields(ImbalanceOptions) if f.name == "fit").default
    changes: dict[str, Any] = {}
    for part in filter(None, spec.split(",")):
        name, _, value = part.partition("=")
        if name not in FIT_FIELDS:
            raise SystemExit(f"unknown fit setting {name!r} (of {', '.join(FIT_FIELDS)})")
        changes[name] = float(value) if name in ("lecam", "minutes", "mode_seeking") else value
    return dataclasses.replace(base, **changes)


def measure_lever(spec: str, folder: Path, test: Path, rare_ids: list[int], args) -> dict[str, Any]:
    """Fit and export with the lever, then the top-up rows over seeds: accuracy and rare recall per seed."""
    work = args.work / (spec.replace("=", "-").replace(",", "_") or "default")
    t = time.perf_counter()
    syn = fit_and_export(folder, work / "gan", lever_settings(spec), ExportConfig(balance_to=str(folder)), False)
    fit_seconds = time.perf_counter() - t
    recipe = synthaug.ClassifierRecipe(steps=args.steps)
    report = rare_class_comparison(folder, test, ExportSource(syn), rare_ids, recipe, args.seeds, "cpu", False,
                                   rows=("top-up", "tuned top-up"), work=work)
    out: dict[str, Any] = {"fit": dataclasses.asdict(lever_settings(spec)), "fit_seconds": fit_seconds,
                           "baseline": report["baseline"], "top_up_choice": report["top_up_choice"]["described"]}
    for kind, name in report["rows"].items():
        runs = report["results"][name]["runs"]
        out[kind] = {"accuracy": [r["accuracy"] for r in runs],
                     "rare_recall": [float(np.mean([r["per_class_recall"][c] for c in rare_ids])) for r in runs]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levers", nargs="+", required=True, help="FitSettings fields per lever, e.g. lecam=0.01")
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--work", type=Path, default=Path("runs/rare-levers"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("docs/results-rare-levers.json"))
    args = ap.parse_args()
    real_dir = args.data / "fashion/train"
    index = scan_folder(real_dir)
    rare_ids = [index.class_names.index(c) for c in RARE]
    folder = subset_folder(real_dir, args.work / "real-imbalanced",
                           rare_cut_indices(np.asarray(index.labels), rare_ids, 0.01))
    done = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for spec in args.levers:
        key = f"{spec}|{args.steps}|{args.seeds}"
        if key not in done:
            done[key] = measure_lever(spec, folder, args.data / "fashion/test", rare_ids, args)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(done, indent=1))
            os.replace(tmp, args.json)
        r = done[key]
        print(f"{spec or 'protocol fit'}: " + "; ".join(
            f"{kind} {100 * np.mean(v['accuracy']):.2f}% / rare {100 * np.mean(v['rare_recall']):.1f}"
            for kind, v in r.items() if isinstance(v, dict) and "accuracy" in v), flush=True)


if __name__ == "__main__":
    main()
