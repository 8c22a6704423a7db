"""The plain benchmark (the same classifier trained on real, synthetic and mixed data, tested on real data) and
what every protocol shares: real data loaded at the synthetic images' shape, in this one place."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthaug._version import __version__
from synthaug.classify import ClassifierRecipe, classification_report, predict, with_baseline
from synthaug.conditions import (Condition, GeneratorPoolSource, Source, export_source, parse_mix_recipe,
                                 run_conditions, standard_conditions, summarise)
from synthaug.config import SamplingConfig
from synthaug.data.folder import LabelledImages, find_split, load_image_folder
from synthaug.device import resolve_device
from synthaug.errors import DataError
from synthaug.report import write_report
from synthaug.sampler import Sampler, needs_teacher, resolve_sampling, teacher_on
from synthaug.runs import read_advice
from synthaug.selection import choose_baseline, validation_split, warn_near_copies
from synthaug.sources import ExportSource, GeneratorSource, SyntheticSource, resolve_source

LOGREG = "real (logistic regression)"
TEACHER = "teacher alone (real data, its own recipe)"
LABELS = ("auto", "hard", "soft")


def test_split_of(real_dir: str | Path) -> Path:
    """The test/ split beside a real training folder."""
    test = find_split(real_dir, "test")
    if test is None:
        raise DataError(f"{real_dir}: no test/ split found beside it; pass --test DIR")
    return test


def load_real_and_test(real_dir: str | Path, test_dir: str | Path | None, image_shape: Sequence[int] | None,
                       progress: bool, group_by: str | None = None) -> tuple[LabelledImages, LabelledImages, Path]:
    """The real training and test folders decoded at `image_shape` (C, H, W; the synthetic images' shape, or None
    for the folder's own), with matching classes; the training images grouped by `group_by` (see `file_groups`)."""
    test_dir = Path(test_dir) if test_dir else test_split_of(real_dir)
    res, ch = (image_shape[-1], image_shape[0]) if image_shape else (None, None)
    real = load_image_folder(real_dir, res, ch, progress=progress, group_by=group_by)
    test = load_image_folder(test_dir, int(real.images.shape[-1]), int(real.images.shape[1]), progress=progress)
    if test.class_names != real.class_names:
        raise DataError(f"{test_dir}: classes {list(test.class_names)} differ from {real_dir}'s "
                        f"{list(real.class_names)}")
    return real, test, test_dir


def stratified_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified `fraction` of each class (at least one image per class), deterministic."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"real fraction must lie in (0, 1] (got {fraction})")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max(1, int(round(fraction * (labels == c).sum())))]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def uneven_indices(labels: np.ndarray, total: int, spread: float = 4.0, seed: int = 0) -> np.ndarray:
    """Sorted indices of about `total` images in class sizes spread linearly over `spread`x, in a seeded random
    class order: the kind of uneven folder users bring."""
    k = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    sizes = np.linspace(1.0, spread, k)[rng.permutation(k)]
    sizes = np.floor(sizes / sizes.sum() * total).astype(int)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:sizes[c]] for c in range(k)]))


def rare_cut_indices(labels: np.ndarray, rare_ids: Sequence[int], keep: float) -> np.ndarray:
    """Sorted indices of every image, except that each class of `rare_ids` keeps a seeded `keep` share of its own."""
    out = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        if c in rare_ids:  # a seeded random `keep` share of the class (at least one image)
            members = members[stratified_indices(np.zeros(len(members), dtype=np.int64), keep, 0)]
        out.append(members)
    return np.sort(np.concatenate(out))


def fraction_of(real: LabelledImages, fraction: float, seed: int = 0) -> LabelledImages:
    """A stratified `fraction` of a labelled set (see `stratified_indices`)."""
    return real if fraction == 1.0 else real.subset(stratified_indices(real.labels.numpy(), fraction, seed))


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and place, recorded in every report."""
    return {"device": str(device), "synthaug_version": __version__, "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def logistic_regression(real: LabelledImages, test: LabelledImages, seed: int = 0) -> dict[str, Any]:
    """The sanity anchor: scikit-learn's logistic regression on raw pixels."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = real.images.flatten(1).numpy().astype(np.float32) / 255.0
    with warnings.catch_warnings():  # a fixed 200-iteration budget is the anchor's recipe, not a fault
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=200, random_state=seed).fit(x, real.labels.numpy())
    pred = clf.predict(test.images.flatten(1).numpy().astype(np.float32) / 255.0)
    return {"train_images": len(real), "seed": seed,
            **classification_report(test.labels.numpy(), pred, len(real.class_names))}


def label_kinds(labels: str, has_soft: bool, where: str | Path) -> tuple[str, ...]:
    """Which label kinds the synthetic conditions train with ("auto": both when soft labels are available)."""
    if labels not in LABELS:
        raise DataError(f"unknown labels {labels!r} (auto, hard or soft)")
    if labels == "soft" and not has_soft:
        raise DataError(f"{where}: has no soft labels (export it with --soft-labels)")
    if labels == "auto":
        return ("hard", "soft") if has_soft else ("hard",)
    return (labels,)


def synthetic_pool(source: SyntheticSource, real: LabelledImages, labels: str, sampling: SamplingConfig | None,
                   device: torch.device, progress: bool) -> tuple[Source, torch.nn.Module | None, SamplingConfig | None]:
    """The training pool of a resolved source, its teacher (when soft labels or a filter need one) and, for a
    generator, the sampling settings used."""
    if isinstance(source, ExportSource):
        pool = export_source(source.path, real.class_names)
        p = source.provenance
        teacher = teacher_on(real, p.get("teacher_steps"), device, progress,
                             baseline=(p.get("sampling") or {}).get("teacher_baseline")) if pool.has_soft else None
        return pool, teacher, None
    used = resolve_sampling(source.path, sampling)
    soft = labels == "soft" or (labels == "auto" and used.soft_labels)
    teacher = None
    if needs_teacher(used, soft):
        teacher = teacher_on(real, used.teacher_steps, device, progress, baseline=used.teacher_baseline)
    sampler = Sampler(source.path, used, device=device, soft=soft, teacher=teacher)
    return GeneratorPoolSource(sampler, real.class_names), teacher, used


def resolve_baseline(baseline: str | None, real: LabelledImages, recipe: ClassifierRecipe,
                     source: SyntheticSource | None, device: torch.device, holdout: float,
                     progress: bool) -> tuple[str | None, dict[str, Any] | None]:
    """The classifier baseline every synthetic condition trains with, and how it was chosen: None (the recipe as
    it is), a name, or "auto": the one `tune` advised for the source's run, else the best on a validation split
    of the real training images (never the test folder)."""
    if baseline is None:
        return None, None
    if baseline != "auto":
        with_baseline(recipe, baseline)  # an unknown name fails here, before any training
        return baseline, {"how": "named"}
    advice = advice_of(source)
    if advice and advice.get("baseline"):
        return advice["baseline"], {"how": "tune's advice for the run"}
    try:
        train, val = validation_split(real, holdout)
    except DataError as exc:  # too few images to hold any out: judge against the recipe as given, and say so
        warnings.warn(f"no baseline search: {exc}; every condition trains with the recipe as given", stacklevel=2)
        return None, {"how": f"not searched: {exc}"}
    near_copies = warn_near_copies(train, val, real.root)
    choice = choose_baseline(train, val, recipe, device=device, progress=progress)
    if progress:
        folds = f", {choice.folds} folds" if choice.folds > 1 else ""
        print(f"best baseline on validation ({len(val)} images of the training folder{folds}): {choice.name} "
              f"({100 * choice.val:.2f}% balanced accuracy)")
    return choice.name, {"how": "chosen on validation", **choice.summary(), "val_near_copies": near_copies}


def advice_of(source: SyntheticSource | None) -> dict[str, Any] | None:
    """`tune`'s advice for a run source (None for exports, plain generator files and untuned runs)."""
    return read_advice(source.path) if isinstance(source, GeneratorSource) else None


def advised_use(source: SyntheticSource | None, ratios: tuple[float, ...] | None,
                mixes: tuple[str, ...] | None) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Ratios and mix recipes to compare; None takes `tune`'s advice for the run (its ratio and mix, else 1:1
    concat)."""
    advice = advice_of(source)
    use = (advice or {}).get("synthetic") or {"ratio": 1.0, "mix": "concat"}
    mix = "finetune:0.5" if use["mix"] == "finetune" else use["mix"]
    return (ratios if ratios is not None else (use["ratio"],)), (mixes if mixes is not None else (mix,))


def benchmark(real_dir: str | Path | None, test_dir: str | Path | None, synthetic: str | Path | SyntheticSource | None,
              *, recipe: ClassifierRecipe | None = None, ratios: tuple[float, ...] | None = (1.0,), seeds: int = 1,
              logreg: bool = False, real_fraction: float = 1.0, device: str = "auto",
              out: str | Path | None = None, progress: bool = True, mixes: tuple[str, ...] | None = ("concat",),
              labels: str = "auto", sampling: SamplingConfig | None = None, baseline: str | None = "auto",
              holdout: float = 0.1, group_by: str | None = None) -> dict[str, Any]:
    """Train one classifier per condition (real, synthetic, mixed at each ratio and mix recipe) and seed; test
    each on real data.

    `ratios` and `mixes` None take `tune`'s advice for a tuned run (else 1:1, concat).
    `synthetic` is an HDF5 export, or a run / generator file / pretrained name, which then gives fresh images
    every epoch (no image repeats within the step budget), sampled by `sampling` (default: the run's
    sampling.json). `labels`: "hard", "soft" (the teacher's probabilities: from the export, or for a generator a
    teacher trained on the real training folder) or "auto" (both when soft labels are available). Soft-label rows
    come with the teacher's own test accuracy. `seeds` repeats every condition with recipe seeds s, s+1, ...
    (mean ± std); `real_fraction` keeps a stratified fraction of the real training folder. `group_by` keeps
    groups of training images (see `synthaug.data.folder.file_groups`) on one side of the validation split. `baseline` is the
    classifier baseline the synthetic conditions train with and are judged against (see `resolve_baseline`; the
    plain recipe's "real" row stays beside it). `out` is a report folder (report.json, report.md, plots). Returns
    the report dict.
    """
    recipe = recipe or ClassifierRecipe()
    source = resolve_source(synthetic) if synthetic is not None else None
    ratios, mixes = advised_use(source, ratios, mixes)
    for mix in mixes:
        parse_mix_recipe(mix)
    is_file = isinstance(source, ExportSource)
    # an export's labels are known before any image is decoded; a generator's soft labels come with its sampling
    label_kinds(labels, source.has_soft_labels if is_file else True, source.path if source else "")
    if real_dir is None:
        if source is None:
            raise DataError("give a real training folder or a synthetic source whose run names one")
        real_dir = source.training_folder()
    real, test, test_dir = load_real_and_test(real_dir, test_dir, source.image_shape if source else None, progress,
                                              group_by)
    if real_fraction < 1.0:
        real = fraction_of(real, real_fraction)
    dev = resolve_device(device)
    best, how = resolve_baseline(baseline, real, recipe, source, dev, holdout, progress)
    best = None if best == "plain" and recipe == with_baseline(recipe, "plain") else best
    pool = teacher = used = None
    kinds: tuple[str, ...] = ()
    if source is not None:
        pool, teacher, used = synthetic_pool(source, real, labels, sampling, dev, progress)
        kinds = label_kinds(labels, pool.has_soft, source.path)
    conditions = standard_conditions(pool, ratios, mixes, kinds, best)
    results = run_conditions(conditions, real, test, recipe, seeds, dev, progress)
    if teacher is not None and "soft" in kinds:
        pred = predict(teacher, test.images).argmax(1).numpy()
        results[TEACHER] = summarise([{"train_images": len(real), "seed": 0,
                                       **classification_report(test.labels.numpy(), pred, len(real.class_names))}])
    if logreg:
        results[LOGREG] = summarise([logistic_regression(real, test, recipe.seed)])
    report = {"results": results, "class_names": list(real.class_names), "real": str(real_dir),
              "image_shape": list(real.images.shape[1:]),
              "real_fraction": real_fraction, "test": str(test_dir),
              "synthetic": str(source.path) if source is not None else None,
              "synthetic_kind": None if pool is None else ("fresh every epoch" if pool.fresh else "export"),
              "synthetic_provenance": source.provenance if is_file else None,
              "sampling": dataclasses.asdict(used) if used else None, "ratios": list(ratios),
              "mixes": list(mixes), "labels": list(kinds),
              "seeds": [recipe.seed + s for s in range(seeds)], "recipe": dataclasses.asdict(recipe),
              "baseline": best, "baseline_choice": how,
              "reference": Condition(baseline=best).name if best else "real", **environment(dev)}
    if out is not None:
        write_report(report, out, synthetic=source.path if is_file else None)
    return report
