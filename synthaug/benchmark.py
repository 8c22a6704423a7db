"""Downstream benchmark: the same classifier trained on real, synthetic and mixed data, tested on real data."""
from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

import torch

import synthaug
from synthaug.classify import ClassifierRecipe, classification_report, predict, train_classifier
from synthaug.data.dataset import SyntheticDataset, synthetic_subset
from synthaug.data.folder import LabelledImages, find_split, load_image_folder
from synthaug.errors import DataError
from synthaug.fsutil import atomic_write_text


def load_synthetic(path: str | Path, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of an export, with labels remapped to the real folder's class order."""
    ds = SyntheticDataset(path)
    if set(ds.classes) - set(class_names):
        raise DataError(f"{path}: classes {sorted(set(ds.classes) - set(class_names))} are not in the real data "
                        f"({list(class_names)})")
    remap = torch.tensor([class_names.index(c) for c in ds.classes])
    return ds.raw_block(0, len(ds)).clone(), remap[torch.tensor(ds.targets)]


def _conditions(real: LabelledImages, syn_images: torch.Tensor, syn_labels: torch.Tensor,
                ratios: tuple[float, ...], seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Training sets by name: real, synthetic, and real + ratio x len(real) synthetic images."""
    sets = {"real": (real.images, real.labels), "synthetic": (syn_images, syn_labels)}
    for ratio in ratios:
        idx = torch.from_numpy(synthetic_subset(len(real), len(syn_labels), ratio, seed))
        sets[f"mixed x{ratio:g}"] = (torch.cat([real.images, syn_images[idx]]),
                                     torch.cat([real.labels, syn_labels[idx]]))
    return sets


def benchmark(real_dir: str | Path, test_dir: str | Path | None, synthetic: str | Path, *,
              recipe: ClassifierRecipe | None = None, ratios: tuple[float, ...] = (1.0,), device: str = "auto",
              out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one classifier per condition (real, synthetic, mixed) and test each on the real test folder.

    Returns (and writes to `out` as JSON when given) a dict with per-condition accuracy, macro-F1 and
    per-class recall, plus the settings that produced it.
    """
    from synthaug.train import resolve_device

    recipe = recipe or ClassifierRecipe()
    test_dir = test_dir or find_split(real_dir, "test")
    if test_dir is None:
        raise DataError(f"{real_dir}: no test/ split found beside it; pass --test DIR")
    syn_info = SyntheticDataset(synthetic).info
    channels, resolution = syn_info.image_shape[0], syn_info.image_shape[1]
    real = load_image_folder(real_dir, resolution, channels, progress=progress)
    test = load_image_folder(test_dir, resolution, channels, progress=progress)
    if test.class_names != real.class_names:
        raise DataError(f"{test_dir}: classes {list(test.class_names)} differ from {real_dir}'s "
                        f"{list(real.class_names)}")
    syn_images, syn_labels = load_synthetic(synthetic, real.class_names)
    dev = resolve_device(device)
    results = {}
    for name, (images, labels) in _conditions(real, syn_images, syn_labels, ratios, recipe.seed).items():
        model = train_classifier(images, labels, len(real.class_names), recipe, dev, progress=progress, desc=name)
        pred = predict(model, test.images).argmax(1).numpy()
        results[name] = {"train_images": int(len(labels)),
                         **classification_report(test.labels.numpy(), pred, len(real.class_names))}
    report = {"results": results, "class_names": list(real.class_names), "real": str(real_dir),
              "test": str(test_dir), "synthetic": str(synthetic), "synthetic_provenance": syn_info.provenance,
              "recipe": recipe.__dict__, "device": str(dev), "synthaug_version": synthaug.__version__,
              "torch_version": torch.__version__, "python": platform.python_version(),
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if out is not None:
        atomic_write_text(out, json.dumps(report, indent=1))
    return report


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of a benchmark report: condition, training images, accuracy, macro-F1."""
    lines = ["| training data | images | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['train_images']} | {100 * r['accuracy']:.2f}% | {100 * r['macro_f1']:.2f} |")
    return "\n".join(lines)


def real_dir_of(synthetic: str | Path) -> Path:
    """The training folder of the run an export came from (from its provenance and the run's config.json)."""
    from synthaug.checkpoint import read_run_config

    run = SyntheticDataset(synthetic).info.provenance.get("run")
    if not run or not (Path(run) / "config.json").is_file():
        raise DataError(f"{synthetic}: its run folder is unknown or gone; pass --real DIR")
    return Path(read_run_config(run).data.root)
