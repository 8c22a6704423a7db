"""Benchmark protocols for the questions users ask: little real data, rare classes, and what a perfect
generator could buy at all.

The generator protocols build their training folders as symlink trees over the real folder (nothing is copied),
fit a generator on exactly the data the classifier may see (never on images it must not), export, and run the
benchmark; `headroom` mixes in held-out real images instead and fits nothing. Runs and exports are kept in `work`
and reused when present, so a stopped protocol picks up again.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthaug.benchmark import (benchmark, compare, environment, load_real_and_test, load_synthetic, stratified_indices,
                                summarise, test_split_of, train_and_test)
from synthaug.classify import ClassifierRecipe
from synthaug.config import ExportConfig, SamplingConfig
from synthaug.device import resolve_device
from synthaug.data.folder import scan_folder
from synthaug.errors import DataError
from synthaug.export import export


RARE_SHARE = 0.5  # a class under this share of the largest class's images counts as rare


def subset_folder(real_dir: str | Path, out: str | Path, keep: np.ndarray) -> Path:
    """`out/<class>/<file>` symlinks to the images of `real_dir` at index positions `keep` (scan order)."""
    index = scan_folder(real_dir)
    out = Path(out)
    marker = out / ".synthaug-subset.npy"
    if marker.is_file() and np.array_equal(np.load(marker), keep):
        return out
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and holds another subset; remove it or choose another work folder")
    for name in index.class_names:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in keep:
        src = index.root / index.paths[i]
        dst = out / index.class_names[index.labels[i]] / src.name
        if not dst.exists():
            os.symlink(src.resolve(), dst)
    np.save(marker, keep)
    return out


def _fit_and_export(folder: Path, work: Path, fit_settings: dict[str, Any], per_class: int | None,
                    balance: bool, progress: bool, soft_labels: bool = False) -> Path:
    """Fit a generator on `folder` (or reuse a finished one) and export from it (or reuse the export); with
    `soft_labels` the export carries a teacher's probabilities, the teacher trained on `folder` alone."""
    from synthaug.train import fit  # protocols orchestrate fitting; the benchmark itself never trains a GAN

    run = work / "run"
    if not (run / "generator.pt").is_file() or not (run / ".done").is_file():
        fit(folder, run, resume=(run / "checkpoint.pt").is_file(), progress=progress, **fit_settings)
        (run / ".done").touch()
    syn = work / ("synthetic-soft.h5" if soft_labels else "synthetic.h5")
    if not syn.is_file():
        config = ExportConfig(per_class=None if balance else per_class, balance_to=str(folder) if balance else None,
                              resume=True, real=str(folder), sampling=SamplingConfig(soft_labels=soft_labels))
        export(run, syn, config, progress=progress)
    return syn


def low_data(real_dir: str | Path, test_dir: str | Path | None, fractions: Sequence[float], work: str | Path, *,
             fit_settings: dict[str, Any] | None = None, synthetic_full: str | Path | None = None,
             ratios: Sequence[float] = (1.0,), seeds: int = 1, recipe: ClassifierRecipe | None = None,
             min_per_class: int = 1000, device: str = "auto", progress: bool = True,
             mixes: Sequence[str] = ("concat",), labels: str = "auto") -> dict[str, Any]:
    """For each fraction of the real training folder: a generator fitted on that fraction only, and the
    classifier trained on real, synthetic and real+synthetic at `ratios` and `mixes`, tested on the real test
    folder. Unless `labels` is "hard" the export carries soft labels from a teacher trained on the fraction alone.

    `synthetic_full` (an export of a generator trained on all of `real_dir`) is used for fraction 1 when given.
    """
    work = Path(work)
    index = scan_folder(real_dir)
    class_ids = np.asarray(index.labels)
    rows = {}
    for f in fractions:
        keep = stratified_indices(class_ids, f, seed=0)
        folder = real_dir if f == 1.0 else subset_folder(real_dir, work / f"real-{f:g}", keep)
        per_class = max(min_per_class, int(np.ceil(max(ratios) * len(keep) / len(index.class_names))))
        if f == 1.0 and synthetic_full is not None:
            syn = Path(synthetic_full)
        else:
            syn = _fit_and_export(Path(folder), work / f"gan-{f:g}", fit_settings or {}, per_class, False, progress,
                                  soft_labels=labels != "hard")
        report = benchmark(folder, test_dir or test_split_of(real_dir), syn, recipe=recipe, ratios=tuple(ratios),
                           seeds=seeds, device=device, progress=progress, mixes=tuple(mixes), labels=labels)
        rows[f"{f:g}"] = {"fraction": f, "real_images": int(len(keep)), "synthetic": str(syn),
                          "results": report["results"]}
    return {"protocol": "low_data", "real": str(real_dir), "fractions": list(fractions), "ratios": list(ratios),
            "rows": rows, "class_names": list(index.class_names), "fit_settings": fit_settings or {},
            "recipe": dataclasses.asdict(recipe or ClassifierRecipe()), **environment(torch.device("cpu"))}


def held_out_split(labels: np.ndarray, fraction: float, ratio: float,
                   source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """`low_data`'s stratified subset for `fraction`, and `ratio` times its size of the other images, per class."""
    keep = stratified_indices(labels, fraction, seed=0)
    rest = np.setdiff1d(np.arange(len(labels)), keep)
    want = int(np.ceil(ratio * len(keep)))
    if want > len(rest):
        raise DataError(f"{source}: fraction {fraction:g} at ratio {ratio:g} needs {want} held-out images, "
                        f"but only {len(rest)} remain; use a smaller fraction or ratio")
    return keep, rest[stratified_indices(labels[rest], want / len(rest), seed=1)]


def headroom(real_dir: str | Path, test_dir: str | Path | None, fractions: Sequence[float], *,
             ratios: Sequence[float] = (1.0,), seeds: int = 1, recipe: ClassifierRecipe | None = None,
             device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """The low-data protocol with a perfect generator: each fraction of the real folder (the same subset as
    `low_data`'s) mixed at `ratios` with held-out real images of the same folder, disjoint from it and drawn
    per class, in place of synthetic ones; the same classifier recipe. Its gains bound what any generator fitted
    on that fraction can add at that budget.
    """
    recipe = recipe or ClassifierRecipe()
    full, test, test_dir = load_real_and_test(real_dir, test_dir, None, progress)
    labels = full.labels.numpy()
    dev = resolve_device(device)
    rows = {}
    for f in fractions:
        keep, held = held_out_split(labels, f, max(ratios), real_dir)
        oracle = full.subset(held)
        results = compare(full.subset(keep), oracle.images, oracle.labels, test, ratios=tuple(ratios), seeds=seeds,
                          recipe=recipe, device=dev, progress=progress, desc=f"{f:g}: ")
        rows[f"{f:g}"] = {"fraction": f, "real_images": len(keep), "held_out_images": len(held),
                          "results": {name.replace("synthetic", "held-out only").replace("mixed", "real + held-out"): r
                                      for name, r in results.items()}}
    return {"protocol": "headroom", "real": str(real_dir), "test": str(test_dir), "fractions": list(fractions),
            "ratios": list(ratios), "rows": rows, "class_names": list(full.class_names),
            "seeds": [recipe.seed + s for s in range(seeds)], "recipe": dataclasses.asdict(recipe),
            **environment(dev)}


def imbalance(real_dir: str | Path, test_dir: str | Path | None, rare: Sequence[str], work: str | Path, *,
              keep_fraction: float = 0.01, fit_settings: dict[str, Any] | None = None, seeds: int = 1,
              recipe: ClassifierRecipe | None = None, device: str = "auto",
              progress: bool = True) -> dict[str, Any]:
    """Make `rare` classes keep only `keep_fraction` of their images, then compare per-class recall of:
    the imbalanced real set; the same with a class-weighted loss; and the same topped up with synthetic images
    (`export --balance-to`) from a generator fitted on the imbalanced set alone, with class-balanced sampling
    unless `fit_settings` says `class_balance=False`.
    """
    recipe = recipe or ClassifierRecipe()
    work = Path(work)
    index = scan_folder(real_dir)
    rare_ids = class_ids_of(index.class_names, rare, real_dir)
    labels = np.asarray(index.labels)
    keep = []
    for c in range(len(index.class_names)):
        members = np.flatnonzero(labels == c)
        if c in rare_ids:  # a seeded random keep_fraction of the class (at least one image)
            members = members[stratified_indices(np.zeros(len(members), dtype=np.int64), keep_fraction, 0)]
        keep.append(members)
    keep = np.concatenate(keep)
    folder = subset_folder(real_dir, work / "real-imbalanced", np.sort(keep))
    fit_settings = {"class_balance": True, **(fit_settings or {})}
    syn = _fit_and_export(folder, work / "gan-imbalanced", fit_settings, None, True, progress)
    report = rare_class_comparison(folder, test_dir or test_split_of(real_dir), syn, rare_ids, seeds=seeds,
                                   recipe=recipe, device=device, progress=progress)
    return {**report, "protocol": "imbalance", "real": str(real_dir), "keep_fraction": keep_fraction,
            "fit_settings": fit_settings}


def class_ids_of(class_names: Sequence[str], names: Sequence[str], folder: str | Path) -> list[int]:
    """The indices of `names` among a folder's classes; a one-line error names any it lacks."""
    unknown = [c for c in names if c not in class_names]
    if unknown:
        raise DataError(f"{folder}: no class(es) {unknown}; it has {list(class_names)}")
    return [list(class_names).index(c) for c in names]


def rare_recall(runs: Sequence[dict[str, Any]], rare_ids: Sequence[int]) -> tuple[float, float]:
    """Mean and std over runs of each run's mean recall over the classes `rare_ids`."""
    per_run = [np.mean([r["per_class_recall"][c] for c in rare_ids]) for r in runs]
    return float(np.mean(per_run)), float(np.std(per_run))


def rare_classes(counts: Sequence[int], share: float = RARE_SHARE) -> list[int]:
    """The classes holding fewer than `share` of the largest class's images."""
    return [c for c, n in enumerate(counts) if n < share * max(counts)]


RARE_CONDITIONS = ("imbalanced real", "imbalanced + class-weighted loss", "imbalanced + synthetic top-up")


def rare_class_comparison(folder: str | Path, test_dir: str | Path | None, synthetic: str | Path,
                          rare_ids: Sequence[int], *, seeds: int = 1, recipe: ClassifierRecipe | None = None,
                          device: str = "auto", progress: bool = True,
                          conditions: Sequence[str] = RARE_CONDITIONS) -> dict[str, Any]:
    """Per-class recall of a classifier trained on `folder` as it is, with a class-weighted loss, and topped up
    with the top-up export `synthetic` (those of `conditions`); `rare` recall is the mean over `rare_ids`."""
    recipe = recipe or ClassifierRecipe()
    real, test, test_dir = load_real_and_test(folder, test_dir, None, progress)
    syn_images, syn_labels = load_synthetic(synthetic, real.class_names)
    counts = torch.bincount(real.labels, minlength=len(real.class_names)).float()
    weights = counts.sum() / (len(counts) * counts.clamp(min=1))  # inverse frequency, mean 1 over a balanced set
    dev = resolve_device(device)
    sets = {"imbalanced real": (real.images, real.labels, None),
            "imbalanced + class-weighted loss": (real.images, real.labels, weights),
            "imbalanced + synthetic top-up": (torch.cat([real.images, syn_images]),
                                              torch.cat([real.labels, syn_labels]), None)}
    unknown = set(conditions) - set(sets)
    if unknown:
        raise DataError(f"unknown rare-class conditions {sorted(unknown)} (of {list(sets)})")
    results = {}
    for name in conditions:
        images, y, w = sets[name]
        runs = [train_and_test(images, y, test, dataclasses.replace(recipe, seed=recipe.seed + s), dev, progress,
                               f"{name} (seed {recipe.seed + s})", class_weights=w) for s in range(seeds)]
        results[name] = summarise(runs)
        results[name]["rare_recall"], results[name]["rare_recall_std"] = rare_recall(runs, rare_ids)
    return {"protocol": "top_up", "real": str(folder), "test": str(test_dir),
            "rare": [real.class_names[c] for c in rare_ids], "class_counts": counts.int().tolist(),
            "results": results, "class_names": list(real.class_names), "synthetic": str(synthetic),
            "seeds": [recipe.seed + s for s in range(seeds)], "recipe": dataclasses.asdict(recipe),
            **environment(dev)}


def top_up(source: str | Path, real_dir: str | Path | None, test_dir: str | Path | None, work: str | Path, *,
           rare: Sequence[str] | None = None, seeds: int = 1, recipe: ClassifierRecipe | None = None,
           device: str = "auto", progress: bool = True,
           conditions: Sequence[str] = RARE_CONDITIONS) -> dict[str, Any]:
    """A folder's own imbalance: every class of the real training folder topped up to its largest class with
    the run `source`'s images (its sampling.json applies), compared with the folder as it is and with a
    class-weighted loss; `rare` defaults to the classes under half the largest."""
    from synthaug.runs import training_folder

    real_dir = Path(real_dir) if real_dir else training_folder(source)
    index = scan_folder(real_dir)
    counts = np.bincount(np.asarray(index.labels), minlength=len(index.class_names))
    rare_ids = class_ids_of(index.class_names, rare, real_dir) if rare else rare_classes(counts.tolist())
    if not rare_ids:
        raise DataError(f"{real_dir}: no class holds under {RARE_SHARE:g} of the largest ({counts.tolist()}); "
                        f"name the rare classes")
    syn = Path(work) / "top-up.h5"
    if not syn.is_file():  # a finished top-up is reused, like the protocols' exports
        export(source, syn, ExportConfig(balance_to=str(real_dir), real=str(real_dir), resume=True), progress=progress)
    return rare_class_comparison(real_dir, test_dir or test_split_of(real_dir), syn, rare_ids, seeds=seeds,
                                 recipe=recipe, device=device, progress=progress, conditions=conditions)


FIT_EPOCHS_CAP = 10_000  # the protocols' fits end on their minutes budget; the epoch count only caps them


@dataclass(frozen=True)
class BenchmarkRequest:
    """One `synthaug benchmark` invocation: the plain comparison or one of the protocols, with its settings.

    `fractions` selects the low-data protocol (with `headroom`: held-out real images instead of fitted
    generators), `imbalance` the rare-class protocol; otherwise real / synthetic / mixed on `synthetic`.
    `sampling` holds the sampling flags a user set (None: not set) for a generator source.
    """

    real: str | None = None
    test: str | None = None
    synthetic: str | None = None
    recipe: ClassifierRecipe = field(default_factory=ClassifierRecipe)
    ratios: tuple[float, ...] = (1.0,)
    mixes: tuple[str, ...] = ("concat",)
    labels: str = "auto"
    seeds: int = 1
    logreg: bool = False
    sampling: dict[str, Any] | None = None
    fractions: tuple[float, ...] | None = None
    headroom: bool = False
    imbalance: tuple[str, ...] | None = None
    keep: float = 0.01
    top_up: bool = False
    fit: dict[str, Any] = field(default_factory=dict)  # fit settings of the protocols' generators
    work: str | None = None
    device: str = "auto"
    out: str | None = None

    def __post_init__(self) -> None:
        if self.synthetic is None and self.real is None:
            raise DataError("give a synthetic export or generator, or a real folder with a protocol")
        if self.headroom and not self.fractions:
            raise DataError("headroom needs real fractions (each below 1: held-out images must remain)")
        if self.top_up and (self.synthetic is None or Path(self.synthetic).suffix.lower() in (".h5", ".hdf5")):
            raise DataError("top-up needs a run or generator file to draw the missing images from")
        if self.synthetic is None and not (self.fractions or self.imbalance):
            raise DataError("give a synthetic export or generator (or a protocol: real fractions / imbalance)")
        if any(r <= 0 for r in self.ratios):
            raise DataError(f"ratios must be positive (got {list(self.ratios)})")


def run_benchmark(request: BenchmarkRequest, progress: bool = True) -> tuple[dict[str, Any], str, Path]:
    """Run what `request` asks for; return the report, its table as Markdown and the report folder."""
    from synthaug.benchmark import real_dir_of
    from synthaug.export import resolve_sampling
    from synthaug.report import (below_real, default_report_dir, format_table, imbalance_table, low_data_table,
                                 write_protocol_report)
    from synthaug.runs import training_folder

    r = request
    is_file = r.synthetic is not None and Path(r.synthetic).suffix.lower() in (".h5", ".hdf5")
    real = r.real or (real_dir_of(r.synthetic) if is_file else training_folder(r.synthetic))
    out = Path(r.out) if r.out else default_report_dir(real)
    work = Path(r.work) if r.work else out / "work"
    fit_settings = {"epochs": FIT_EPOCHS_CAP, **r.fit}
    if r.fractions:
        if r.headroom:
            report = headroom(real, r.test, r.fractions, ratios=r.ratios, seeds=r.seeds, recipe=r.recipe,
                              device=r.device, progress=progress)
        else:
            report = low_data(real, r.test, r.fractions, work, fit_settings=fit_settings, synthetic_full=r.synthetic,
                              ratios=r.ratios, seeds=r.seeds, recipe=r.recipe, device=r.device, progress=progress,
                              mixes=r.mixes, labels=r.labels)
        write_protocol_report(report, out)
        return report, low_data_table(report), out
    if r.imbalance:
        report = imbalance(real, r.test, r.imbalance, work, keep_fraction=r.keep, fit_settings=fit_settings,
                           seeds=r.seeds, recipe=r.recipe, device=r.device, progress=progress)
        write_protocol_report(report, out)
        return report, imbalance_table(report), out
    if r.top_up:
        report = top_up(r.synthetic, real, r.test, out, seeds=r.seeds, recipe=r.recipe, device=r.device,
                        progress=progress)
        write_protocol_report(report, out)
        return report, imbalance_table(report), out
    sampling = None if is_file else resolve_sampling(r.synthetic, None, r.sampling)
    report = benchmark(real, r.test, r.synthetic, recipe=r.recipe, ratios=r.ratios, seeds=r.seeds, logreg=r.logreg,
                       device=r.device, out=out, progress=progress, mixes=r.mixes, labels=r.labels, sampling=sampling)
    return report, format_table(report) + "\n" + below_real(report), out
