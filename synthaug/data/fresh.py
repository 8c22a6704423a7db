"""Fresh synthetic images every epoch for the in-memory classifier trainer: no image repeats within a budget."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from synthaug.data.dataset import epoch_seed
from synthaug.generate import GenerationPlan, SampleFilter, iter_generated
from synthaug.models import ConditionalGenerator


class FreshPool:
    """A training pool that generates a new epoch of images whenever the last one is used up.

    Epoch e holds the images of `plan` drawn with seed `epoch_seed(plan.seed, e)` (epoch 0 is an export with the
    plan's seed); batches walk a seeded permutation of it, so within an epoch no image repeats and across epochs
    every image is new. `remap` turns the generator's label indices into the caller's class order; `teacher`
    adds soft labels, `min_confidence` filters with the same teacher.
    """

    def __init__(self, generators: Sequence[ConditionalGenerator], plan: GenerationPlan, remap: torch.Tensor,
                 teacher: torch.nn.Module | None = None, min_confidence: float | None = None,
                 soft: bool = False):
        self.generators, self.plan, self.remap = list(generators), plan, remap
        self.teacher, self.min_confidence, self.soft_labels = teacher, min_confidence, soft
        self.image_shape = tuple(self.generators[0].image_shape)
        self.epoch = -1
        self.images_generated = 0
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __len__(self) -> int:
        return self.plan.total

    def _next_epoch(self, gen: torch.Generator) -> None:
        """Generate the next epoch's images and a permutation to walk."""
        self.epoch += 1
        plan = dataclasses.replace(self.plan, seed=epoch_seed(self.plan.seed, self.epoch))
        keep = SampleFilter(self.teacher, self.min_confidence) if self.min_confidence is not None else None
        blocks = list(iter_generated(self.generators, plan, sample_filter=keep,
                                     teacher=self.teacher if self.soft_labels else None))
        self.images = torch.from_numpy(np.concatenate([b.images for b in blocks]))
        self.labels = self.remap[torch.from_numpy(np.concatenate([b.labels for b in blocks]))]
        self.soft = None
        if self.soft_labels:
            soft = torch.from_numpy(np.concatenate([b.soft for b in blocks]))
            self.soft = torch.zeros_like(soft)
            self.soft[:, self.remap] = soft  # columns into the caller's class order
        self.images_generated += plan.total
        self._order = torch.randperm(plan.total, generator=gen)
        self._pos = 0

    def draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The next n (images, labels, soft labels or None), generating new epochs as needed."""
        parts = []
        while n > 0:
            if self._pos >= len(self._order):
                self._next_epoch(gen)
            idx = self._order[self._pos:self._pos + n]
            self._pos += len(idx)
            n -= len(idx)
            parts.append((self.images[idx], self.labels[idx], self.soft[idx] if self.soft is not None else None))
        soft = torch.cat([p[2] for p in parts]) if parts[0][2] is not None else None
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), soft
