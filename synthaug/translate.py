"""A rare-class top-up without a generator: images of common classes translated into a rare class by a classifier's
gradient (M2m, arXiv:2004.00431), so the common classes' variety reaches the rare ones.

Unlike the paper, the translation happens once, before training, with a fixed classifier (the paper also pushes
the classifier being trained away from the seed's class): the top-up is then a set of images like any other, and
every rare-class row (raw, capped, shaped on validation) can take it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthaug.classify import normalise_pixels, predict
from synthaug.conditions import TensorSource, check_top_up_counts
from synthaug.data.folder import LabelledImages
from synthaug.engine import to_uint8
from synthaug.errors import DataError
from synthaug.fsutil import atomic_path


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
    """The translation's settings, lengths in pixel units of [0, 1] as the paper states them."""

    steps: int = 10  # gradient steps per image
    step_size: float = 0.5  # L2 length of each step (the paper: 0.1, which moved no Fashion-MNIST image far enough)
    start: float = 0.5  # L2 length of the random start
    # a translation counts where the classifier gives the target this probability; None: as much as it gives the
    # median of the class's own images (a classifier short of convergence gives few images of a rare class 0.9)
    min_confidence: float | None = 0.9
    # a seed class with n more images than the target is drawn, and its translation accepted, with weight
    # 1 - beta**n: the paper's rule for classes of thousands; in a small folder (gaps of tens) it refuses most
    beta: float = 0.999
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise DataError(f"translation steps and batch size must be at least 1 (got {self.steps}, "
                            f"{self.batch_size})")
        if not 0.0 < self.beta < 1.0 or not 0.0 <= (self.min_confidence or 0.0) < 1.0:
            raise DataError(f"translation beta must lie in (0, 1) and min_confidence in [0, 1) "
                            f"(got {self.beta}, {self.min_confidence})")


def seed_weights(counts: np.ndarray, target: int, beta: float) -> np.ndarray:
    """Per class, the weight of drawing a seed image from it for `target`: 1 - beta**(n_seed - n_target) where the
    seed class is larger, else 0 (the paper's acceptance probability)."""
    gap = np.maximum(counts - counts[target], 0).astype(np.float64)
    return np.where(gap > 0, 1.0 - beta ** gap, 0.0)


def translate_batch(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, config: TranslateConfig,
                    gen: torch.Generator) -> torch.Tensor:
    """uint8 images moved towards `targets` by L2-normalised steps on the classifier's cross-entropy, from a random
    start; uint8 again."""
    device = next(model.parameters()).device
    scale = 2.0  # the model sees pixels in [-1, 1]: twice the paper's [0, 1] lengths
    x = normalise_pixels(images).to(device)
    dims = tuple(range(1, x.dim()))
    noise = torch.randn(x.shape, generator=gen).to(device)
    x = (x + scale * config.start * noise / noise.flatten(1).norm(dim=1).view(-1, *[1] * len(dims))).clamp(-1, 1)
    targets = targets.to(device)
    for _ in range(config.steps):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), targets)
        (grad,) = torch.autograd.grad(loss, [x])
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * len(dims))
        x = (x - scale * config.step_size * grad / norm).clamp(-1, 1)
    return to_uint8(x.detach()).cpu()


@dataclasses.dataclass
class Translation:
    """A translated top-up: the images (labels: their rare class), which of them were translated (the others are
    copies of the class's own images), and per class how many were wanted and translated."""

    source: TensorSource
    moved: np.ndarray
    per_class: dict[str, dict[str, Any]]


def translated_top_up(real: LabelledImages, model: torch.nn.Module, want: np.ndarray,
                      config: TranslateConfig = TranslateConfig()) -> Translation:
    """`want[c]` extra images of each class c: each a seed image of a larger class translated into c by `model`
    (a classifier trained on `real`), kept where the model then gives c at least `min_confidence` (after rounding
    to uint8; None: the median it gives c's own images) and the paper's acceptance draw passes; else a copy of one
    of c's own images (oversampling)."""
    check_top_up_counts(real, want, "translation")
    counts = np.bincount(real.labels.numpy(), minlength=len(real.class_names))
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    labels = real.labels.numpy()
    model.eval().to(memory_format=torch.channels_last)  # once, outside inference mode: its weights stay differentiable
    images, moved, per_class = [], [], {}
    for c in np.flatnonzero(want):
        weights = seed_weights(counts, c, config.beta)
        own = np.flatnonzero(labels == c)
        n = int(want[c])
        bar = config.min_confidence
        if bar is None:
            bar = float(predict(model, real.images[own])[:, c].median())
        ok = np.zeros(n, dtype=bool)
        seeds, accept_draw = np.zeros(0, dtype=np.int64), ok
        if weights.sum() > 0:  # the largest class has nothing larger to translate from: copies only
            per_image = weights[labels]
            seeds = rng.choice(len(labels), n, p=per_image / per_image.sum())
            accept_draw = rng.random(n) < weights[labels[seeds]]
        out = real.images[rng.choice(own, n)].clone()
        for i in range(0, len(seeds), config.batch_size):
            part = slice(i, i + config.batch_size)
            target = torch.full((len(seeds[part]),), int(c))
            step = translate_batch(model, real.images[seeds[part]], target, config, gen)
            ok[part] = (predict(model, step)[:, c].numpy() >= bar) & accept_draw[part]
            keep = torch.from_numpy(ok[part])
            out[part][keep] = step[keep]
        images.append(out)
        moved.append(ok)
        per_class[real.class_names[c]] = {"wanted": n, "translated": int(ok.sum()), "min_confidence": bar}
    labels_out = torch.cat([torch.full((int(want[c]),), int(c)) for c in np.flatnonzero(want)])
    return Translation(translated_source(torch.cat(images), labels_out), np.concatenate(moved), per_class)


def oversampled_top_up(real: LabelledImages, want: np.ndarray, seed: int = 0) -> TensorSource:
    """The translation's control: `want[c]` copies of class c's own images, drawn at random (random oversampling)."""
    rng = np.random.default_rng(seed)
    labels = real.labels.numpy()
    picks = [rng.choice(np.flatnonzero(labels == c), int(want[c])) for c in np.flatnonzero(want)]
    index = torch.from_numpy(np.concatenate(picks))
    return TensorSource(real.images[index], real.labels[index], alone="oversampled top-up only",
                        mixed="real + oversampled top-up")


def translated_source(images: torch.Tensor, labels: torch.Tensor) -> TensorSource:
    """Translated images as a top-up source, named for the conditions that use it."""
    return TensorSource(images, labels, alone="translated top-up only", mixed="real + translated top-up")


def save_translation(translation: Translation, path: Path, key: dict[str, Any]) -> None:
    """The translation as an .npz file (written atomically) with `key`, what made it."""
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, images=translation.source.images.numpy(), labels=translation.source.labels.numpy(),
                 moved=translation.moved, per_class=json.dumps(translation.per_class), key=json.dumps(key))


def load_translation(path: Path, key: dict[str, Any]) -> Translation | None:
    """The translation saved at `path` by `key`'s settings, or None where there is none or another's."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        if json.loads(str(saved["key"])) != json.loads(json.dumps(key)):
            return None
        return Translation(translated_source(torch.from_numpy(saved["images"]), torch.from_numpy(saved["labels"])),
                           saved["moved"], json.loads(str(saved["per_class"])))
