"""Downstream benchmark: the same classifier trained on real, synthetic and mixed data, tested on real data."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

import torch.nn.functional as F

from synthaug._version import __version__
from synthaug.classify import (ClassifierRecipe, Phase, TensorPool, classification_report, predict, teacher_recipe,
                               train_classifier, train_on_phases, trained_on_real)
from synthaug.config import SamplingConfig
from synthaug.data.dataset import SyntheticDataset, load_synthetic, synthetic_subset
from synthaug.data.folder import LabelledImages, find_split, load_image_folder
from synthaug.data.fresh import FreshPool
from synthaug.device import resolve_device
from synthaug.errors import DataError
from synthaug.report import write_report

LOGREG = "real (logistic regression)"
TEACHER = "teacher alone (real data, its own recipe)"


def training_sets(real: LabelledImages, syn_images: torch.Tensor | None, syn_labels: torch.Tensor | None,
                  ratios: tuple[float, ...], seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Training sets by name: real, synthetic, and real + ratio x len(real) synthetic images."""
    sets = {"real": (real.images, real.labels)}
    if syn_images is None or syn_labels is None:
        return sets
    sets["synthetic"] = (syn_images, syn_labels)
    for ratio in ratios:
        idx = torch.from_numpy(synthetic_subset(len(real), len(syn_labels), ratio, seed))
        sets[f"mixed x{ratio:g}"] = (torch.cat([real.images, syn_images[idx]]),
                                     torch.cat([real.labels, syn_labels[idx]]))
    return sets


MIX_RECIPES = ("concat", "weighted", "finetune")


def parse_mix_recipe(spec: str) -> tuple[str, float | None]:
    """'concat' | 'weighted:W' (W: synthetic share of every batch, in (0, 1)) | 'finetune[:F]' (F: share of the
    steps spent on synthetic images before real ones, default 0.5)."""
    name, _, arg = spec.partition(":")
    if name not in MIX_RECIPES:
        raise DataError(f"unknown mix recipe {spec!r} (concat, weighted:W or finetune[:F])")
    if name == "concat":
        if arg:
            raise DataError(f"mix recipe {spec!r}: concat takes no argument")
        return name, None
    if name == "weighted" and not arg:
        raise DataError(f"mix recipe {spec!r}: give the synthetic share, e.g. weighted:0.3")
    try:
        value = float(arg) if arg else 0.5
    except ValueError:
        raise DataError(f"mix recipe {spec!r}: {arg!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise DataError(f"mix recipe {spec!r}: the share must lie strictly between 0 and 1")
    return name, value


class FileSynthetic:
    """Synthetic images from an HDF5 export, labels (and soft labels) in the real folder's class order."""

    fresh = False

    def __init__(self, path: str | Path, class_names: tuple[str, ...]):
        self.images, self.labels = load_synthetic(path, class_names)
        ds = SyntheticDataset(path)
        self.soft = None
        if ds.info.has_soft_labels:
            cols = torch.tensor([class_names.index(c) for c in ds.classes])
            self.soft = torch.zeros(len(ds), len(class_names))
            self.soft[:, cols] = ds.soft_labels()

    @property
    def has_soft(self) -> bool:
        return self.soft is not None

    def pool(self, num_real: int, ratio: float | None, seed: int, soft: bool) -> TensorPool:
        """All images (ratio None), or a seeded subset of ratio x num_real of them."""
        s = self.soft if soft else None
        if ratio is None:
            return TensorPool(self.images, self.labels, s)
        idx = torch.from_numpy(synthetic_subset(num_real, len(self.labels), ratio, seed))
        return TensorPool(self.images[idx], self.labels[idx], s[idx] if s is not None else None)


class GeneratorSynthetic:
    """Fresh synthetic images every epoch from a run, generator file or pretrained generator."""

    fresh = True

    def __init__(self, source: str | Path, class_names: tuple[str, ...], sampling: SamplingConfig,
                 teacher: torch.nn.Module | None, device: torch.device, soft: bool):
        from synthaug.export import load_sampler

        self.source, self.sampling, self.teacher, self.soft = source, sampling, teacher, soft
        self.generators = load_sampler(source, sampling, device)
        names = self.generators[0].class_names
        if set(names) != set(class_names):
            raise DataError(f"{source}: generator classes {list(names)} differ from the real folder's "
                            f"{list(class_names)}")
        self.remap = torch.tensor([class_names.index(c) for c in names])

    @property
    def has_soft(self) -> bool:
        return self.soft

    def pool(self, num_real: int, ratio: float | None, seed: int, soft: bool) -> FreshPool:
        """Epochs of ratio x num_real images (num_real for ratio None), class-balanced, new every epoch."""
        from synthaug.generate import class_balanced_plan

        gen = self.generators[0]
        per_class = max(1, -(-int(round((ratio or 1.0) * num_real)) // gen.num_classes))
        plan = class_balanced_plan(gen.class_names, per_class, seed, gen.image_shape, None,
                                   self.sampling.truncation, self.sampling.latent_scale)
        return FreshPool(self.generators, plan, self.remap, self.teacher, self.sampling.min_confidence, soft)


def condition_phases(real: LabelledImages, synthetic, ratio: float | None, mix: str, soft: bool, seed: int,
                     steps: int, real_only: bool = False) -> list[Phase]:
    """The training phases of one condition: real only, synthetic only (ratio None) or real + ratio x synthetic
    mixed by `mix`, all at the same total step budget."""
    real_pool = TensorPool(real.images, real.labels)
    if real_only:
        return [Phase(steps, [real_pool], [1.0])]
    syn = synthetic.pool(len(real), ratio, seed, soft)
    if ratio is None:
        return [Phase(steps, [syn], [1.0])]
    name, value = parse_mix_recipe(mix)
    if name == "finetune":
        first = int(round(steps * value))
        return [Phase(first, [syn], [1.0]), Phase(steps - first, [real_pool], [1.0])]
    if name == "weighted":
        return [Phase(steps, [real_pool, syn], [1.0 - value, value])]
    if isinstance(syn, TensorPool):  # concat: one pool, drawn uniformly (as before there were recipes)
        soft_all = None if syn.soft is None else torch.cat([F.one_hot(real.labels, len(real.class_names)).float(),
                                                            syn.soft])
        return [Phase(steps, [TensorPool(torch.cat([real.images, syn.images]),
                                         torch.cat([real.labels, syn.labels]), soft_all)], [1.0])]
    share = len(syn) / (len(syn) + len(real))  # fresh images: the share concatenation would give on average
    return [Phase(steps, [real_pool, syn], [1.0 - share, share])]


def condition_names(ratios: tuple[float, ...], mixes: tuple[str, ...], labels: tuple[str, ...]) -> list[tuple]:
    """(row name, ratio or None, mix, soft) for synthetic-only and every ratio x mix recipe, per label kind."""
    rows = []
    for kind in labels:
        tag = " (soft labels)" if kind == "soft" else ""
        rows.append((f"synthetic{tag}", None, "concat", kind == "soft"))
        for ratio in ratios:
            for mix in mixes:
                suffix = "" if mix == "concat" else f" {mix}"
                rows.append((f"mixed x{ratio:g}{suffix}{tag}", ratio, mix, kind == "soft"))
    return rows


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of accuracy, macro-F1 and per-class recall; summed confusion."""
    acc = np.array([r["accuracy"] for r in runs])
    f1 = np.array([r["macro_f1"] for r in runs])
    recall = np.array([r["per_class_recall"] for r in runs])
    return {"train_images": runs[0]["train_images"], "seeds": len(runs),
            "accuracy": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if len(runs) > 1 else 0.0,
            "macro_f1": float(f1.mean()), "macro_f1_std": float(f1.std(ddof=1)) if len(runs) > 1 else 0.0,
            "per_class_recall": recall.mean(0).tolist(),
            "per_class_recall_std": (recall.std(0, ddof=1) if len(runs) > 1 else 0 * recall[0]).tolist(),
            "confusion": np.sum([r["confusion"] for r in runs], axis=0).tolist(), "runs": runs}


def train_and_test(images: torch.Tensor, labels: torch.Tensor, test: LabelledImages, recipe: ClassifierRecipe,
                   device: torch.device, progress: bool, desc: str,
                   class_weights: torch.Tensor | None = None) -> dict[str, Any]:
    """Train one classifier from scratch and score it on the real test set."""
    k = len(test.class_names)
    model = train_classifier(images, labels, k, recipe, device, class_weights=class_weights, progress=progress,
                             desc=desc)
    pred = predict(model, test.images).argmax(1).numpy()
    return {"train_images": int(len(labels)), "seed": recipe.seed,
            **classification_report(test.labels.numpy(), pred, k)}


def compare(real: LabelledImages, syn_images: torch.Tensor | None, syn_labels: torch.Tensor | None,
            test: LabelledImages, *, ratios: tuple[float, ...], seeds: int, recipe: ClassifierRecipe,
            device: torch.device, progress: bool, desc: str = "") -> dict[str, dict[str, Any]]:
    """Every training set of `training_sets`, trained with seeds recipe.seed, +1, ... and tested; summaries by name."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for s in range(seeds):
        seeded = dataclasses.replace(recipe, seed=recipe.seed + s)
        for name, (images, labels) in training_sets(real, syn_images, syn_labels, ratios, seeded.seed).items():
            runs.setdefault(name, []).append(train_and_test(images, labels, test, seeded, device, progress,
                                                            f"{desc}{name} (seed {seeded.seed})"))
    return {name: summarise(r) for name, r in runs.items()}


def compare_conditions(real: LabelledImages, synthetic, test: LabelledImages, *, ratios: tuple[float, ...],
                       mixes: tuple[str, ...], labels: tuple[str, ...], seeds: int, recipe: ClassifierRecipe,
                       device: torch.device, progress: bool) -> dict[str, dict[str, Any]]:
    """Real, synthetic only and mixed (every ratio x mix recipe, hard and/or soft labels), over seeds."""
    k = len(test.class_names)
    runs: dict[str, list[dict[str, Any]]] = {}
    for s in range(seeds):
        seeded = dataclasses.replace(recipe, seed=recipe.seed + s)
        runs.setdefault("real", []).append(train_and_test(real.images, real.labels, test, seeded, device, progress,
                                                          f"real (seed {seeded.seed})"))
        if synthetic is None:
            continue
        for name, ratio, mix, soft in condition_names(ratios, mixes, labels):
            phases = condition_phases(real, synthetic, ratio, mix, soft, seeded.seed, seeded.steps)
            model = train_on_phases(phases, k, seeded, device, progress=progress, desc=f"{name} (seed {seeded.seed})")
            pred = predict(model, test.images).argmax(1).numpy()
            images = sum(len(pool) for ph in phases for pool in ph.pools)
            runs.setdefault(name, []).append({"train_images": int(images), "seed": seeded.seed,
                                              "fresh": synthetic.fresh,
                                              **classification_report(test.labels.numpy(), pred, k)})
    return {name: summarise(r) for name, r in runs.items()}


def logistic_regression(real: LabelledImages, test: LabelledImages, seed: int = 0) -> dict[str, Any]:
    """The sanity anchor: scikit-learn's logistic regression on raw pixels."""
    from sklearn.linear_model import LogisticRegression

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    x = real.images.flatten(1).numpy().astype(np.float32) / 255.0
    with warnings.catch_warnings():  # a fixed 200-iteration budget is the anchor's recipe, not a fault
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=200, random_state=seed).fit(x, real.labels.numpy())
    pred = clf.predict(test.images.flatten(1).numpy().astype(np.float32) / 255.0)
    return {"train_images": len(real), "seed": seed,
            **classification_report(test.labels.numpy(), pred, len(real.class_names))}


def test_split_of(real_dir: str | Path) -> Path:
    """The test/ split beside a real training folder."""
    test = find_split(real_dir, "test")
    if test is None:
        raise DataError(f"{real_dir}: no test/ split found beside it; pass --test DIR")
    return test


def load_real_and_test(real_dir: str | Path, test_dir: str | Path | None, image_shape: tuple[int, ...] | None,
                       progress: bool) -> tuple[LabelledImages, LabelledImages, Path]:
    """The real training and test folders, decoded at the synthetic images' shape, with matching classes."""
    test_dir = Path(test_dir) if test_dir else test_split_of(real_dir)
    res, ch = (image_shape[-1], image_shape[0]) if image_shape else (None, None)
    real = load_image_folder(real_dir, res, ch, progress=progress)
    test = load_image_folder(test_dir, int(real.images.shape[-1]), int(real.images.shape[1]), progress=progress)
    if test.class_names != real.class_names:
        raise DataError(f"{test_dir}: classes {list(test.class_names)} differ from {real_dir}'s "
                        f"{list(real.class_names)}")
    return real, test, test_dir


def benchmark(real_dir: str | Path | None, test_dir: str | Path | None, synthetic: str | Path | None, *,
              recipe: ClassifierRecipe | None = None, ratios: tuple[float, ...] = (1.0,), seeds: int = 1,
              logreg: bool = False, real_fraction: float = 1.0, device: str = "auto",
              out: str | Path | None = None, progress: bool = True, mixes: tuple[str, ...] = ("concat",),
              labels: str = "auto", sampling: SamplingConfig | None = None) -> dict[str, Any]:
    """Train one classifier per condition (real, synthetic, mixed at each ratio and mix recipe) and seed; test
    each on real data.

    `synthetic` is an HDF5 export, or a run / generator file, which then gives fresh images every epoch (no image
    repeats within the step budget), sampled by `sampling` (default: the run's sampling.json). `labels`: "hard",
    "soft" (the teacher's probabilities: from the export, or for a generator a teacher trained on the real
    training folder) or "auto" (both when soft labels are available). Soft-label rows come with the teacher's own
    test accuracy. `seeds` repeats every condition with recipe seeds s, s+1, ... (mean ± std); `real_fraction`
    keeps a stratified fraction of the real training folder. `out` is a report folder (report.json, report.md,
    plots). Returns the report dict.
    """
    recipe = recipe or ClassifierRecipe()
    for mix in mixes:
        parse_mix_recipe(mix)
    if labels not in ("auto", "hard", "soft"):
        raise DataError(f"unknown labels {labels!r} (auto, hard or soft)")
    is_file = synthetic is not None and Path(synthetic).suffix.lower() in (".h5", ".hdf5")
    syn_info = SyntheticDataset(synthetic).info if is_file else None
    if syn_info is not None and labels == "soft" and not syn_info.has_soft_labels:
        raise DataError(f"{synthetic}: has no soft labels (export it with --soft-labels)")
    shape = syn_info.image_shape if syn_info else (generator_shape(synthetic) if synthetic is not None else None)
    if real_dir is None:
        real_dir = real_dir_of(synthetic)
    real, test, test_dir = load_real_and_test(real_dir, test_dir, shape, progress)
    if real_fraction < 1.0:
        real = fraction_of(real, real_fraction)
    dev = resolve_device(device)
    source, teacher, used_sampling = None, None, None
    if is_file:
        source = FileSynthetic(synthetic, real.class_names)
        if source.has_soft:
            teacher = trained_on_real(real, teacher_recipe(syn_info.provenance.get("teacher_steps") or 1500), dev,
                                      progress, desc="teacher")
    elif synthetic is not None:
        from synthaug.export import resolve_sampling

        used_sampling = resolve_sampling(synthetic, sampling)
        want_soft = labels in ("auto", "soft") and (labels == "soft" or used_sampling.soft_labels)
        if want_soft or used_sampling.min_confidence is not None:
            teacher = trained_on_real(real, teacher_recipe(used_sampling.teacher_steps), dev, progress,
                                      desc="teacher")
        source = GeneratorSynthetic(synthetic, real.class_names, used_sampling, teacher, dev, want_soft)
    kinds = _label_kinds(labels, source)
    results = compare_conditions(real, source, test, ratios=ratios, mixes=mixes, labels=kinds, seeds=seeds,
                                 recipe=recipe, device=dev, progress=progress)
    if teacher is not None and "soft" in kinds:
        pred = predict(teacher, test.images).argmax(1).numpy()
        results[TEACHER] = summarise([{"train_images": len(real), "seed": 0,
                                       **classification_report(test.labels.numpy(), pred, len(real.class_names))}])
    if logreg:
        results[LOGREG] = summarise([logistic_regression(real, test, recipe.seed)])
    report = {"results": results, "class_names": list(real.class_names), "real": str(real_dir),
              "real_fraction": real_fraction, "test": str(test_dir),
              "synthetic": str(synthetic) if synthetic is not None else None,
              "synthetic_kind": None if source is None else ("fresh every epoch" if source.fresh else "export"),
              "synthetic_provenance": syn_info.provenance if syn_info else None,
              "sampling": dataclasses.asdict(used_sampling) if used_sampling else None, "ratios": list(ratios),
              "mixes": list(mixes), "labels": list(kinds),
              "seeds": [recipe.seed + s for s in range(seeds)], "recipe": dataclasses.asdict(recipe),
              **environment(dev)}
    if out is not None:
        write_report(report, out, synthetic=synthetic if is_file else None)
    return report


def generator_shape(source: str | Path) -> tuple[int, ...]:
    """The image shape of a run's or generator file's generator."""
    from synthaug.runs import generator_file, load_safe, model_config_from

    path = generator_file(source)
    cfg = model_config_from(load_safe(path), str(path))
    return (cfg.channels, cfg.resolution, cfg.resolution)


def _label_kinds(labels: str, source) -> tuple[str, ...]:
    """Which label kinds to train synthetic conditions with."""
    if source is None:
        return ()
    if labels == "soft" and not source.has_soft:
        raise DataError(f"{getattr(source, 'source', 'the export')}: has no soft labels (export with --soft-labels)")
    if labels == "auto":
        return ("hard", "soft") if source.has_soft else ("hard",)
    return (labels,)


def stratified_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified `fraction` of each class (at least one image per class), deterministic."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"real fraction must lie in (0, 1] (got {fraction})")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max(1, int(round(fraction * (labels == c).sum())))]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def fraction_of(real: LabelledImages, fraction: float, seed: int = 0) -> LabelledImages:
    """A stratified `fraction` of a labelled set (see `stratified_indices`)."""
    return real if fraction == 1.0 else real.subset(stratified_indices(real.labels.numpy(), fraction, seed))


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and place, recorded in every report."""
    return {"device": str(device), "synthaug_version": __version__, "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def real_dir_of(synthetic: str | Path) -> Path:
    """The training folder of the run an export came from (its provenance and the run's config.json), or else the
    folder its teacher learnt from (a pretrained generator has no run)."""
    from synthaug.runs import read_run_config

    provenance = SyntheticDataset(synthetic).info.provenance
    run = provenance.get("run")
    if run and (Path(run) / "config.json").is_file():
        return Path(read_run_config(run).data.root)
    for key in ("teacher_real", "confidence_real"):
        if provenance.get(key) and Path(provenance[key]).is_dir():
            return Path(provenance[key])
    raise DataError(f"{synthetic}: its run folder is unknown or gone; pass --real DIR")
