"""Downstream benchmark: the same classifier trained on real, synthetic and mixed data, tested on real data."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

import synthaug
from synthaug.classify import ClassifierRecipe, classification_report, predict, train_classifier
from synthaug.data.dataset import SyntheticDataset, synthetic_subset
from synthaug.data.folder import LabelledImages, find_split, load_image_folder
from synthaug.errors import DataError

LOGREG = "real (logistic regression)"


def load_synthetic(path: str | Path, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of an export, with labels remapped to the real folder's class order."""
    ds = SyntheticDataset(path)
    if set(ds.classes) - set(class_names):
        raise DataError(f"{path}: classes {sorted(set(ds.classes) - set(class_names))} are not in the real data "
                        f"({list(class_names)})")
    remap = torch.tensor([class_names.index(c) for c in ds.classes])
    return ds.raw_block(0, len(ds)).clone(), remap[torch.tensor(ds.targets)]


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


def benchmark(real_dir: str | Path, test_dir: str | Path | None, synthetic: str | Path | None, *,
              recipe: ClassifierRecipe | None = None, ratios: tuple[float, ...] = (1.0,), seeds: int = 1,
              logreg: bool = False, real_fraction: float = 1.0, device: str = "auto",
              out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one classifier per condition (real, synthetic, mixed at each ratio) and seed; test on real data.

    `seeds` repeats every condition with recipe seeds s, s+1, ... (mean ± std in the report); `real_fraction`
    keeps a stratified fraction of the real training folder (the low-data setting: the synthetic set should come
    from a generator trained on the same fraction, see `synthaug.protocols`). `out` is a report folder
    (report.json, report.md, plots). Returns the report dict.
    """
    from synthaug.train import resolve_device

    recipe = recipe or ClassifierRecipe()
    syn_info = SyntheticDataset(synthetic).info if synthetic is not None else None
    real, test, test_dir = load_real_and_test(real_dir, test_dir, syn_info.image_shape if syn_info else None,
                                              progress)
    if real_fraction < 1.0:
        real = fraction_of(real, real_fraction)
    syn_images, syn_labels = load_synthetic(synthetic, real.class_names) if synthetic is not None else (None, None)
    dev = resolve_device(device)
    results = compare(real, syn_images, syn_labels, test, ratios=ratios, seeds=seeds, recipe=recipe, device=dev,
                      progress=progress)
    if logreg:
        results[LOGREG] = summarise([logistic_regression(real, test, recipe.seed)])
    report = {"results": results, "class_names": list(real.class_names), "real": str(real_dir),
              "real_fraction": real_fraction, "test": str(test_dir),
              "synthetic": str(synthetic) if synthetic is not None else None,
              "synthetic_provenance": syn_info.provenance if syn_info else None, "ratios": list(ratios),
              "seeds": [recipe.seed + s for s in range(seeds)], "recipe": dataclasses.asdict(recipe),
              **environment(dev)}
    if out is not None:
        from synthaug.report import write_report

        write_report(report, out, synthetic=synthetic)
    return report


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
    return {"device": str(device), "synthaug_version": synthaug.__version__, "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of a benchmark report: condition, training images, accuracy and macro-F1 (mean ± std)."""
    seeds = len(report.get("seeds", [0]))
    lines = [f"| training data | images | accuracy ({seeds} seed{'s' * (seeds > 1)}) | macro-F1 |",
             "|---|---:|---:|---:|"]
    for name, r in report["results"].items():
        acc = f"{100 * r['accuracy']:.2f}"
        f1 = f"{100 * r['macro_f1']:.2f}"
        if r.get("seeds", 1) > 1:
            acc += f" ± {100 * r['accuracy_std']:.2f}"
            f1 += f" ± {100 * r['macro_f1_std']:.2f}"
        lines.append(f"| {name} | {r['train_images']} | {acc}% | {f1} |")
    return "\n".join(lines)


def real_dir_of(synthetic: str | Path) -> Path:
    """The training folder of the run an export came from (from its provenance and the run's config.json)."""
    from synthaug.checkpoint import read_run_config

    run = SyntheticDataset(synthetic).info.provenance.get("run")
    if not run or not (Path(run) / "config.json").is_file():
        raise DataError(f"{synthetic}: its run folder is unknown or gone; pass --real DIR")
    return Path(read_run_config(run).data.root)
