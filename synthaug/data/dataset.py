"""Map-style datasets over exports, with torchvision's dataset contract (classes, class_to_idx, targets)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset

from synthaug.data.h5format import IMAGES, LABELS, SOFT_LABELS, ExportInfo, validate_export
from synthaug.errors import DataError, SynthaugError

DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes of uint8 images read once into shared memory
TARGETS = ("hard", "soft")


def _check_target(target: str) -> None:
    """'hard' (the class index) or 'soft' (the teacher's probability vector)."""
    if target not in TARGETS:
        raise SynthaugError(f"unknown target {target!r} (hard or soft)")


def _as_item(img: torch.Tensor, label: Any, transform: Callable | None,
             target_transform: Callable | None) -> tuple[Any, Any]:
    """(image, label) as torchvision datasets give them: a transformed PIL image, or floats in [0, 1]."""
    if transform is not None:
        arr = img.numpy()
        out: Any = transform(Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)))
    else:
        out = img.float().div(255.0)
    return out, (target_transform(label) if target_transform is not None else label)


class SyntheticDataset(Dataset):
    """Images and labels of a synthaug HDF5 export.

    Items are `(image, label)`: image a float tensor (C, H, W) in [0, 1], or, when `transform` is given, the
    transform applied to a PIL image (as torchvision datasets do); label the class index, or with
    `target="soft"` the teacher's probability vector (K,) float32 that a version-2 export stores. Files within
    `memory_budget` bytes are read once into shared memory, so DataLoader workers share one copy; larger ones are
    read from the file, which each worker opens lazily.
    """

    def __init__(self, path: str | Path, transform: Callable | None = None, target_transform: Callable | None = None,
                 memory_budget: int | None = DEFAULT_MEMORY_BUDGET, target: str = "hard"):
        _check_target(target)
        self.path = Path(path)
        self.info: ExportInfo = validate_export(self.path)
        if target == "soft" and not self.info.has_soft_labels:
            raise DataError(f"{self.path}: has no soft labels (export it with --soft-labels)")
        self.target = target
        self.transform, self.target_transform = transform, target_transform
        self.classes = list(self.info.class_names)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        with h5py.File(self.path, "r") as f:
            self._labels = torch.from_numpy(f[LABELS][()])
            self._soft = torch.from_numpy(f[SOFT_LABELS][()]).float() if target == "soft" else None
            nbytes = f[IMAGES].size
            in_memory = memory_budget is not None and nbytes <= memory_budget
            self._images = torch.from_numpy(f[IMAGES][()]).share_memory_() if in_memory else None
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def in_memory(self) -> bool:
        """True when the images were read into shared memory."""
        return self._images is not None

    @property
    def targets(self) -> list[int]:
        """The label of every item."""
        return self._labels.tolist()

    def __len__(self) -> int:
        return self.info.num_images

    def _dataset(self) -> h5py.Dataset:
        """The images dataset, opened once per process (handles do not survive fork or pickling)."""
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[IMAGES]

    def raw(self, index: int) -> torch.Tensor:
        """The uint8 image (C, H, W) at `index`."""
        if self._images is not None:
            return self._images[index]
        return torch.from_numpy(self._dataset()[index])

    def raw_block(self, start: int, stop: int) -> torch.Tensor:
        """uint8 images [start, stop) in one read."""
        if self._images is not None:
            return self._images[start:stop]
        return torch.from_numpy(self._dataset()[start:stop])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return _as_item(self.raw(index), self._target(index), self.transform, self.target_transform)

    def _target(self, index: int) -> Any:
        """The class index, or the soft label vector."""
        return self._soft[index] if self._soft is not None else int(self._labels[index])

    def soft_labels(self) -> torch.Tensor:
        """All soft labels (N, K) float32."""
        if self._soft is None:
            with h5py.File(self.path, "r") as f:
                if SOFT_LABELS not in f:
                    raise DataError(f"{self.path}: has no soft labels (export it with --soft-labels)")
                return torch.from_numpy(f[SOFT_LABELS][()]).float()
        return self._soft

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, Any]]:
        """A batch of items in one vectorised read (DataLoader uses this when present)."""
        if self.transform is not None or self.target_transform is not None:
            return [self[i] for i in indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        idx = torch.where(idx < 0, idx + len(self), idx)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        if self._images is not None:
            images = self._images[idx]
        else:
            # h5py wants increasing, unique indices: read those once, then put them back in order.
            unique, inverse = torch.unique(idx, sorted=True, return_inverse=True)
            images = torch.from_numpy(self._dataset()[unique.numpy()])[inverse]
        images = images.float().div_(255.0)
        targets = self._soft[idx].unbind(0) if self._soft is not None else self._labels[idx].tolist()
        return list(zip(images.unbind(0), targets))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    @classmethod
    def from_run(cls, run: str | Path, per_class: int, seed: int = 0, **kwargs: Any) -> GeneratedDataset:
        """A dataset generated on the fly from a run, item for item equal to an export with the same seed (and
        fresh images after `set_epoch`)."""
        return GeneratedDataset(run, per_class, seed, **kwargs)

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


def synthetic_subset(num_real: int, num_synthetic: int, ratio: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of `ratio * num_real` synthetic items (a seeded random subset, or all if fewer)."""
    if ratio < 0:
        raise ValueError("ratio must be >= 0")
    want = min(num_synthetic, int(round(ratio * num_real)))
    return np.sort(np.random.default_rng(seed).choice(num_synthetic, size=want, replace=False))


def mix(real: Dataset, synthetic: Dataset, ratio: float, seed: int = 0) -> Dataset:
    """Real plus `ratio * len(real)` synthetic items (a seeded random subset, or all of them if fewer)."""
    idx = synthetic_subset(len(real), len(synthetic), ratio, seed)
    return ConcatDataset([real, Subset(synthetic, idx.tolist())]) if len(idx) else real


def epoch_seed(seed: int, epoch: int) -> int:
    """The plan seed of a fresh epoch: epoch 0 is `seed` itself (an export with that seed), later epochs are
    well-mixed seeds of (seed, epoch)."""
    if epoch == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(epoch), 0x5EED]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class GeneratedDataset(Dataset):
    """Images generated on the fly by a trained generator, deterministic in (seed, epoch, index).

    At epoch 0, item i is item i of `synthaug.export(source, out, ExportConfig(per_class=..., seed=seed))`: both
    use the generation engine's plan, whose noise depends only on (seed, chunk). `set_epoch(e)` switches every
    DataLoader worker, persistent ones included, to fresh images (the epoch lives in shared memory), so training
    never sees an image twice. Whole chunks are generated at a time and kept in a small per-process cache; each
    worker loads its own copy of the generator (and, for `target="soft"`, of the teacher). `sampling` defaults
    to the run's sampling.json.
    """

    def __init__(self, source: str | Path, per_class: int, seed: int = 0, classes: list[str] | None = None,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 cache_chunks: int = 64, *, sampling: Any = None, target: str = "hard", real: str | Path | None = None):
        from synthaug.export import load_sampler, resolve_sampling, teacher_for
        from synthaug.generate import class_balanced_plan
        from synthaug.runs import training_folder

        _check_target(target)
        self.source, self.seed, self.target = Path(source), seed, target
        self.sampling = resolve_sampling(source, sampling)
        self._gens = load_sampler(source, self.sampling, "cpu")
        gen = self._gens[0]
        self.plan = class_balanced_plan(gen.class_names, per_class, seed, gen.image_shape, classes,
                                        self.sampling.truncation, self.sampling.latent_scale)
        self.teacher = None
        if target == "soft" or self.sampling.min_confidence is not None:
            folder = real if real is not None else training_folder(source)
            self.teacher = teacher_for(gen, folder, self.sampling.teacher_steps, torch.device("cpu"), progress=False)
        self.classes = list(gen.class_names)
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
        import dataclasses

        from synthaug.export import load_sampler
        from synthaug.generate import SampleFilter, iter_generated

        if self._gens is None:
            self._gens = load_sampler(self.source, self.sampling, "cpu")
        plan = dataclasses.replace(self.plan, seed=epoch_seed(self.seed, key[0]))
        keep = SampleFilter(self.teacher, self.sampling.min_confidence) if self.sampling.min_confidence else None
        block = next(iter_generated(self._gens, plan, chunks=[chunk], sample_filter=keep,
                                    teacher=self.teacher if self.target == "soft" else None))
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
        return _as_item(images[row], label, self.transform, self.target_transform)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_gens"] = None
        state["_cache"] = {}
        return state


FreshSyntheticDataset = GeneratedDataset  # the name for its fresh-every-epoch use


def load_synthetic(path: str | Path, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of an export, with labels remapped to the real folder's class order."""
    ds = SyntheticDataset(path)
    if set(ds.classes) - set(class_names):
        raise DataError(f"{path}: classes {sorted(set(ds.classes) - set(class_names))} are not in the real data "
                        f"({list(class_names)})")
    remap = torch.tensor([class_names.index(c) for c in ds.classes])
    return ds.raw_block(0, len(ds)).clone(), remap[torch.tensor(ds.targets)]
