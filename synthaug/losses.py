"""GAN losses as pure functions in (discriminator, generator) pairs, registered by name; all take logits."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from synthaug.registry import Registry


def d_bce(real: torch.Tensor, fake: torch.Tensor, real_target: float = 0.9) -> torch.Tensor:
    """Goodfellow et al. 2014 discriminator loss from logits, with one-sided label smoothing (Salimans et al. 2016)."""
    return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_target))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def g_bce(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z)) (Goodfellow et al. 2014)."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def d_hinge(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018)."""
    del real_target
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -D(G(z))."""
    return -fake.mean()


def d_lsgan(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """Least-squares discriminator loss (Mao et al. 2017)."""
    return 0.5 * ((real - real_target) ** 2).mean() + 0.5 * (fake ** 2).mean()


def g_lsgan(fake: torch.Tensor) -> torch.Tensor:
    """Least-squares generator loss (Mao et al. 2017)."""
    return 0.5 * ((fake - 1.0) ** 2).mean()


@dataclass(frozen=True)
class LossPair:
    """A discriminator loss and the generator loss it is trained against."""

    name: str
    d_loss: Callable[..., torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    uses_smoothing: bool


LOSSES: Registry[LossPair] = Registry("loss")
for _pair in (LossPair("bce", d_bce, g_bce, True), LossPair("hinge", d_hinge, g_hinge, False),
              LossPair("lsgan", d_lsgan, g_lsgan, True)):
    LOSSES.add(_pair.name, _pair)


def list_losses() -> list[str]:
    """Names of the registered loss pairs."""
    return LOSSES.names()


def get_loss(name: str) -> LossPair:
    """Look a loss pair up by name."""
    return LOSSES.get(name)
