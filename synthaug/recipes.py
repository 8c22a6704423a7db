"""The default fit recipe: one documented function that looks at the folder and the device and says why.

Evidence (docs/results-fashion-mnist.md, docs/architectures.md; 2-core CPU): `dcgan` with an EMA generator and
the mode-seeking term trains at 1,227 images/s and reaches 83% synthetic-only accuracy after 12 minutes, where
`sngan` trains at 455 images/s and reaches 81% after 150 minutes. On 32-px RGB icons at the default budget `dcgan`
leads six of seven measures against `conv` (label agreement 36% against 25%, feature FD 14.2 against 18.5), `conv` the
synthetic-only accuracy (47.4% against 41.0%).

From 64 px up the recipe switches to `sngan` (residual blocks, spectral norm, projection discriminator, hinge loss)
with DiffAugment: DCGAN-style networks degrade above 64 px, and a residual spectral-norm network with DiffAugment
is the field's usual choice there (Miyato et al. 2018; Zhao et al. 2020). That choice, and every GPU budget below,
comes from the literature and from what `benchmarks/device_check.py` measures of speed; their sample quality at
64 and 128 px has not been measured here (docs/performance.md says what has).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from synthaug.data.folder import FolderIndex, default_shape, probe_folder, scan_folder

SMALL_FOLDER = 10_000  # images; below this the discriminator memorises the set without DiffAugment
UNEVEN_RATIO = 2.0  # largest class / smallest class at which training draws classes evenly
CPU_MAX_RESOLUTION = 32  # on a CPU larger sides cost more than they give at a minutes-long budget
GPU_MAX_RESOLUTION = 128  # a GPU default; larger sides need more than these networks (set --resolution to go on)
RESIDUAL_FROM = 64  # from this side up the recipe trains sngan: DCGAN-style networks degrade above 64 px
IMAGES_TO_SEE = 750_000  # 28-px images shown to D over a default run: about 10 minutes of dcgan on 2 CPU cores
GPU_IMAGES_TO_SEE = 20 * IMAGES_TO_SEE  # 28-px dcgan-equivalents on a GPU: a guess until a device check sets it
SNGAN_COST = 2.7  # sngan's cost per image against dcgan's (455 against 1,227 images/s at 28 px on 2 CPU cores)
MIN_EPOCHS, MAX_EPOCHS = 20, 2000


def image_cost(resolution: int) -> float:
    """Cost of one dcgan training image at `resolution` relative to a 28-px one (channels barely matter).

    Measured on one CPU thread, G and D forward and backward: 28 px 427 images/s, 32 px 196 (1 channel) and 189
    (3 channels); 32 px and up add a layer, and cost then grows with the area.
    """
    return 1.0 if resolution <= 28 else 2.2 * (resolution / 32) ** 2


@dataclass(frozen=True)
class FitRecipe:
    """What `fit` trains with when the user does not say, and why."""

    arch: str
    ema: bool
    resolution: int
    settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    width: int | None = None  # None: the architecture's own
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line per choice."""
        return "\n".join(f"  {r}" for r in self.reasons)


def default_recipe(index: FolderIndex, device: torch.device, probe: dict | None = None,
                   resolution: int | None = None, user: dict[str, Any] | None = None) -> FitRecipe:
    """The recipe for a folder on a device: architecture, resolution, DiffAugment, class balance and budget.

    `user` holds what the caller set (None: not set); those are kept and not explained.
    """
    user = {k: v for k, v in (user or {}).items() if v is not None}
    probe = probe or probe_folder(index, progress=False)
    native, channels = default_shape(probe)
    counts = np.bincount(np.asarray(index.labels), minlength=len(index.class_names))
    n = int(counts.sum())
    alternatives = "sngan: --arch sngan, for long GPU runs"
    if channels == 3:
        alternatives += ("; on RGB, --arch conv --ema --mode-seeking 1 trains to higher synthetic-only accuracy "
                         "with less faithful classes")
    gpu = device.type == "cuda"
    reasons: list[str] = []
    settings: dict[str, Any] = {}
    if resolution is None:
        cap = GPU_MAX_RESOLUTION if gpu else CPU_MAX_RESOLUTION
        resolution = min(native, cap)
        if native > cap:
            why = "a CPU: larger sides cost more than they give" if not gpu else "beyond it these networks need more"
            reasons.append(f"resolution {resolution} (images are {native} px; {why}; set --resolution to override)")
        else:
            reasons.append(f"resolution {resolution} ({'RGB' if channels == 3 else 'grayscale'}, the images' "
                           f"own size)")
    arch, ema, cost, width = _network(resolution, gpu, alternatives, settings, reasons)
    if "augment" not in user and "augment" not in settings:
        if n < SMALL_FOLDER:
            settings["augment"] = "translation,cutout"
            reasons.append(f"DiffAugment translation,cutout: {n} images is a small set (< {SMALL_FOLDER})")
        else:
            reasons.append(f"no DiffAugment: {n} images is enough data")
    if "class_balance" not in user:
        ratio = counts.max() / max(int(counts.min()), 1)
        if ratio >= UNEVEN_RATIO:
            settings["class_balance"] = True
            reasons.append(f"class-balanced sampling: classes hold {int(counts.min())} to {int(counts.max())} "
                           f"images ({ratio:.1f}x)")
    if "epochs" not in user and "minutes" not in user and "max_steps" not in user:
        budget = (GPU_IMAGES_TO_SEE if gpu else IMAGES_TO_SEE) / (image_cost(resolution) * cost)
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(budget / max(n, 1))))
        settings["epochs"] = epochs
        where = "a GPU budget not yet measured on a GPU" if gpu else "about 10 minutes on 2 CPU cores"
        reasons.append(f"{epochs} epochs: {epochs * n:,} images shown for {n} images at {resolution} px, {where} "
                       f"(set --epochs or --minutes to override)")
    return FitRecipe(arch, ema, resolution, settings, width, tuple(reasons))


def _network(resolution: int, gpu: bool, alternatives: str, settings: dict[str, Any],
             reasons: list[str]) -> tuple[str, bool, float, int | None]:
    """(arch, EMA, cost per image against dcgan's, width or None) for a side and device; fills the batch and
    DiffAugment it sets."""
    if resolution >= RESIDUAL_FROM:
        width = 64 if gpu else 32
        settings["batch_size"] = 128 if gpu else 64
        settings["augment"] = "translation,cutout,color"
        reasons.append(f"arch sngan + EMA, width {width}, batch {settings['batch_size']}, hinge loss, "
                       f"DiffAugment translation,cutout,color: at {resolution} px DCGAN-style networks degrade; a "
                       f"residual spectral-norm network with DiffAugment is the field's usual choice (not yet "
                       f"measured here at this size)")
        return "sngan", True, SNGAN_COST, width
    if gpu:
        settings["batch_size"] = 256
        reasons.append(f"arch dcgan + EMA + mode seeking, batch 256: the best measured recipe at {resolution} px on "
                       f"CPUs; on a GPU its speed is measured by benchmarks/device_check.py, its quality not yet "
                       f"({alternatives})")
    else:
        reasons.append(f"arch dcgan + EMA + mode seeking: the best measured recipe on CPUs and at minutes-long "
                       f"budgets ({alternatives})")
    return "dcgan", True, 1.0, None


def recipe_for_folder(data_dir: Any, device: torch.device, resolution: int | None = None,
                      user: dict[str, Any] | None = None) -> FitRecipe:
    """`default_recipe` for a folder path."""
    return default_recipe(scan_folder(data_dir), device, None, resolution, user)
