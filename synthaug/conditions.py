"""Benchmark conditions as typed values, the pools they draw from, and the one function that trains and tests
them over seeds. Every protocol, the plain benchmark and `tune` go through here."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthaug.classify import (ClassifierRecipe, Phase, TensorPool, classification_report, predict,
                               train_on_phases, with_baseline)
from synthaug.data.dataset import SyntheticDataset, load_synthetic, synthetic_subset
from synthaug.data.folder import LabelledImages
from synthaug.device import run_parallel, trial_workers
from synthaug.errors import DataError
from synthaug.fresh import FreshPool
from synthaug.fsutil import atomic_write_text
from synthaug.sampler import Sampler

MIX_RECIPES = ("concat", "weighted", "finetune")
# how a loss-only baseline shows in a condition's name; any other baseline shows as " + <its name>"
LOSS_NAMES = {"weighted": " + class-weighted loss", "logit-adjusted": " + logit-adjusted loss",
              "balanced-sampling": " + class-balanced sampling", "cmo": " + CMO"}


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


def check_top_up_counts(real: LabelledImages, want: np.ndarray, what: str) -> None:
    """A one-line error unless `want` is one non-negative count per class of `real`, some above 0."""
    if len(want) != len(real.class_names) or np.any(np.asarray(want) < 0):
        raise DataError(f"{real.root}: {what} wants one non-negative count per class (got {list(want)})")
    if not np.any(want):
        raise DataError(f"{real.root}: {what} wants an image of some class (got {list(want)})")


class TensorSource:
    """Extra training images held in memory (an export, held-out real images), labels in the real folder's
    order; `alone` and `mixed` name the conditions that use it."""

    fresh = False

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None = None, *,
                 alone: str = "synthetic", mixed: str = "mixed"):
        self.images, self.labels, self.soft = images, labels, soft
        self.alone, self.mixed = alone, mixed

    @property
    def has_soft(self) -> bool:
        return self.soft is not None

    @functools.cached_property
    def digest(self) -> str:
        """What the images are: a digest of images, labels and soft labels (a journalled run's source)."""
        return tensors_digest(self.images, self.labels, *(() if self.soft is None else (self.soft,)))

    def pool(self, num_real: int, ratio: float | None, seed: int, soft: bool) -> TensorPool:
        """All images (ratio None), or a seeded subset of ratio x num_real of them."""
        s = self.soft if soft else None
        if ratio is None:
            return TensorPool(self.images, self.labels, s)
        idx = torch.from_numpy(synthetic_subset(num_real, len(self.labels), ratio, seed))
        return TensorPool(self.images[idx], self.labels[idx], s[idx] if s is not None else None)


def export_source(path: str | Path, class_names: Sequence[str], **names: str) -> TensorSource:
    """An HDF5 export in memory, labels (and soft labels) remapped to `class_names`' order."""
    images, labels = load_synthetic(path, tuple(class_names))
    ds = SyntheticDataset(path)
    soft = None
    if ds.info.has_soft_labels:
        soft = torch.zeros(len(ds), len(class_names))
        soft[:, [list(class_names).index(c) for c in ds.classes]] = ds.soft_labels()
    return TensorSource(images, labels, soft, **names)


class GeneratorPoolSource:
    """Fresh synthetic images every epoch from a `Sampler`."""

    fresh = True
    alone, mixed = "synthetic", "mixed"

    def __init__(self, sampler: Sampler, class_names: Sequence[str]):
        self.sampler = sampler
        self.remap = sampler.remap_to(class_names, sampler.source)

    @property
    def has_soft(self) -> bool:
        return self.sampler.soft

    @functools.cached_property
    def digest(self) -> str:
        """What the images come from: the generator files, the sampling settings and the teacher's weights."""
        parts = (*self.sampler.generator_sha256, repr(self.sampler.sampling), str(self.sampler.teacher_sha256))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def pool(self, num_real: int, ratio: float | None, seed: int, soft: bool) -> FreshPool:
        """Epochs of ratio x num_real images (num_real for ratio None), class-balanced, new every epoch; with the
        teacher's soft labels when `soft`."""
        per_class = max(1, -(-int(round((ratio or 1.0) * num_real)) // len(self.sampler.class_names)))
        return FreshPool(self.sampler, self.sampler.per_class_plan(per_class, seed), self.remap, soft)


Source = TensorSource | GeneratorPoolSource


@dataclass(frozen=True)
class Condition:
    """One way to train the classifier: the real images, plus (or instead) images of `source` at `ratio` extra
    images per real one (None: all of an in-memory source, one real-sized epoch of a generator), met by `mix`,
    with hard or soft labels, trained under the classifier baseline `baseline` (e.g. "trivial+erasing + logit-adjusted";
    None: the run's recipe as it is)."""

    source: Source | None = None
    ratio: float | None = None
    with_real: bool = True
    mix: str = "concat"
    soft: bool = False
    baseline: str | None = None

    def __post_init__(self) -> None:
        parse_mix_recipe(self.mix)
        if self.source is None and not self.with_real:
            raise DataError("a condition needs real images, a source of extra images, or both")
        if self.ratio is not None and self.ratio <= 0:
            raise DataError(f"ratios must be positive (got {self.ratio})")

    @property
    def name(self) -> str:
        """What the condition is, e.g. 'real', 'synthetic (soft labels)', 'mixed x0.5 finetune'."""
        if self.source is None:
            base = "real"
        elif not self.with_real:
            base = self.source.alone
        else:
            base = self.source.mixed + ("" if self.ratio is None else f" x{self.ratio:g}")
            base += "" if self.mix == "concat" else f" {self.mix}"
        extra = "" if self.baseline is None else LOSS_NAMES.get(self.baseline, f" + {self.baseline}")
        return base + extra + (" (soft labels)" if self.soft else "")


def phases_for(condition: Condition, real: LabelledImages, seed: int, steps: int) -> list[Phase]:
    """The training phases of one condition, all at the same total step budget."""
    real_pool = TensorPool(real.images, real.labels)
    if condition.source is None:
        return [Phase(steps, [real_pool], [1.0])]
    syn = condition.source.pool(len(real), condition.ratio, seed, condition.soft)
    if not condition.with_real:
        return [Phase(steps, [syn], [1.0])]
    name, value = parse_mix_recipe(condition.mix)
    if name == "finetune":
        first = int(round(steps * value))
        return [Phase(first, [syn], [1.0]), Phase(steps - first, [real_pool], [1.0])]
    if name == "weighted":
        return [Phase(steps, [real_pool, syn], [1.0 - value, value])]
    if isinstance(syn, TensorPool):  # concat: one pool, drawn uniformly
        soft_all = None if syn.soft is None else torch.cat([F.one_hot(real.labels, len(real.class_names)).float(),
                                                            syn.soft])
        return [Phase(steps, [TensorPool(torch.cat([real.images, syn.images]),
                                         torch.cat([real.labels, syn.labels]), soft_all)], [1.0])]
    share = len(syn) / (len(syn) + len(real))  # fresh images: the share concatenation would give on average
    return [Phase(steps, [real_pool, syn], [1.0 - share, share])]


def standard_conditions(source: Source | None, ratios: Sequence[float], mixes: Sequence[str],
                        labels: Sequence[str], baseline: str | None = None) -> list[Condition]:
    """Real; real under `baseline` (when given); then per label kind the source alone and every ratio x mix recipe
    with the real images, all under `baseline`."""
    out = [Condition()] + ([Condition(baseline=baseline)] if baseline else [])
    if source is None:
        return out
    for kind in labels:
        soft = kind == "soft"
        out.append(Condition(source, None, with_real=False, soft=soft, baseline=baseline))
        out += [Condition(source, r, mix=m, soft=soft, baseline=baseline) for r in ratios for m in mixes]
    return out


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


def train_condition(condition: Condition, real: LabelledImages, recipe: ClassifierRecipe, device: torch.device,
                    progress: bool = False) -> tuple[torch.nn.Module, int]:
    """A classifier trained from scratch under `condition`, and how many distinct images it drew from."""
    if condition.baseline is not None:
        recipe = with_baseline(recipe, condition.baseline)
    phases = phases_for(condition, real, recipe.seed, recipe.steps)
    model = train_on_phases(phases, len(real.class_names), recipe, device, progress=progress,
                            desc=f"{condition.name} (seed {recipe.seed})")
    return model, sum(len(pool) for ph in phases for pool in ph.pools)


def run_conditions(conditions: Sequence[Condition], real: LabelledImages, test: LabelledImages,
                   recipe: ClassifierRecipe, seeds: int, device: torch.device,
                   progress: bool = False, journal: Path | None = None) -> dict[str, dict[str, Any]]:
    """Train every condition with seeds recipe.seed, +1, ... and test it on `test`; summaries by condition name.
    With `journal` (a JSON file), each finished run is written there as it lands and a rerun takes it from there,
    so a long benchmark resumes where it stopped."""
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise DataError(f"two conditions share a name: {names}")
    done = read_journal(journal)
    sets = tensors_digest(real.images, real.labels, test.images, test.labels) if journal is not None else ""
    plan = [(c, dataclasses.replace(recipe, seed=recipe.seed + s)) for s in range(seeds) for c in conditions]
    keys = [(journal_key(c, r, sets), training_of(c, r)) for c, r in plan]
    # two names for one training (e.g. 'real' and 'real + plain') train once
    known = {what: done[key] for key, what in keys if key in done}
    todo: dict[tuple, tuple[Condition, ClassifierRecipe]] = {}
    for (c, r), (_, what) in zip(plan, keys):
        if what not in known:
            todo.setdefault(what, (c, r))
    whats = list(todo)

    def landed(i: int, result: dict[str, Any]) -> None:
        known[whats[i]] = result
        done.update({key: result for key, what in keys if what == whats[i]})
        if journal is not None:
            atomic_write_text(journal, json.dumps(done))

    quiet = trial_workers(device, len(todo)) > 1  # runs side by side: no interleaved progress bars
    run_parallel([functools.partial(tested_run, c, real, test, r, device, progress and not quiet)
                  for c, r in todo.values()], device, landed)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for (c, _), (key, what) in zip(plan, keys):
        runs[c.name].append(done.setdefault(key, known[what]))
    if journal is not None and todo:
        atomic_write_text(journal, json.dumps(done))
    return {name: summarise(r) for name, r in runs.items()}


def tested_run(condition: Condition, real: LabelledImages, test: LabelledImages, recipe: ClassifierRecipe,
               device: torch.device, progress: bool) -> dict[str, Any]:
    """One seeded run of a condition: trained from scratch, scored on `test`."""
    model, images = train_condition(condition, real, recipe, device, progress)
    pred = predict(model, test.images).argmax(1).numpy()
    return {"train_images": int(images), "seed": recipe.seed,
            "fresh": bool(condition.source is not None and condition.source.fresh),
            **classification_report(test.labels.numpy(), pred, len(test.class_names))}


def training_of(condition: Condition, recipe: ClassifierRecipe) -> tuple:
    """What a condition trains, whatever its name: the recipe with its baseline applied, what its extra images are
    (by content) and how they are used."""
    if condition.baseline is not None:
        recipe = with_baseline(recipe, condition.baseline)
    source = "-" if condition.source is None else condition.source.digest
    return (recipe, source, condition.ratio, condition.with_real, condition.mix, condition.soft)


def tensors_digest(*tensors: torch.Tensor) -> str:
    """A short SHA-256 of the tensors' contents."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def journal_key(condition: Condition, recipe: ClassifierRecipe, sets: str) -> str:
    """What a journalled run is known by: the condition, the seeded recipe, the real training and test sets
    (`sets`, their digest) and what the condition's extra images are, so a refitted generator is never taken for
    the last one."""
    source = "-" if condition.source is None else condition.source.digest
    return f"{condition.name}|{recipe!r}|{sets}|{source}"


def read_journal(journal: Path | None) -> dict[str, Any]:
    """The finished runs a journal holds; none when there is no journal or it cannot be read."""
    if journal is None or not journal.is_file():
        return {}
    try:
        return dict(json.loads(journal.read_text(encoding="utf-8")))
    except (ValueError, TypeError):  # a damaged journal: run again
        return {}
