"""Choosing on a validation split of the training folder, never on test/: successive halving over named
candidates, and the best classifier baseline (augmentation policy, then imbalance loss) for a folder."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from synthaug.classify import (AUGMENT_BASELINES, IMBALANCE_BASELINES, ClassifierRecipe, predict,
                               with_baseline)
from synthaug.conditions import Condition, tensors_digest, train_condition, training_of
from synthaug.data.folder import LabelledImages, concat, stratified_split
from synthaug.device import run_parallel
from synthaug.errors import DataError
from synthaug.fsutil import atomic_write_text

# The augmentation baselines a default search tries, the default first: TrivialAugment (tuning-free and strong across
# image sets, arXiv:2103.10158), the benchmark's old default (a random shift), random erasing, TrivialAugment and
# RandAugment with erasing, the two batch mixes, and no augmentation at all: where the budget is a few epochs of a
# large folder, every policy costs more than it gives (full Fashion-MNIST at 1,000 steps, on the validation split:
# none 92.35, the random shift 91.08, TrivialAugment 88.48).
SEARCHED_AUGMENTS = ("trivial", "plain", "erasing", "trivial+erasing", "randaugment+erasing", "mixup", "cutmix",
                     "none")
# Two rungs, from half the budget: at a quarter the strong policies (TrivialAugment, the mixes) had not caught up and
# were dropped before they could (the known bias of early stopping against regularisers; docs/results-baselines.md).
RUNGS = 2
FINALISTS = 2
# A challenger replaces the default only when it wins on validation by more than this many standard errors of the
# paired difference: at 60 validation images one image moves a score by 1.7 points, and the top score alone picks
# noise (the one-standard-error rule of cross-validated model choice).
MARGIN_SE = 1.0
# Where the validation split is small, the baseline search scores each candidate on several disjoint folds of the
# training folder: at 60 validation images (Fashion-MNIST at 1%) one image is 1.7 points and the search kept
# TrivialAugment 0.59 points below the best baseline on test. Folds are added until the search sees this many
# validation images, at most MAX_FOLDS (each fold is one more search's worth of training), and until its rarest class
# holds its share of them (SEARCH_IMAGES / classes): on the Fashion-MNIST rare protocol, 4,218 validation images
# held 6 of each rare class, the class-weighted loss and class-balanced sampling tied on them (89.40, 89.38), and
# two more folds scored them 77.4 / 77.0 against 85.9 / 87.1 (pooled: +6.2 ± 2.2); on test it was 6 points ahead.
# The rarest class decides the imbalance stage only: the augmentation stage keeps the folds the split's size asks
# (on that protocol one), which spares a third of the search there.
SEARCH_IMAGES = 200
MAX_FOLDS = 3
T = TypeVar("T")
RARE_SHARE = 0.5  # a class under this share of the largest class's images counts as rare
NEAR_COPY = 0.1  # between unit-length thumbnails: 44% of the icons' validation images (split image by image) have a
# training image this close, 1.4% when whole icons are held out, Fashion-MNIST's none
NEAR_COPY_SHARE = 0.05  # validation images with a near-copy in training above this share: a warning


def rare_classes(counts: Sequence[int], share: float = RARE_SHARE) -> list[int]:
    """The classes holding fewer than `share` of the largest class's images."""
    return [c for c, n in enumerate(counts) if n < share * max(counts)]


def validation_outcomes(model: torch.nn.Module, val: LabelledImages) -> np.ndarray:
    """1.0 for each validation image the model classifies correctly, else 0.0."""
    return (predict(model, val.images).argmax(1).numpy() == val.labels.numpy()).astype(np.float64)


def trial_outcomes(condition: Condition, train: LabelledImages, val: LabelledImages, recipe: ClassifierRecipe,
                   device: torch.device | str = "cpu") -> tuple[np.ndarray, int]:
    """`validation_outcomes` of a classifier trained on `train` under `condition`, and how many distinct images it
    drew from. Kept on disk by content (the split and what the condition trains), so a search that stops, or runs
    again with one trial changed, trains only the trials it lacks."""
    path = _trial_path(condition, train, val, recipe)
    kept = _kept(path, _read_trial)
    if kept is not None:
        return kept
    model, images = train_condition(condition, train, recipe, torch.device(device))
    outcomes = validation_outcomes(model, val)
    _keep(path, {"outcomes": outcomes.astype(int).tolist(), "images": int(images)})
    return outcomes, int(images)


def _read_trial(entry: dict[str, Any]) -> tuple[np.ndarray, int]:
    """A kept trial's outcomes and image count."""
    return np.asarray(entry["outcomes"], dtype=np.float64), int(entry["images"])


def trial_outcomes_many(jobs: Sequence[tuple[Condition, LabelledImages, LabelledImages, ClassifierRecipe]],
                        device: torch.device | str = "cpu") -> list[tuple[np.ndarray, int]]:
    """`trial_outcomes` of each (condition, train, val, recipe), the trials not kept on disk trained side by side
    on the CPU's cores (`run_parallel`); jobs that train the same thing (e.g. a cap that keeps every image) train
    once."""
    paths = [_trial_path(*job) for job in jobs]
    kept = {path: _kept(path, _read_trial) for path in dict.fromkeys(paths)}  # each distinct trial read once
    missing: dict[Path, tuple] = {}
    for path, job in zip(paths, jobs):
        if kept[path] is None:
            missing.setdefault(path, job)
    kept.update(zip(missing, run_parallel([functools.partial(trial_outcomes, *job, device)
                                           for job in missing.values()], device)))
    return [kept[path] for path in paths]


def _kept(path: Path, read: Callable[[dict[str, Any]], T]) -> T | None:
    """`read` of an entry the searches keep in the cache; None where there is none, or it is damaged (then removed)."""
    if not path.is_file():
        return None
    try:
        return read(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None


def _keep(path: Path, entry: dict[str, Any]) -> None:
    """Keep a search's entry in the cache, where it can: a read-only or full cache costs the next search time, not
    this one its result."""
    try:
        atomic_write_text(path, json.dumps(entry))
    except OSError:
        pass


TRIALS_VERSION = 1  # part of every kept trial's key: raise it when a change to training makes kept trials stale


def _trial_path(condition: Condition, train: LabelledImages, val: LabelledImages, recipe: ClassifierRecipe) -> Path:
    """Where `trial_outcomes` keeps one trial."""
    from synthaug.data.folder import cache_dir

    split = tensors_digest(train.images, train.labels, val.images, val.labels)
    key = repr((TRIALS_VERSION, training_of(condition, recipe), split))
    return cache_dir() / "trials" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def balanced_of(outcomes: np.ndarray, labels: np.ndarray) -> float:
    """Balanced accuracy (mean per-class recall over the classes present) of per-image outcomes: what a
    class-balanced test would score, whatever the split's class sizes."""
    return float(np.mean([outcomes[labels == c].mean() for c in np.unique(labels)]))


def recall_of(outcomes: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Per-class recall of per-image outcomes; a class without images has recall 0."""
    return [float(outcomes[labels == c].mean()) if (labels == c).any() else 0.0 for c in range(num_classes)]


def paired_gain(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(the balanced-accuracy gain of outcomes `a` over `b` on the same images, its standard error)."""
    classes = np.unique(labels)
    gains, variance = [], 0.0
    for c in classes:
        d = a[labels == c] - b[labels == c]
        gains.append(d.mean())
        variance += (d.var(ddof=1) if len(d) > 1 else d[0] ** 2) / len(d)
    return float(np.mean(gains)), float(np.sqrt(variance)) / len(classes)


def exceeds_noise(gain: float, se: float, margin: float = MARGIN_SE) -> bool:
    """Whether a paired gain is positive and more than `margin` standard errors."""
    return gain > 0 and gain > margin * se


def clearly_better(a: np.ndarray, b: np.ndarray, labels: np.ndarray, margin: float = MARGIN_SE) -> bool:
    """Whether outcomes `a` beat `b` on validation by more than `margin` standard errors of the paired gain."""
    return exceeds_noise(*paired_gain(a, b, labels), margin)


def balanced_accuracy(model: torch.nn.Module, val: LabelledImages) -> float:
    """Mean per-class recall on `val` (see `balanced_of`)."""
    return balanced_of(validation_outcomes(model, val), val.labels.numpy())


def validation_split(real: LabelledImages, holdout: float, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """(train, validation) with `holdout` of each class held out, at least one image of every class on each side."""
    counts = np.bincount(real.labels.numpy(), minlength=len(real.class_names))
    if counts.min() < 2:
        name = real.class_names[int(counts.argmin())]
        raise DataError(f"class {name!r} has {int(counts.min())} image(s); a validation split needs at least 2")
    k = len(real.class_names)
    fraction = max(holdout, k / len(real))  # sklearn's stratified split needs a validation image per class
    if real.groups is None:
        return stratified_split(real, min(fraction, 0.5), seed)
    return grouped_split(real, min(fraction, 0.5), seed)


def grouped_split(real: LabelledImages, fraction: float, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """(train, validation) with about `fraction` of each class held out, whole groups on one side (scikit-learn's
    stratified group folds: the first of round(1 / fraction))."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = real.labels.numpy()
    for c in range(len(real.class_names)):
        if len(np.unique(real.groups[labels == c])) < 2:
            raise DataError(f"class {real.class_names[c]!r} is one group; a grouped validation split needs two")
    folds = StratifiedGroupKFold(max(2, round(1 / fraction)), shuffle=True, random_state=seed)
    sides = list(next(folds.split(labels, labels, real.groups)))  # [rest, held]
    for c in range(len(real.class_names)):  # a class with every group on one side: move its smallest group over
        for i in (0, 1):
            if not (labels[sides[i]] == c).any():
                other = sides[1 - i]
                ids, sizes = np.unique(real.groups[other[labels[other] == c]], return_counts=True)
                move = real.groups[other] == ids[sizes.argmin()]  # a group id belongs to one class
                sides[i], sides[1 - i] = np.concatenate([sides[i], other[move]]), other[~move]
    rest, held = sides
    return real.subset(np.sort(rest)), real.subset(np.sort(held))


def near_copy_share(train: LabelledImages, val: LabelledImages) -> float:
    """The share of validation images with a near-copy among the training images: the nearest (scikit-learn's
    nearest neighbours between mean-centred, unit-length 16-px thumbnails) closer than `NEAR_COPY`."""
    from sklearn.neighbors import NearestNeighbors

    def thumbnails(data: LabelledImages) -> np.ndarray:
        x = torch.nn.functional.adaptive_avg_pool2d(data.images.float(), 16).flatten(1).numpy()
        x = x - x.mean(1, keepdims=True)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)

    distance, _ = NearestNeighbors(n_neighbors=1).fit(thumbnails(train)).kneighbors(thumbnails(val))
    return float(np.mean(distance[:, 0] < NEAR_COPY))


def near_copy_warning(train: LabelledImages, val: LabelledImages) -> tuple[float, str | None]:
    """(near-copy share, a one-line warning where it is above `NEAR_COPY_SHARE`, else None)."""
    share = near_copy_share(train, val)
    if share <= NEAR_COPY_SHARE:
        return share, None
    return share, (f"{100 * share:.0f}% of the validation images have a near-copy in training: if they show the same "
                   f"object (one drawing at several sizes, frames of one video), validation rewards memorising; group "
                   f"them with --group-by REGEX on their file names")


def warn_near_copies(train: LabelledImages, val: LabelledImages, where: str | Path) -> float:
    """The near-copy share of a validation split, warned about in one line (naming `where`) above
    `NEAR_COPY_SHARE`."""
    share, warning = near_copy_warning(train, val)
    if warning:
        warnings.warn(f"{where}: {warning}", stacklevel=3)
    return share


def search_folds(train: LabelledImages, val: LabelledImages, folds: int) -> list[tuple[LabelledImages, LabelledImages]]:
    """`folds` (train, validation) pairs: (train, val) first, then disjoint stratified samples of `train` of about
    val's size, each validating a classifier trained on the rest of the folder (val included)."""
    if folds <= 1:
        return [(train, val)]
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = train.labels.numpy()
    splits = min(len(train) // max(len(val), 1), int(np.bincount(labels).min()))  # folds of about val's size
    if splits < 2:
        return [(train, val)]
    if train.groups is None:
        split = StratifiedKFold(splits, shuffle=True, random_state=0).split(labels, labels)
    else:  # whole groups on one side, as in the first split
        split = StratifiedGroupKFold(splits, shuffle=True, random_state=0).split(labels, labels, train.groups)
    parts = itertools.islice(split, folds - 1)
    return [(train, val)] + [(concat(train.subset(np.sort(rest)), val), train.subset(np.sort(held)))
                             for rest, held in parts]


def auto_folds(val_labels: np.ndarray) -> int:
    """How many folds the baseline search scores on for a validation split with labels `val_labels`: enough for
    SEARCH_IMAGES images in all and for the rarest class's share of them, at most MAX_FOLDS."""
    counts = np.bincount(np.asarray(val_labels, dtype=np.int64))
    counts = counts[counts > 0]
    if not len(counts):
        return 1
    return max(size_folds(int(counts.sum())), _capped(SEARCH_IMAGES / len(counts) / counts.min()))


def size_folds(val_images: int) -> int:
    """How many folds give the search SEARCH_IMAGES validation images in all (at most MAX_FOLDS): what the
    augmentation stage scores on; only the imbalance stage, where the rarest class decides, needs `auto_folds`."""
    return _capped(SEARCH_IMAGES / max(val_images, 1))


def _capped(need: float) -> int:
    """`need` rounded up, between 1 and MAX_FOLDS."""
    return max(1, min(MAX_FOLDS, math.ceil(need)))


def successive_halving(names: Sequence[str], score: Callable[[str, int], float], budget: int, rungs: int = RUNGS,
                       stage: str = "", rows: list[dict[str, Any]] | None = None, finalists: int | None = None,
                       beats: Callable[[str, str, int], bool] | None = None,
                       prefetch: Callable[[list[str], int], None] | None = None) -> str:
    """The best of `names` by `score(name, steps)`: every candidate at budget / 2^(rungs-1) steps, the better half
    at twice that, and so on up to `budget`, where at most `finalists` (None: half) compete (Jamieson & Talwalkar
    2016); rows of every trial go to `rows`. With `beats`, the first name is the default: it reaches the last rung,
    and a challenger wins only where `beats(challenger, default, steps)`. `prefetch(names, steps)`, when given, is
    told each rung's candidates before they are scored (to train them side by side)."""
    alive = list(names)
    for r in range(rungs):
        steps = max(1, budget >> (rungs - 1 - r))
        if prefetch is not None:
            prefetch(alive, steps)
        scores = {}
        for name in alive:
            scores[name] = score(name, steps)
            if rows is not None:
                rows.append({"stage": stage, "name": name, "steps": steps, "val": scores[name]})
        if len(alive) == 1:
            break
        keep = 1 if r == rungs - 1 else math.ceil(len(alive) / 2)
        if r == rungs - 2 and finalists is not None:
            keep = min(keep, finalists)
        ranked = sorted(alive, key=lambda n: -scores[n])  # stable: the first listed wins a tie
        alive = ranked[:keep]
        if beats is not None and keep > 1 and names[0] not in alive:  # the default always reaches the last rung
            alive = [names[0], *ranked[:keep - 1]]
    if beats is not None and alive[0] != names[0] and names[0] in scores:
        if not beats(alive[0], names[0], steps):
            return names[0]
    return alive[0]


@dataclasses.dataclass(frozen=True)
class BaselineChoice:
    """The best classifier baseline for a folder, its recipe, and the validation trials that chose it."""

    name: str
    recipe: ClassifierRecipe
    val: float
    trials: tuple[dict[str, Any], ...]
    train_images: int
    val_images: int
    outcomes: tuple[int, ...] = dataclasses.field(default=(), compare=False, repr=False)  # per validation image
    folds: int = 1  # the trials' scores are over this many folds' validation images; `val` is the first fold's

    def summary(self) -> dict[str, Any]:
        """JSON-ready: name, recipe, validation score and the trials."""
        return {"name": self.name, "recipe": dataclasses.asdict(self.recipe), "val_balanced_accuracy": self.val,
                "trials": list(self.trials), "train_images": self.train_images, "val_images": self.val_images,
                "folds": self.folds}


def _choice_cache(train: LabelledImages, val: LabelledImages, *key: Any) -> Path:
    """Where a baseline search on this split with these settings is kept (by content, like the teacher cache)."""
    from synthaug.data.folder import cache_dir

    split = tensors_digest(train.images, train.labels, val.images, val.labels)
    h = hashlib.sha256(repr((split, *key, FINALISTS, MARGIN_SE)).encode())
    return cache_dir() / f"baseline-{h.hexdigest()[:24]}.json"


def choose_baseline(train: LabelledImages, val: LabelledImages, recipe: ClassifierRecipe, *,
                    augments: Sequence[str] = SEARCHED_AUGMENTS, losses: Sequence[str] | None = None,
                    device: torch.device | str = "cpu", rungs: int = RUNGS, progress: bool = False,
                    folds: int | None = None) -> BaselineChoice:
    """The best baseline on `val` (balanced accuracy) for a classifier trained on `train` with `recipe`'s
    architecture and budget: the augmentation baselines by successive halving, then, where `train` has rare
    classes (or `losses` names them), each imbalance loss on top of the best augmentation against none. The
    imbalance stage pools `folds` disjoint validation folds of the folder (`search_folds`; None: `auto_folds` of
    val's labels), the augmentation stage as many as give SEARCH_IMAGES validation images (`size_folds`). A
    search is kept on disk by the split's content and settings, so the same folder is searched once."""
    folds = auto_folds(val.labels.numpy()) if folds is None else folds
    few = min(folds, size_folds(len(val)))  # the augmentation stage's folds (a search that split them gets a new key)
    if losses is None:
        losses = IMBALANCE_BASELINES if rare_classes(np.bincount(train.labels.numpy()).tolist()) else ()
    # a single-split search keeps the key it had before folds existed, so kept searches stay valid
    path = _choice_cache(train, val, recipe, tuple(augments), tuple(losses), rungs,
                         *(() if folds == 1 else (folds,) if few == folds else (folds, few)))
    kept = _kept(path, lambda e: BaselineChoice(e["name"], with_baseline(recipe, e["name"]), e["val_balanced_accuracy"],
                                                tuple(e["trials"]), len(train), len(val), tuple(e["outcomes"]),
                                                int(e.get("folds", 1))))
    if kept is not None:
        return kept
    choice = _search_baseline(search_folds(train, val, folds), recipe, augments, losses, torch.device(device),
                              rungs, progress)
    _keep(path, {**choice.summary(), "outcomes": list(choice.outcomes)})
    return choice


def _search_baseline(folds: list[tuple[LabelledImages, LabelledImages]], recipe: ClassifierRecipe,
                     augments: Sequence[str], losses: Sequence[str], dev: torch.device, rungs: int,
                     progress: bool) -> BaselineChoice:
    """`choose_baseline`'s search itself, over the folds' validation images pooled."""
    train, val = folds[0]
    unknown = [n for n in (*augments, *losses) if n not in AUGMENT_BASELINES + IMBALANCE_BASELINES]
    if unknown:
        raise DataError(f"unknown baseline(s) {unknown} (of {', '.join(AUGMENT_BASELINES + IMBALANCE_BASELINES)})")
    rows: list[dict[str, Any]] = []
    cache: dict[tuple[str, int], list[np.ndarray]] = {}  # (name, steps) -> outcomes on folds 0, 1, ...
    every, few = len(folds), min(len(folds), size_folds(len(val)))  # the imbalance stage's folds, the augmentations'
    truth = {k: np.concatenate([v.labels.numpy() for _, v in folds[:k]]) for k in range(1, every + 1)}

    def prefetch(names: Sequence[str], steps: int, k: int = every) -> None:
        jobs = [(n, i) for n in dict.fromkeys(names) for i in range(len(cache.get((n, steps), ())), k)]
        results = trial_outcomes_many([(Condition(), *folds[i], dataclasses.replace(with_baseline(recipe, n),
                                                                                    steps=steps)) for n, i in jobs],
                                      dev)
        for (name, _), (result, _) in zip(jobs, results):
            cache.setdefault((name, steps), []).append(result)
        if progress:
            for name in dict.fromkeys(n for n, _ in jobs):
                print(f"  baseline {name} at {steps} steps: {100 * score(name, steps, k):.2f}% on validation",
                      flush=True)

    def outcomes(name: str, steps: int, k: int = every) -> np.ndarray:
        prefetch([name], steps, k)
        return np.concatenate(cache[name, steps][:k])

    def score(name: str, steps: int, k: int = every) -> float:
        return balanced_of(outcomes(name, steps, k), truth[k])

    def beats(challenger: str, default: str, steps: int, k: int = every) -> bool:
        return clearly_better(outcomes(challenger, steps, k), outcomes(default, steps, k), truth[k])

    best = successive_halving(augments, lambda n, t: score(n, t, few), recipe.steps, rungs, "augmentation", rows,
                              FINALISTS, lambda c, d, t: beats(c, d, t, few), lambda n, t: prefetch(n, t, few))
    for row in rows:
        row["folds"] = few
    if losses:
        candidates = [f"{best} + {loss}" for loss in losses]
        prefetch([best, *candidates], recipe.steps)
        top = max(candidates, key=lambda n: score(n, recipe.steps))
        rows += [{"stage": "imbalance", "name": n, "steps": recipe.steps, "val": score(n, recipe.steps),
                  "folds": every} for n in candidates]
        if beats(top, best, recipe.steps):  # no loss change stays unless a loss wins clearly
            best = top
    first = outcomes(best, recipe.steps, 1)  # what later choices on (train, val) compare against
    return BaselineChoice(best, with_baseline(recipe, best), balanced_of(first, val.labels.numpy()), tuple(rows),
                          len(train), len(val), tuple(int(v) for v in first), every if losses else few)


def format_choice(summary: dict[str, Any]) -> str:
    """The baseline search (a `BaselineChoice.summary()`) as a Markdown table, the winner in bold."""
    folds = summary.get("folds", 1)
    per_stage = {r["stage"]: r.get("folds", folds) for r in summary["trials"]}
    split = len(set(per_stage.values())) > 1  # the stages scored on different folds: say so stage by stage
    head = "val balanced accuracy" + (f" ({folds} folds)" if folds > 1 and not split else "")
    lines = [f"| stage | baseline | steps | {head} |", "|---|---|---:|---:|"]
    for r in summary["trials"]:
        final = r["name"] == summary["name"] and r["steps"] == summary["recipe"]["steps"]
        name = f"**{r['name']}**" if final else r["name"]
        k = per_stage[r["stage"]]
        stage = f"{r['stage']} ({k} fold{'s' if k > 1 else ''})" if split else r["stage"]
        lines.append(f"| {stage} | {name} | {r['steps']} | {100 * r['val']:.2f}% |")
    return "\n".join(lines)
