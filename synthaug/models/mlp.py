"""Fully connected cGANs: Mirza & Osindero (2014) with maxout, and the PyTorch MLP cGAN of the seed notes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthaug.config import ModelConfig
from synthaug.models.registry import Architecture, register_arch
from synthaug.models.base import ConditionalGenerator, image_numel


class Maxout(nn.Module):
    """A linear layer with `pieces` outputs per unit, reduced by max (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=2)


class MaxoutGenerator(ConditionalGenerator):
    """Mirza & Osindero: uniform z -> 200 ReLU, one-hot y -> 1000 ReLU, joint 1200 ReLU, sigmoid pixels.

    The paper's dropout is kept in the discriminator only: a generator trained with dropout learns to use the
    dropout masks rather than z as its noise, and with dropout off at sampling every image of a class came out
    the same (Fashion-MNIST, 5 CPU minutes: recall 0.0, coverage 0.004). Without dropout it still ignored z
    (per-class diversity 0.002), so its training defaults add the mode-seeking term (see `train.g_step`).
    """

    latent_distribution = "uniform"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.latent_dim, cfg.num_classes, (cfg.channels, cfg.resolution, cfg.resolution))
        self.z_path = nn.Sequential(nn.Linear(cfg.latent_dim, 200), nn.ReLU())
        self.y_path = nn.Sequential(nn.Linear(cfg.num_classes, 1000), nn.ReLU())
        self.joint = nn.Sequential(nn.Linear(1200, 1200), nn.ReLU(), nn.Linear(1200, image_numel(cfg)))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = F.one_hot(labels, self.num_classes).to(z.dtype)
        h = torch.cat([self.z_path(z), self.y_path(y)], dim=1)
        # The paper's sigmoid output, mapped to the [-1, 1] contract.
        return (torch.sigmoid(self.joint(h)) * 2 - 1).view(-1, *self.image_shape)


class MaxoutDiscriminator(nn.Module):
    """Mirza & Osindero: x -> maxout 240x5, y -> maxout 50x5, joint maxout 240x4, one logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_classes = cfg.num_classes
        self.x_path = nn.Sequential(Maxout(image_numel(cfg), 240, 5), nn.Dropout(0.5))
        self.y_path = nn.Sequential(Maxout(cfg.num_classes, 50, 5), nn.Dropout(0.5))
        self.joint = nn.Sequential(Maxout(290, 240, 4), nn.Dropout(0.5), nn.Linear(240, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = F.one_hot(labels, self.num_classes).to(x.dtype)
        h = torch.cat([self.x_path(x.flatten(1)), self.y_path(y)], dim=1)
        return self.joint(h).squeeze(1)


class MLPGenerator(ConditionalGenerator):
    """Embedding(K, K) concatenated to z; 256-512-1024 LeakyReLU(0.2); tanh pixels."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.latent_dim, cfg.num_classes, (cfg.channels, cfg.resolution, cfg.resolution))
        self.embed = nn.Embedding(cfg.num_classes, cfg.num_classes)
        dims = [cfg.latent_dim + cfg.num_classes, 256, 512, 1024]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(1024, image_numel(cfg)), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.embed(labels)], dim=1)).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """Image flattened plus Embedding(K, K); 1024-512-256 LeakyReLU(0.2) with dropout 0.3; one logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.num_classes, cfg.num_classes)
        dims = [image_numel(cfg) + cfg.num_classes, 1024, 512, 256]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2), nn.Dropout(0.3)]
        self.net = nn.Sequential(*layers, nn.Linear(256, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), self.embed(labels)], dim=1)).squeeze(1)


register_arch(Architecture(
    "mlp-maxout", MaxoutGenerator, MaxoutDiscriminator,
    "Mirza & Osindero 2014: MLP generator, maxout discriminator, uniform noise",
    {"loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999), "mode_seeking": 1.0}))
register_arch(Architecture(
    "mlp", MLPGenerator, MLPDiscriminator,
    "MLP cGAN (256-512-1024, LeakyReLU, dropout 0.3) with a label embedding",
    {"loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999)}))
