"""Map-style datasets over exports, with torchvision's dataset contract (classes, class_to_idx, targets)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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


def check_target(target: str) -> None:
    """'hard' (the class index) or 'soft' (the teacher's probability vector)."""
    if target not in TARGETS:
        raise SynthaugError(f"unknown target {target!r} (hard or soft)")


def as_item(img: torch.Tensor, label: Any, transform: Callable | None,
             target_transform: Callable | None) -> tuple[Any, Any]:
    """(image, label) as torchvision datasets give them: a transformed PIL image, or floats in [0, 1]."""
    if transform is not None:
        arr = img.numpy()
        out: Any = transform(Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)))
    else:
        out = img.float().div(255.0)
    return out, (target_transform(label) if target_transform is not None else label)


@contextlib.contextmanager
def readable(path: Path) -> Iterator[None]:
    """Turn HDF5's read failures (a damaged or corrupted compressed chunk) into one line naming the file."""
    try:
        yield
    except OSError as exc:
        raise DataError(f"{path}: damaged data ({str(exc).splitlines()[0][:160]})") from None


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
        check_target(target)
        self.path = Path(path)
        self.info: ExportInfo = validate_export(self.path)
        if target == "soft" and not self.info.has_soft_labels:
            raise DataError(f"{self.path}: has no soft labels (export it with --soft-labels)")
        self.target = target
        self.transform, self.target_transform = transform, target_transform
        self.classes = list(self.info.class_names)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        with readable(self.path), h5py.File(self.path, "r") as f:
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
        with readable(self.path):
            return torch.from_numpy(self._dataset()[index])

    def raw_block(self, start: int, stop: int) -> torch.Tensor:
        """uint8 images [start, stop) in one read."""
        if self._images is not None:
            return self._images[start:stop]
        with readable(self.path):
            return torch.from_numpy(self._dataset()[start:stop])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return as_item(self.raw(index), self._target(index), self.transform, self.target_transform)

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
            with readable(self.path):
                images = torch.from_numpy(self._dataset()[unique.numpy()])[inverse]
        images = images.float().div_(255.0)
        targets = self._soft[idx].unbind(0) if self._soft is not None else self._labels[idx].tolist()
        return list(zip(images.unbind(0), targets))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

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


def load_synthetic(path: str | Path, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of an export, with labels remapped to the real folder's class order."""
    ds = SyntheticDataset(path)
    if set(ds.classes) - set(class_names):
        raise DataError(f"{path}: classes {sorted(set(ds.classes) - set(class_names))} are not in the real data "
                        f"({list(class_names)})")
    remap = torch.tensor([class_names.index(c) for c in ds.classes])
    return ds.raw_block(0, len(ds)).clone(), remap[torch.tensor(ds.targets)]
