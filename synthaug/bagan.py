"""A rare-class top-up from a balancing GAN (BAGAN, arXiv:1803.09655): an autoencoder learns every class of the
folder; a Gaussian fitted to each class's encoded images gives the generator (the decoder, trained on) its latents;
the discriminator (the encoder, with one output per class and one for "generated") is trained on the folder's images
and on class-balanced generated ones. A rare class's images come from the decoder that every class shaped.

As in the paper, the class Gaussians stay fixed during the adversarial phase. Unlike it, each covariance is
Ledoit-Wolf-shrunk (a rare class has fewer images than latent dimensions), and a class of one image takes the
covariance pooled over the others."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthaug.classify import model_inputs
from synthaug.conditions import TensorSource, check_top_up_counts
from synthaug.data.folder import LabelledImages
from synthaug.engine import to_uint8
from synthaug.errors import DataError
from synthaug.models.bagan import BaganDecoder, BaganDiscriminator, BaganEncoder
from synthaug.runs import load_keyed


@dataclasses.dataclass(frozen=True)
class BaganConfig:
    """The autoencoder's and the GAN's settings."""

    ae_steps: int = 2000
    steps: int = 3000  # generator steps (one discriminator step each)
    batch_size: int = 64
    width: int = 32
    latent: int = 64
    ae_lr: float = 1e-3
    lr: float = 5e-5  # the paper's Adam settings for the adversarial phase, betas (0.5, 0.999)
    # real images class-balanced as the generated ones are (the paper draws them as the folder has them): drawn
    # as the folder has them, the discriminator sees a rare class mostly in generated images and learns to call its
    # shapes "generated"; on 8-px digits with two classes at 10 images, a classifier then recognised 0% and 16% of
    # their generated images (100% after the autoencoder alone)
    balanced_real: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.width, self.latent) < 1 or self.ae_steps < 0 or \
                min(self.lr, self.ae_lr) <= 0:
            raise DataError(f"BAGAN steps, batch size, width and latent size must be at least 1, autoencoder steps "
                            f"at least 0 and learning rates above 0 (got {dataclasses.asdict(self)})")


def class_gaussians(latents: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class's latent mean and the Cholesky factor of its Ledoit-Wolf covariance (pooled within-class
    covariance for a class of one image)."""
    from sklearn.covariance import LedoitWolf

    dim = latents.shape[1]
    means = np.stack([latents[labels == c].mean(0) for c in range(num_classes)])
    pooled = LedoitWolf().fit(latents - means[labels]).covariance_
    covs = [LedoitWolf().fit(latents[labels == c]).covariance_ if np.sum(labels == c) > 1 else pooled
            for c in range(num_classes)]
    chols = np.stack([np.linalg.cholesky(c + 1e-6 * np.eye(dim)) for c in covs])
    return torch.from_numpy(means).float(), torch.from_numpy(chols).float()


def real_batch(members: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` image indices, a class drawn uniformly for each, then an image of it."""
    classes = rng.integers(len(members), size=size)
    return np.array([members[c][rng.integers(len(members[c]))] for c in classes])


def fit_bagan(real: LabelledImages, config: BaganConfig = BaganConfig(), device: torch.device | str = "cpu",
              progress: bool = False) -> BaganDecoder:
    """A class-conditional generator: the autoencoder on every image, the class Gaussians, then the GAN."""
    labels = real.labels.numpy()
    k = len(real.class_names)
    if len(labels) < 2 or np.bincount(labels, minlength=k).min() < 1:
        raise DataError(f"{real.root}: BAGAN needs at least one image of every class and two in all")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    channels, side = real.images.shape[1], real.images.shape[-1]
    enc = BaganEncoder(channels, side, config.width, config.latent).to(device)
    dec = BaganDecoder(channels, side, config.width, config.latent, k).to(device)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], config.ae_lr)
    for _ in tqdm(range(config.ae_steps), desc="BAGAN autoencoder", unit="step", disable=not progress, leave=False):
        x = model_inputs(enc, real.images[torch.from_numpy(rng.integers(len(labels), size=config.batch_size))])
        loss = F.mse_loss(dec(enc(x)), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    enc.eval()
    with torch.inference_mode():
        latents = torch.cat([enc(model_inputs(enc, real.images[i:i + 512])) for i in range(0, len(labels), 512)])
    means, chols = class_gaussians(latents.cpu().double().numpy(), labels, k)
    dec.means.copy_(means)
    dec.chols.copy_(chols)
    disc = BaganDiscriminator(copy.deepcopy(enc).train(), k).to(device)
    opt_g = torch.optim.Adam(dec.parameters(), config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), config.lr, betas=(0.5, 0.999))
    members = [np.flatnonzero(labels == c) for c in range(k)]
    generated = torch.full((config.batch_size,), k, device=device)  # the discriminator's extra class
    for _ in tqdm(range(config.steps), desc="BAGAN", unit="step", disable=not progress, leave=False):
        idx = torch.from_numpy(real_batch(members, config.batch_size, rng) if config.balanced_real
                               else rng.integers(len(labels), size=config.batch_size))
        x, y = model_inputs(enc, real.images[idx]), real.labels[idx].to(device)
        c = torch.randint(k, (config.batch_size,), generator=gen).to(device)  # class-balanced generated labels
        fake = dec(dec.sample_latent(c, gen))
        loss_d = F.cross_entropy(disc(x), y) + F.cross_entropy(disc(fake.detach()), generated)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.cross_entropy(disc(fake), c)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return dec.eval()


def bagan_top_up(generator: BaganDecoder, real: LabelledImages, want: np.ndarray, seed: int = 0,
                 batch_size: int = 256) -> TensorSource:
    """`want[c]` generated images of each class c, latents drawn from the class's Gaussian."""
    check_top_up_counts(real, want, "a BAGAN top-up")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(np.repeat(np.arange(len(want)), want)).long()
    out = []
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            c = labels[start:start + batch_size].to(generator.means.device)
            out.append(to_uint8(generator(generator.sample_latent(c, gen))).cpu())
    return TensorSource(torch.cat(out), labels, alone="BAGAN top-up only", mixed="real + BAGAN top-up")


def load_bagan(path: Path, key: dict[str, Any], real: LabelledImages, config: BaganConfig) -> BaganDecoder | None:
    """The generator kept at `path` for `real`'s shape if `key` made it, else None."""
    channels, side = real.images.shape[1], real.images.shape[-1]
    return load_keyed(path, key, BaganDecoder(channels, side, config.width, config.latent, len(real.class_names)))
