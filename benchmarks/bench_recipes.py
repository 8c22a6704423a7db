"""Baselines and synthetic data on top of them, per protocol, over seeds: the measurements behind
docs/results-baselines.md.

    python benchmarks/bench_recipes.py --data data --protocols fashion-1%,fashion-rare --stage baselines \
        --json docs/results-baselines.json

Protocols (training folders made from data/fashion/train and data/icons/train, tested on their test/ folders):
fashion-1% and fashion-10% (stratified fractions), fashion-rare (Coat, Shirt and Pullover cut to 1%), fashion-3000
(3,000 images in class sizes spread over 4x), icons (32 px RGB; validation keeps each icon's sizes together),
fashion (all of it).

Stages: `baselines` trains every baseline of `synthaug.classify.BASELINES` (imbalance ones only where classes are
uneven; `--names` picks some) on the whole training folder and tests it; `chosen` asks `choose_baseline` (a validation split of the
training folder, never test/; pooled over disjoint folds where that split is small) which one wins, then tests
the winner at the budget and at twice it; `fit` fits a generator on the protocol's training folder alone
(RUN = WORK/PROTOCOL/run, for `synthaug benchmark --top-up` too); `synthetic` fits it where `fit` has not, runs
`tune` on top of the chosen baseline, and tests the chosen baseline + synthetic data as tune advises and at 1:1;
`translated` tops the rare classes up with common-class images translated into them (M2m, no generator) on top of
the chosen baseline, and with copies of their own images (the control: random oversampling); `dagan` tops them up
with a DAGAN's variations of their own images (a pair GAN trained on the whole folder, no class-conditional
generator); `bagan` with a BAGAN's images (an autoencoder on the whole folder turned GAN, each class's latents drawn
from a Gaussian fitted to its encoded images).
`--table` prints what is measured so far.

Every finished row lands in the JSON at once (written atomically) and is skipped when the script runs again, so a
long measurement resumes where it stopped, on this machine or another. `SYNTHAUG_TRIAL_WORKERS=N` trains up to N
rows side by side (`synthaug.device.run_parallel`); their seconds are then wall times beside the others.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthaug.benchmarking import rare_cut_indices, stratified_indices, synthetic_pool, uneven_indices
from synthaug.classify import (AUGMENT_BASELINES, IMBALANCE_BASELINES, ClassifierRecipe, classification_report,
                               predict, with_baseline)
from synthaug.conditions import Condition, train_condition
from synthaug.data.folder import LabelledImages, load_image_folder
from synthaug.data.icons import ICON_GROUPS
from synthaug.device import run_parallel
from synthaug.protocols import PROTOCOL_FIT, subset_folder, translated_rare
from synthaug.translate import TranslateConfig, oversampled_top_up
from synthaug.selection import SEARCHED_AUGMENTS, auto_folds, choose_baseline, rare_classes, validation_split

RARE = ("Coat", "Shirt", "Pullover")
PROTOCOL_GROUPS = {"icons": ICON_GROUPS}  # validation keeps each icon's sizes together
# the augmentations the first searches tried; their choices keep their keys in the JSON
FIRST_AUGMENTS = ("trivial", "plain", "erasing", "trivial+erasing", "randaugment+erasing", "mixup", "cutmix")


def protocol_data(name: str, root: Path) -> tuple[LabelledImages, LabelledImages, Path, np.ndarray | None]:
    """(training set, test set, the folder it comes from, its images' scan positions there or None for all)."""
    if name == "icons":
        return (load_image_folder(root / "icons/train", 32, 3, progress=False, group_by=PROTOCOL_GROUPS[name]),
                load_image_folder(root / "icons/test", 32, 3, progress=False), root / "icons/train", None)
    full = load_image_folder(root / "fashion/train", progress=False)
    test = load_image_folder(root / "fashion/test", progress=False)
    labels = full.labels.numpy()
    if name == "fashion":
        keep = None
    elif name.startswith("fashion-") and name.endswith("%"):
        keep = stratified_indices(labels, float(name[len("fashion-"):-1]) / 100, seed=0)
    elif name == "fashion-rare":
        keep = rare_cut_indices(labels, [full.class_names.index(c) for c in RARE], 0.01)
    elif name == "fashion-3000":
        keep = uneven_indices(labels, 3000)
    else:
        raise SystemExit(f"unknown protocol {name!r}")
    return (full if keep is None else full.subset(keep)), test, root / "fashion/train", keep


def protocol_folder(name: str, root: Path, work: Path) -> Path:
    """The protocol's training set as a folder (symlinks into the real one, nothing copied)."""
    _, _, folder, keep = protocol_data(name, root)
    return folder if keep is None else subset_folder(folder, work / name / "train", keep)


def is_uneven(real: LabelledImages) -> bool:
    """Whether a training set has rare classes (under half the largest)."""
    return bool(rare_classes(np.bincount(real.labels.numpy()).tolist()))


def test_row(real: LabelledImages, test: LabelledImages, recipe: ClassifierRecipe,
             condition: Condition = Condition()) -> dict[str, Any]:
    """Train on `real` under `condition` with `recipe`, test: accuracy, balanced accuracy, per-class and rare-class
    recall, time."""
    t = time.perf_counter()
    model, _ = train_condition(condition, real, recipe, torch.device("cpu"))
    seconds = time.perf_counter() - t
    pred = predict(model, test.images).argmax(1).numpy()
    rep = classification_report(test.labels.numpy(), pred, len(real.class_names))
    rare = rare_classes(np.bincount(real.labels.numpy()).tolist())
    return {"accuracy": rep["accuracy"], "balanced_accuracy": float(np.mean(rep["per_class_recall"])),
            "per_class_recall": rep["per_class_recall"], "rare": rare,
            "rare_recall": float(np.mean([rep["per_class_recall"][c] for c in rare])) if rare else None,
            "seconds": seconds, "threads": torch.get_num_threads()}


class Rows:
    """The JSON of finished rows, keyed 'protocol|row|steps|seed', written atomically after each."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"rows": {}, "choices": {}}

    def save(self) -> None:
        """Merge into what is on disk (another process may be measuring other rows of the same file), then write."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
            for section, entries in disk.items():
                if isinstance(entries, dict):
                    self.data[section] = {**entries, **self.data.get(section, {})}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.data, indent=1))
            os.replace(tmp, self.path)

    def measure(self, rows: dict[str, Any]) -> None:
        """Measure the rows (key -> a function returning the row) not in the JSON yet, side by side on the CPU's
        cores (`run_parallel`); each lands in the JSON as it finishes."""
        todo = [k for k in rows if k not in self.data["rows"]]

        def landed(i: int, r: dict[str, Any]) -> None:
            self.data["rows"][todo[i]] = r
            self.save()
            print(f"{todo[i]}: {100 * r['accuracy']:.2f}% (balanced {100 * r['balanced_accuracy']:.2f}%"
                  + (f", rare recall {100 * r['rare_recall']:.1f}%" if r["rare_recall"] is not None else "")
                  + f") in {r['seconds']:.0f} s", flush=True)

        run_parallel([rows[k] for k in todo], "cpu", landed)


def chosen_baseline(rows: Rows, name: str, real: LabelledImages, steps: int, named: str | None = None) -> str:
    """The protocol's baseline chosen on a validation split of its training set at `steps` (searched once; the
    search is in the JSON), or `named` (e.g. the one `tune`'s own search chose), recorded as named."""
    if named is not None:
        rows.data["choices"].setdefault(f"{name}|{steps}|named {named}", {"name": named, "named": True})
        rows.save()
        return named
    train, val = validation_split(real, 0.1)
    folds = auto_folds(val.labels.numpy())
    key = f"{name}|{steps}" + (f"|{folds} folds" if folds > 1 else "")  # a single-split search keeps its old key
    if is_uneven(train):  # searches from before CMO was searched keep their keys
        key += "|losses " + ",".join(IMBALANCE_BASELINES)
    if SEARCHED_AUGMENTS != FIRST_AUGMENTS:  # and those from before "none" was searched
        key += "|augments " + ",".join(SEARCHED_AUGMENTS)
    if key not in rows.data["choices"]:
        t = time.perf_counter()
        choice = choose_baseline(train, val, ClassifierRecipe(steps=steps), folds=folds)
        rows.data["choices"][key] = {**choice.summary(), "seconds": time.perf_counter() - t}
        rows.save()
    return rows.data["choices"][key]["name"]


def fitted_run(rows: Rows, name: str, real: LabelledImages, args) -> Path:
    """The protocol's generator run, fitted on its training folder alone (class-balanced where classes are
    uneven) unless already finished; its fit time lands in the JSON."""
    import synthaug
    from synthaug.runs import has_training_state, is_finished, mark_finished

    run = args.work / name / "run"
    if not is_finished(run):
        t = time.perf_counter()
        settings = dataclasses.replace(PROTOCOL_FIT, minutes=args.fit_minutes, class_balance=is_uneven(real) or None)
        synthaug.fit(protocol_folder(name, args.data, args.work), run, settings, resume=has_training_state(run),
                     progress=False)
        mark_finished(run)
        rows.data.setdefault("fits", {})[name] = {"seconds": time.perf_counter() - t, "minutes": args.fit_minutes}
        rows.save()
    return run


def tune_key(tuned: dict[str, Any], name: str, baseline: str) -> str:
    """Where the JSON keeps `tune` on top of `baseline` for a protocol: its name for the first baseline tuned on,
    'NAME|BASELINE' for another (a later search's choice), so that every verdict stays."""
    first = tuned.get(name, {}).get("advice", {}).get("baseline", baseline)
    return name if first == baseline else f"{name}|{baseline}"


def synthetic_rows(rows: Rows, name: str, real: LabelledImages, test: LabelledImages, args) -> None:
    """A generator fitted on the protocol's training folder alone, `tune` on top of the chosen baseline, then on
    test: the chosen baseline + synthetic data as tune advises, and at 1:1."""
    import synthaug
    from synthaug.sources import resolve_source

    chosen = chosen_baseline(rows, name, real, args.steps, args.baseline)
    run = fitted_run(rows, name, real, args)
    tuned = rows.data.setdefault("tune", {})
    key = tune_key(tuned, name, chosen)
    if key not in tuned:
        result = synthaug.tune(run, baseline=chosen, progress=False, group_by=PROTOCOL_GROUPS.get(name))
        tuned[key] = {k: result[k] for k in ("advice", "verdict", "sampling", "teacher", "seconds",
                                             "use_val_accuracy", "synthetic_only_val_accuracy", "top_up")}
        tuned[key]["trials"] = result["trials"]
        rows.save()
    advice = tuned[key]["advice"]
    print(f"{name}: tune: {tuned[key]['verdict']}", flush=True)
    syn = advice["synthetic"] or {"ratio": 1.0, "mix": "concat", "labels": "hard"}
    labels = syn["labels"]
    pool, _, _ = synthetic_pool(resolve_source(run), real, labels, None, torch.device("cpu"), False)
    mix = "finetune:0.5" if syn["mix"] == "finetune" else syn["mix"]
    conditions = {"tuned": Condition(pool, syn["ratio"], mix=mix, soft=labels == "soft", baseline=chosen),
                  "1:1": Condition(pool, 1.0, soft=labels == "soft", baseline=chosen)}
    if advice["synthetic"] is None:
        del conditions["tuned"]  # tune's recipe is the chosen baseline alone, measured by the `chosen` stage
    rows.measure({f"{name}|{chosen} + synthetic {label}|{args.steps}|{seed}":
                  functools.partial(test_row, real, test, ClassifierRecipe(steps=args.steps, seed=seed), condition)
                  for seed in range(args.seeds) for label, condition in conditions.items()})


def rare_gap(real: LabelledImages) -> np.ndarray:
    """Per class, the images a rare class lacks to the largest class (0 for the others)."""
    counts = np.bincount(real.labels.numpy(), minlength=len(real.class_names))
    return np.where(np.isin(np.arange(len(counts)), rare_classes(counts.tolist())), counts.max() - counts, 0)


def rare_generator(kind: str) -> tuple[str, type, Any, Any, Any]:
    """The rare-class generator `kind` ('dagan' or 'bagan'): its name, config type, fit, top-up and load functions."""
    if kind == "dagan":
        from synthaug.dagan import DaganConfig, dagan_top_up, fit_dagan, load_dagan
        return "DAGAN", DaganConfig, fit_dagan, dagan_top_up, load_dagan
    from synthaug.bagan import BaganConfig, bagan_top_up, fit_bagan, load_bagan
    return "BAGAN", BaganConfig, fit_bagan, bagan_top_up, load_bagan


def rare_generator_rows(kind: str, rows: Rows, name: str, real: LabelledImages, test: LabelledImages, args) -> None:
    """On top of the chosen baseline: the rare classes topped up to the largest class by a DAGAN
    (`synthaug.dagan`, each image made from one of the class's own) or a BAGAN (`synthaug.bagan`) fitted on the
    protocol's training folder (kept in WORK/PROTOCOL/KIND.pt); a sample grid of each rare class beside its real
    images in WORK/PROTOCOL/KIND-samples.png."""
    from synthaug.conditions import tensors_digest
    from synthaug.plots import rare_class_samples
    from synthaug.runs import save_keyed

    title, config_type, fit, top_up_of, load = rare_generator(kind)
    chosen = chosen_baseline(rows, name, real, args.steps, args.baseline)
    config = config_type(steps=getattr(args, f"{kind}_steps"))
    default = config.steps == config_type.steps  # other budgets get their own rows and files
    label, stem = (f"{title} top-up", kind) if default else (f"{title} top-up ({config.steps} steps)",
                                                             f"{kind}-{config.steps}")
    key = {"data": tensors_digest(real.images, real.labels), "config": dataclasses.asdict(config)}
    path = args.work / name / f"{stem}.pt"
    generator = load(path, key, real, config)
    if generator is None:
        t = time.perf_counter()
        generator = fit(real, config, progress=False)
        save_keyed(generator, path, key)
        rows.data.setdefault(kind, {})[name if default else f"{name}|{label}"] = {
            "config": dataclasses.asdict(config), "seconds": time.perf_counter() - t,
            "threads": torch.get_num_threads()}
        rows.save()
    want = rare_gap(real)
    top_up = top_up_of(generator, real, want)
    rare = np.flatnonzero(want).tolist()
    rare_class_samples({"real": (real.images.numpy(), real.labels.numpy()),
                        title: (top_up.images.numpy(), top_up.labels.numpy())}, rare, real.class_names,
                       args.work / name / f"{stem}-samples.png")
    rows.measure({f"{name}|{chosen} + {label}|{args.steps}|{seed}":
                  functools.partial(test_row, real, test, ClassifierRecipe(steps=args.steps, seed=seed),
                                    Condition(top_up, baseline=chosen)) for seed in range(args.seeds)})


def translated_rows(rows: Rows, name: str, real: LabelledImages, test: LabelledImages, args) -> None:
    """On top of the chosen baseline: the rare classes topped up to the largest class with common-class images
    translated into them (`synthaug.translate`, M2m), the generator-free lever for rare classes; and its control,
    the same counts of the classes' own images (random oversampling). `--translate-bar class` accepts a
    translation at the median confidence the classifier gives the class's own images instead of 0.9."""
    chosen = chosen_baseline(rows, name, real, args.steps, args.baseline)
    want = rare_gap(real)
    relative = args.translate_bar == "class"
    label = "translated top-up" + (" (class-median bar)" if relative else "")
    rows_of = {f"{name}|{chosen} + {label}|{args.steps}|{seed}": (seed, "translated") for seed in range(args.seeds)}
    if not relative:  # the control is the same for either bar: measured once
        rows_of.update({f"{name}|{chosen} + oversampled top-up|{args.steps}|{seed}": (seed, "oversampled")
                        for seed in range(args.seeds)})
    sources = {"oversampled": oversampled_top_up(real, want)}
    if any(k not in rows.data["rows"] for k, (_, kind) in rows_of.items() if kind == "translated"):
        t = time.perf_counter()
        config = TranslateConfig(min_confidence=None) if relative else TranslateConfig()
        keep = args.work / name / ("translated-class-bar.npz" if relative else "translated.npz")
        sources["translated"], translation = translated_rare(real, want, chosen, ClassifierRecipe(steps=args.steps),
                                                             args.steps, torch.device("cpu"), False, keep, config)
        rows.data.setdefault("translations", {})[f"{name}|{label}"] = {
            **translation, "seconds": time.perf_counter() - t, "baseline": chosen}
        rows.save()
        print(f"{name}: {label}: {translation['per_class']}", flush=True)
    rows.measure({key: functools.partial(test_row, real, test, ClassifierRecipe(steps=args.steps, seed=seed),
                                         Condition(sources[kind], baseline=chosen))
                  for key, (seed, kind) in rows_of.items() if kind in sources})


def summary_table(data: dict[str, Any], protocol: str) -> str:
    """Markdown: every row of a protocol measured so far, mean ± std over its seeds, best first."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, r in data["rows"].items():
        p, row, steps, _ = key.split("|")
        if p == protocol:
            groups.setdefault((row, int(steps)), []).append(r)
    chosen: dict[str, list[str]] = {}  # row -> how it was chosen (a single split, or k folds)
    for k, v in data.get("choices", {}).items():
        if k.startswith(protocol + "|"):
            folds = v.get("folds", 1)
            how = "named" if v.get("named") else \
                f"chosen on {folds} validation folds" if folds > 1 else "chosen on one validation split"
            chosen.setdefault(v["name"], []).append(how)
    chosen = {k: list(dict.fromkeys(v)) for k, v in chosen.items()}
    lines = ["| recipe | steps | seeds | test accuracy | balanced accuracy | rare-class recall |",
             "|---|---:|---:|---:|---:|---:|"]

    def cell(values: list[float]) -> str:
        return f"{100 * np.mean(values):.2f} ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 \
            else f"{100 * values[0]:.2f}"

    for (row, steps), rs in sorted(groups.items(), key=lambda kv: -np.mean([r["accuracy"] for r in kv[1]])):
        rare = [r["rare_recall"] for r in rs if r["rare_recall"] is not None]
        label = f"**{row}** ({', '.join(chosen[row])})" if row in chosen else row
        lines.append(f"| {label} | {steps} | {len(rs)} | {cell([r['accuracy'] for r in rs])} | "
                     f"{cell([r['balanced_accuracy'] for r in rs])} | {cell(rare) if rare else '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--protocols", default="fashion-1%,fashion-rare,fashion-3000,icons,fashion-10%")
    ap.add_argument("--stage", choices=("baselines", "chosen", "fit", "synthetic", "translated", "dagan", "bagan"),
                    default="baselines")
    ap.add_argument("--work", type=Path, default=Path("runs/recipes"), help="folders and generator runs")
    ap.add_argument("--fit-minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("docs/results-baselines.json"))
    ap.add_argument("--budgets", type=int, choices=(1, 2), default=2,
                    help="the chosen stage's budgets: --steps alone (1), or also twice it (2)")
    ap.add_argument("--baseline", default=None,
                    help="name the baseline (e.g. the one tune's own search chose) instead of searching for it")
    ap.add_argument("--translate-bar", choices=("0.9", "class"), default="0.9",
                    help="the translated stage's acceptance: the paper's 0.9, or the median confidence the classifier "
                         "gives the class's own images")
    ap.add_argument("--dagan-steps", type=int, default=3000, help="the dagan stage's generator steps")
    ap.add_argument("--bagan-steps", type=int, default=3000, help="the bagan stage's adversarial steps")
    ap.add_argument("--names", default=None,
                    help="the baselines stage's baselines, comma-separated (default: every augmentation baseline, "
                         "and every imbalance one where classes are uneven), e.g. 'cmo,trivial + cmo'")
    ap.add_argument("--table", action="store_true", help="print the tables of the rows measured so far, and stop")
    args = ap.parse_args()
    rows = Rows(args.json)
    if args.table:
        for name in args.protocols.split(","):
            print(f"\n## {name}\n\n{summary_table(rows.data, name)}")
        return
    for name in args.protocols.split(","):
        real, test, _, _ = protocol_data(name, args.data)
        if args.stage == "baselines":
            names = (tuple(n.strip() for n in args.names.split(",")) if args.names else
                     AUGMENT_BASELINES + (IMBALANCE_BASELINES if is_uneven(real) else ()))
            rows.measure({f"{name}|{b}|{args.steps}|{seed}": functools.partial(
                test_row, real, test, with_baseline(ClassifierRecipe(steps=args.steps, seed=seed), b))
                for seed in range(args.seeds) for b in names})
        elif args.stage == "fit":
            print(f"{name}: generator run {fitted_run(rows, name, real, args)}", flush=True)
        elif args.stage == "synthetic":
            synthetic_rows(rows, name, real, test, args)
        elif args.stage == "translated":
            translated_rows(rows, name, real, test, args)
        elif args.stage in ("dagan", "bagan"):
            rare_generator_rows(args.stage, rows, name, real, test, args)
        else:
            chosen = chosen_baseline(rows, name, real, args.steps, args.baseline)
            print(f"{name}: the chosen baseline: {chosen}", flush=True)
            rows.measure({f"{name}|{chosen}|{steps}|{seed}": functools.partial(
                test_row, real, test, with_baseline(ClassifierRecipe(steps=steps, seed=seed), chosen))
                for steps in (args.steps, 2 * args.steps)[:args.budgets] for seed in range(args.seeds)})


if __name__ == "__main__":
    main()
