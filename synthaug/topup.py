"""A rare-class top-up that cannot quietly hurt: capped per class, labelled or filtered by a teacher trained with
the imbalance loss, and chosen class by class on a validation split of the training folder (never test/)."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from synthaug.classify import ClassifierRecipe, predict
from synthaug.conditions import Condition, TensorSource
from synthaug.data.folder import LabelledImages
from synthaug.selection import balanced_of, clearly_better, recall_of, trial_outcomes_many

CAPS = (None, 0.8, 0.5)  # the largest synthetic share of a class a top-up may reach (None: fill to the largest)


@dataclasses.dataclass(frozen=True)
class TopUpShape:
    """How a top-up is used: the classes it fills, the cap on each class's synthetic share, the teacher's soft
    labels or hard ones, and the teacher's confidence filter."""

    classes: tuple[int, ...]
    cap: float | None = None
    soft: bool = False
    min_confidence: float | None = None

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TopUpShape:
        """The shape `dataclasses.asdict` wrote (JSON makes its class tuple a list)."""
        return cls(**{**saved, "classes": tuple(saved["classes"])})

    def describe(self, class_names: Sequence[str]) -> str:
        """In words, e.g. 'Coat, Shirt capped at 50%, soft labels, filter 0.5'."""
        parts = [", ".join(class_names[c] for c in self.classes) or "no class"]
        parts += [f"capped at {100 * self.cap:g}% synthetic"] if self.cap else []
        parts += ["soft labels"] if self.soft else []
        parts += [f"filter {self.min_confidence:g}"] if self.min_confidence else []
        return ", ".join(parts)


def shape_top_up(top_up: TensorSource, real_counts: np.ndarray, shape: TopUpShape,
                 probs: torch.Tensor | None) -> TensorSource:
    """The images of `top_up` that `shape` keeps, in order: its classes only, those the teacher (class
    probabilities `probs`, one row per top-up image) gives their class at least `min_confidence`, then at most
    cap / (1 - cap) times the class's real count; with the teacher's soft labels when `shape.soft`."""
    labels = top_up.labels.numpy()
    keep = np.isin(labels, shape.classes)
    if shape.min_confidence is not None:
        keep &= probs[torch.arange(len(labels)), top_up.labels].numpy() >= shape.min_confidence
    idx = np.flatnonzero(keep)
    if shape.cap is not None:
        limit = {c: int(np.floor(shape.cap / (1 - shape.cap) * real_counts[c])) for c in shape.classes}
        idx = np.concatenate([idx[labels[idx] == c][:limit[c]] for c in shape.classes] or [idx[:0]])
        idx.sort()
    index = torch.from_numpy(idx)
    soft = probs[index] if shape.soft else None
    return TensorSource(top_up.images[index], top_up.labels[index], soft, alone=top_up.alone, mixed=top_up.mixed)


def shaped_condition(shaped: TensorSource, baseline: str | None = None) -> Condition:
    """The real images plus a shaped top-up, trained on the top-up's own labels (its teacher's soft ones where the
    shape kept them)."""
    return Condition(shaped, baseline=baseline, soft=shaped.has_soft)


def top_up_condition(top_up: TensorSource, real_counts: np.ndarray, shape: TopUpShape,
                     probs: torch.Tensor | None) -> Condition:
    """The real images plus the top-up as `shape` keeps it (`shaped_condition`)."""
    return shaped_condition(shape_top_up(top_up, real_counts, shape, probs))


def choose_top_up(train: LabelledImages, val: LabelledImages, top_up: TensorSource, teacher: torch.nn.Module,
                  recipe: ClassifierRecipe, rare: Sequence[int], device: torch.device | str = "cpu"
                  ) -> dict[str, Any]:
    """The top-up shape with the best validation balanced accuracy on top of `recipe` (the best baseline):
    the cap, then soft labels, then the filter, each keeping the best so far; then each rare class keeps its top-up
    only where its validation recall is not below the baseline alone's. A top-up that does not beat the baseline
    alone on validation by more than a standard error of the paired difference is refused (`classes` empty)."""
    dev = torch.device(device)
    probs = predict(teacher, top_up.images)
    counts = np.bincount(train.labels.numpy(), minlength=len(train.class_names))
    trials: list[dict[str, Any]] = []
    truth = val.labels.numpy()

    trained: dict[TopUpShape | None, tuple[np.ndarray, int]] = {}

    def plain(shape: TopUpShape | None) -> TopUpShape | None:  # a top-up of no class is the baseline alone
        return shape if shape is not None and shape.classes else None

    def prefetch(shapes: Sequence[TopUpShape | None]) -> None:
        todo = [s for s in dict.fromkeys(map(plain, shapes)) if s not in trained]
        jobs = [(Condition() if s is None else top_up_condition(top_up, counts, s, probs), train, val, recipe)
                for s in todo]
        trained.update(zip(todo, trial_outcomes_many(jobs, dev)))

    def score(shape: TopUpShape | None) -> tuple[float, list[float], np.ndarray]:
        shape = plain(shape)
        prefetch([shape])
        outcomes, images = trained[shape]
        acc, recall = balanced_of(outcomes, truth), recall_of(outcomes, truth, len(val.class_names))
        trials.append({"shape": None if shape is None else dataclasses.asdict(shape), "images": int(images),
                       "val_balanced_accuracy": acc, "val_recall": recall})
        return acc, recall, outcomes

    best = TopUpShape(tuple(rare))
    prefetch([None, best, *(dataclasses.replace(best, cap=c) for c in CAPS if c is not None)])  # independent trials
    base_acc, base_recall, base_outcomes = score(None)
    best_acc, best_recall, best_outcomes = score(best)
    for change in ([{"cap": c} for c in CAPS if c is not None] + [{"soft": True}] + [{"min_confidence": 0.5}]):
        candidate = dataclasses.replace(best, **change)
        acc, recall, outcomes = score(candidate)
        if acc > best_acc:
            best, best_acc, best_recall, best_outcomes = candidate, acc, recall, outcomes
    kept = tuple(c for c in best.classes if best_recall[c] >= base_recall[c])
    if kept != best.classes:
        best = dataclasses.replace(best, classes=kept)
        best_acc, best_recall, best_outcomes = score(best) if kept else (base_acc, base_recall, base_outcomes)
    if not clearly_better(best_outcomes, base_outcomes, truth):
        best = dataclasses.replace(best, classes=())
    return {"shape": best, "val_balanced_accuracy": best_acc if best.classes else base_acc,
            "baseline_val_balanced_accuracy": base_acc,
            "trials": trials}
