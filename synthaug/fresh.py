"""Fresh synthetic images every epoch, through a `Sampler`: a map-style `GeneratedDataset` for DataLoaders and a
`FreshPool` for the in-memory classifier trainer. No image repeats within a budget."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from synthaug.config import SamplingConfig
from synthaug.data.dataset import as_item, check_target
from synthaug.errors import SynthaugError
from synthaug.engine import GenerationPlan
from synthaug.sampler import Sampler


class GeneratedDataset(Dataset):
    """Images generated on the fly by a trained generator, deterministic in (seed, epoch, index).

    At epoch 0, item i is item i of `synthaug.export(source, out, ExportConfig(per_class=..., seed=seed))`: both
    use the generation engine's plan, whose noise depends only on (seed, chunk). `set_epoch(e)` switches every
    DataLoader worker, persistent ones included, to fresh images (the epoch lives in shared memory), so training
    never sees an image twice. Whole chunks are generated at a time and kept in a small per-process cache; each
    worker loads its own copy of the generator. `sampling` defaults to the run's sampling.json; `target="soft"`
    gives the teacher's probability vectors as labels (the teacher learns from `real`, default the run's
    training folder).
    """

    def __init__(self, source: str | Path, per_class: int, seed: int = 0, classes: list[str] | None = None,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 cache_chunks: int = 64, *, sampling: SamplingConfig | None = None, target: str = "hard",
                 real: str | Path | None = None):
        check_target(target)
        self.source, self.seed, self.target = Path(source), seed, target
        self.sampler = Sampler(source, sampling, device="cpu", soft=target == "soft", real=real)
        self.sampling = self.sampler.sampling
        self.plan = self.sampler.per_class_plan(per_class, seed, classes)
        self.classes = list(self.sampler.class_names)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.targets = self.plan.labels.tolist()
        self.transform, self.target_transform = transform, target_transform
        self.cache_chunks = cache_chunks
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    @property
    def run(self) -> Path:
        """The source this dataset samples (a run folder or generator file)."""
        return self.source

    @property
    def epoch(self) -> int:
        """The epoch whose images items are drawn from."""
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s images from now on, in this process and in every worker."""
        if epoch < 0:
            raise SynthaugError(f"epoch must be >= 0 (got {epoch})")
        self._epoch[0] = epoch

    def __len__(self) -> int:
        return self.plan.total

    def _chunk(self, chunk: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images (and soft labels) of one chunk of the current epoch, generated once per process."""
        key = (self.epoch, chunk)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used goes last
            return self._cache[key]
        block = next(self.sampler.blocks(self.sampler.epoch(self.plan, key[0]), chunks=[chunk]))
        soft = torch.from_numpy(block.soft) if block.soft is not None else None
        self._cache[key] = (torch.from_numpy(block.images), soft)
        while len(self._cache) > self.cache_chunks:
            self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        images, soft = self._chunk(index // self.plan.chunk_rows)
        row = index % self.plan.chunk_rows
        label = soft[row] if soft is not None else self.targets[index]
        return as_item(images[row], label, self.transform, self.target_transform)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state


FreshSyntheticDataset = GeneratedDataset  # the name for its fresh-every-epoch use


class FreshPool:
    """A training pool that generates a new epoch of images whenever the last one is used up.

    Epoch e holds the images of `plan` drawn with seed `epoch_seed(plan.seed, e)` (epoch 0 is an export with the
    plan's seed); batches walk a seeded permutation of it, so within an epoch no image repeats and across epochs
    every image is new. `remap` turns the generator's label indices into the caller's class order; `soft` adds the
    sampler's teacher probabilities; the filter is the sampler's.
    """

    def __init__(self, sampler: Sampler, plan: GenerationPlan, remap: torch.Tensor, soft: bool = False):
        self.sampler, self.plan, self.remap, self.soft_labels = sampler, plan, remap, soft
        self.image_shape = sampler.image_shape
        self.epoch = -1
        self.images_generated = 0
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __len__(self) -> int:
        return self.plan.total

    def label_counts(self, num_classes: int) -> torch.Tensor:
        """Images per class (K,) of one epoch, in the caller's class order."""
        return torch.bincount(self.remap[torch.from_numpy(self.plan.labels)], minlength=num_classes)

    def _next_epoch(self, gen: torch.Generator) -> None:
        """Generate the next epoch's images and a permutation to walk."""
        self.epoch += 1
        plan = self.sampler.epoch(self.plan, self.epoch)
        blocks = list(self.sampler.blocks(plan, soft=self.soft_labels))
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

    def draw(self, n: int, gen: torch.Generator,
             balanced: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The next n (images, labels, soft labels or None), generating new epochs as needed; `balanced` changes
        nothing: the plans are class-balanced already."""
        del balanced
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
