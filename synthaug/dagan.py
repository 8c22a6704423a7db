"""A rare-class top-up from a data-augmentation GAN (DAGAN, arXiv:1711.04340): a generator learns, on pairs of
images of one class drawn from the whole folder (so mostly from the common classes), to turn an image into another
image of its class; applied to a rare class's own images it gives that class variety learnt elsewhere.

Unlike the paper (WGAN-GP), the pair discriminator is spectral-normalised and trained on the hinge loss, as the
project's other GANs; a mode-seeking term (MSGAN) is available against a generator that ignores its noise."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from synthaug.classify import model_inputs
from synthaug.conditions import TensorSource, check_top_up_counts
from synthaug.data.folder import LabelledImages
from synthaug.engine import to_uint8
from synthaug.errors import DataError
from synthaug.losses import d_hinge, g_hinge
from synthaug.models.dagan import PairDiscriminator, PairGenerator
from synthaug.runs import load_keyed


@dataclasses.dataclass(frozen=True)
class DaganConfig:
    """The pair GAN's settings."""

    steps: int = 3000  # generator steps (one discriminator step each)
    batch_size: int = 32
    width: int = 16  # 0.2 s a step of batch 32 at 28 px on one busy CPU thread; width 32 and batch 64: 1.1 s
    z_dim: int = 64
    lr: float = 2e-4
    # weight of the MSGAN term (0: off, as in the paper): on 8-px digits 0.1 and 1 made the images' class harder to
    # recognise (a classifier agreed with 84% and 65% of common-class variations after 1,000 steps, against 88% off)
    mode_seeking: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.width, self.z_dim) < 1 or self.lr <= 0 or self.mode_seeking < 0:
            raise DataError(f"DAGAN steps, batch size, width and z_dim must be at least 1, lr above 0 and "
                            f"mode_seeking at least 0 (got {dataclasses.asdict(self)})")


def same_class_partners(labels: np.ndarray, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each anchor index, another image of its class (itself where its class has one image)."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels[anchors])}
    partners = np.empty_like(anchors)
    for i, a in enumerate(anchors):
        members = by_class[labels[a]]
        if len(members) == 1:
            partners[i] = a
            continue
        pick = members[rng.integers(len(members) - 1)]
        partners[i] = pick if pick != a else members[-1]  # drawn from the others: the last stands in for itself
    return partners


def fit_dagan(real: LabelledImages, config: DaganConfig = DaganConfig(), device: torch.device | str = "cpu",
              progress: bool = False) -> PairGenerator:
    """A pair generator trained on `real`'s same-class pairs, anchors drawn uniformly over its images."""
    labels = real.labels.numpy()
    if np.bincount(labels).max() < 2:
        raise DataError(f"{real.root}: DAGAN needs a class with two images or more to learn from")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    channels = real.images.shape[1]
    # NHWC activations: 1.3x faster on this project's CPU, the same arithmetic
    g = PairGenerator(channels, config.width, config.z_dim).to(device, memory_format=torch.channels_last)
    d = PairDiscriminator(channels, config.width).to(device, memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(g.parameters(), config.lr, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), config.lr, betas=(0.0, 0.9))
    for _ in tqdm(range(config.steps), desc="DAGAN", unit="step", disable=not progress, leave=False):
        anchors = rng.integers(len(labels), size=config.batch_size)
        partners = same_class_partners(labels, anchors, rng)
        a, p = (model_inputs(g, real.images[torch.from_numpy(i)]) for i in (anchors, partners))
        z = torch.randn(2, config.batch_size, config.z_dim, generator=gen).to(device)
        fake = g(a, z[0])
        loss_d = d_hinge(d(a, p), d(a, fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = g_hinge(d(a, fake))
        if config.mode_seeking > 0:  # MSGAN: two noises, two different images
            other = g(a, z[1])
            spread = (fake - other).abs().mean((1, 2, 3)) / (z[0] - z[1]).abs().mean(1)
            loss_g = loss_g + config.mode_seeking / (spread.mean() + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return g.eval()


def dagan_top_up(generator: PairGenerator, real: LabelledImages, want: np.ndarray, seed: int = 0,
                 batch_size: int = 256) -> TensorSource:
    """`want[c]` extra images of each class c: each the generator's image of one of c's own images (drawn at
    random) and fresh noise."""
    check_top_up_counts(real, want, "a DAGAN top-up")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    labels = real.labels.numpy()
    anchors = np.concatenate([rng.choice(np.flatnonzero(labels == c), int(want[c])) for c in np.flatnonzero(want)])
    device = next(generator.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(anchors), batch_size):
            idx = torch.from_numpy(anchors[start:start + batch_size])
            z = torch.randn(len(idx), generator.z_dim, generator=gen).to(device)
            out.append(to_uint8(generator(model_inputs(generator, real.images[idx]), z)).cpu())
    index = torch.from_numpy(anchors)
    return TensorSource(torch.cat(out), real.labels[index], alone="DAGAN top-up only", mixed="real + DAGAN top-up")


def load_dagan(path: Path, key: dict[str, Any], real: LabelledImages, config: DaganConfig) -> PairGenerator | None:
    """The generator kept at `path` for `real`'s channels if `key` made it, else None."""
    g = load_keyed(path, key, PairGenerator(real.images.shape[1], config.width, config.z_dim))
    return None if g is None else g.to(memory_format=torch.channels_last)
