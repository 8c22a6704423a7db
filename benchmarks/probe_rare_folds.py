"""The rare protocol's imbalance choice on one validation split and on three pooled folds of the training folder:
the class-weighted loss against class-balanced sampling, at the benchmark's budget (never the test folder).

    python benchmarks/probe_rare_folds.py [--data data --steps 1000 --json docs/results-rare-folds-probe.json]

The search's first split holds 6 validation images of each rare class (Coat, Shirt, Pullover at 1%); the two other
folds are `synthaug.selection.search_folds`'s. Each finished trial lands in the JSON, so a stopped probe resumes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipes import protocol_data  # noqa: E402  (a sibling script, not a package)

from synthaug.classify import ClassifierRecipe, with_baseline  # noqa: E402
from synthaug.conditions import Condition  # noqa: E402
from synthaug.fsutil import atomic_write_text  # noqa: E402
from synthaug.selection import balanced_of, paired_gain, search_folds, trial_outcomes, validation_split  # noqa: E402

LOSSES = ("weighted", "balanced-sampling")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=Path("docs/results-rare-folds-probe.json"))
    args = ap.parse_args()
    real, _, _, _ = protocol_data("fashion-rare", args.data)
    train, val = validation_split(real, 0.1)
    folds = search_folds(train, val, 3)
    out = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name in LOSSES:
        for i, (t, v) in enumerate(folds):
            if f"{name}|{i}" in out:
                continue
            start = time.perf_counter()
            o, _ = trial_outcomes(Condition(), t, v, with_baseline(ClassifierRecipe(steps=args.steps), name), "cpu")
            out[f"{name}|{i}"] = {"outcomes": [int(x) for x in o], "labels": v.labels.numpy().tolist(),
                                  "balanced": balanced_of(o, v.labels.numpy()),
                                  "seconds": time.perf_counter() - start}
            atomic_write_text(args.json, json.dumps(out))
    print("| folds pooled | " + " | ".join(LOSSES) + " | gain of the second (± SE) |\n|---:|---:|---:|---:|")
    for k in (1, 2, 3):
        outcomes = {n: np.concatenate([out[f"{n}|{i}"]["outcomes"] for i in range(k)]) for n in LOSSES}
        labels = np.concatenate([out[f"{LOSSES[0]}|{i}"]["labels"] for i in range(k)])
        gain, se = paired_gain(outcomes[LOSSES[1]], outcomes[LOSSES[0]], labels)
        scores = " | ".join(f"{100 * balanced_of(outcomes[n], labels):.2f}" for n in LOSSES)
        print(f"| {k} | {scores} | {100 * gain:+.2f} ± {100 * se:.2f} |")


if __name__ == "__main__":
    main()
