"""SNGAN with a projection discriminator (Miyato et al. 2018; Miyato & Koyama 2018): the modern default."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from synthaug.config import ModelConfig
from synthaug.models.registry import Architecture, register_arch
from synthaug.models.base import ConditionalGenerator, upsampling_plan

# Right-sized for 2 CPU cores: width 32 trains ~3.7x faster than 64 at 28 px (benchmarks/bench_training.py).
DEFAULT_WIDTH = 32


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al. 2017)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gamma(labels)[:, :, None, None] + self.beta(labels)[:, :, None, None]


class GBlock(nn.Module):
    """Residual up-block: CBN-ReLU-Up-Conv-CBN-ReLU-Conv plus an upsampled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, labels)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class SNGANGenerator(ConditionalGenerator):
    """z -> dense -> (ch, b, b) -> residual up-blocks with class-conditional BN -> BN-ReLU-Conv3x3 -> tanh."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.latent_dim, cfg.num_classes, (cfg.channels, cfg.resolution, cfg.resolution))
        base, stages = upsampling_plan(cfg.resolution)
        ch = cfg.width or DEFAULT_WIDTH
        chans = [ch * 2 ** max(0, stages - 2 - i) for i in range(stages + 1)]
        self.base, self.c0 = base, chans[0]
        self.dense = nn.Linear(cfg.latent_dim, chans[0] * base * base)
        self.blocks = nn.ModuleList(GBlock(a, b, cfg.num_classes) for a, b in zip(chans, chans[1:]))
        self.out = nn.Sequential(nn.BatchNorm2d(chans[-1]), nn.ReLU(), nn.Conv2d(chans[-1], cfg.channels, 3, padding=1),
                                 nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, self.c0, self.base, self.base)
        for block in self.blocks:
            h = block(h, labels)
        return self.out(h)


class DBlock(nn.Module):
    """Spectrally normalised residual down-block (the first one skips the leading ReLU)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.shortcut = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            # The first block pools before its 1x1 conv (cheaper, as in the reference implementation).
            s = self.shortcut(F.avg_pool2d(x, 2)) if (self.first and self.down) else self.shortcut(x)
            if self.down and not self.first:
                s = F.avg_pool2d(s, 2)
        return h + s


class ProjectionOutput(nn.Module):
    """Base of the SNGAN discriminators: global sum pool, then logit = linear(h) + <embed(y), h> (Miyato & Koyama
    2018), spectrally normalised; `linear` and `embed` sit on the discriminator itself, as checkpoints expect."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.linear = spectral_norm(nn.Linear(features, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, features))

    def project(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits (N,) from features (N, C, H, W)."""
        h = h.sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


class ProjectionDiscriminator(ProjectionOutput):
    """SN residual blocks, ReLU, global sum pool; logit = linear(h) + <embed(y), h> (projection)."""

    def __init__(self, cfg: ModelConfig):
        _, stages = upsampling_plan(cfg.resolution)
        ch = cfg.width or DEFAULT_WIDTH
        chans = [cfg.channels] + [ch * 2 ** min(i, 1) for i in range(stages + 1)]
        super().__init__(chans[-1], cfg.num_classes)
        downs = [True] * stages + [False]
        self.blocks = nn.Sequential(*(DBlock(a, b, d, i == 0)
                                      for i, (a, b, d) in enumerate(zip(chans, chans[1:], downs))))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.project(F.relu(self.blocks(x)), labels)


register_arch(Architecture(
    "sngan", SNGANGenerator, ProjectionDiscriminator,
    "SNGAN + projection discriminator: conditional BN, spectral norm, hinge loss, TTUR, EMA generator",
    {"loss": "hinge", "lr_g": 1e-4, "lr_d": 4e-4, "betas": (0.0, 0.9)}, ema=True, default_width=DEFAULT_WIDTH))


# The paper's CNN is 64-512 channels with a 3x3 conv between the stride-2 ones; 32 channels and no 3x3 in between
# train 1.5x faster than the ResNet sngan on 2 CPU cores, at 0.55x dcgan's speed (benchmarks/bench_training.py).
CNN_WIDTH = 32


class CNNGenerator(ConditionalGenerator):
    """SNGAN's "standard CNN" G: z -> dense -> stride-2 ConvT stages after CBN-ReLU -> CBN-ReLU-Conv3x3 -> tanh."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.latent_dim, cfg.num_classes, (cfg.channels, cfg.resolution, cfg.resolution))
        base, stages = upsampling_plan(cfg.resolution)
        ch = cfg.width or CNN_WIDTH
        chans = [ch * 2 ** (stages - i) for i in range(stages + 1)]
        self.base, self.c0 = base, chans[0]
        self.dense = nn.Linear(cfg.latent_dim, chans[0] * base * base)
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(c, cfg.num_classes) for c in chans)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
        self.out = nn.Conv2d(chans[-1], cfg.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, self.c0, self.base, self.base)
        for norm, up in zip(self.norms, self.ups):
            h = up(F.relu(norm(h, labels)))
        return torch.tanh(self.out(F.relu(self.norms[-1](h, labels))))


class CNNProjectionDiscriminator(ProjectionOutput):
    """SNGAN's "standard CNN" discriminator (SN convs, LeakyReLU 0.1), trimmed for CPUs, with the projection head."""

    def __init__(self, cfg: ModelConfig):
        _, stages = upsampling_plan(cfg.resolution)
        ch = cfg.width or CNN_WIDTH
        chans = [ch * 2 ** i for i in range(stages + 1)]
        super().__init__(chans[-1], cfg.num_classes)
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(cfg.channels, chans[0], 3, 1, 1)), nn.LeakyReLU(0.1)]
        for a, b in zip(chans, chans[1:]):
            layers += [spectral_norm(nn.Conv2d(a, b, 4, 2, 1)), nn.LeakyReLU(0.1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.project(self.net(x), labels)


register_arch(Architecture(
    "sngan-cnn", CNNGenerator, CNNProjectionDiscriminator,
    "SNGAN recipe on the paper's standard-CNN backbone: conditional BN, SN projection D, hinge loss, EMA",
    # The paper's setting for its CNN (Miyato et al. 2018, Table 1 "C"); the TTUR setting learned the class condition
    # slower (4 CPU minutes on Fashion-MNIST: label agreement 0.26 against 0.53). Mode seeking as for dcgan.
    {"loss": "hinge", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999), "mode_seeking": 1.0}, ema=True,
    default_width=CNN_WIDTH))
