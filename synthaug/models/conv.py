"""The Keras-style conv cGAN of the seed notes, generalised to any supported resolution and channel count."""
from __future__ import annotations

import torch
from torch import nn

from synthaug.config import ModelConfig
from synthaug.models.registry import Architecture, register_arch
from synthaug.models.base import ConditionalGenerator, LabelChannel, upsampling_plan


class ConvGenerator(ConditionalGenerator):
    """z -> dense -> (128, b, b) plus a label channel; [Conv3x3 ReLU, BN, Upsample] per stage; Conv3x3 tanh."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.latent_dim, cfg.num_classes, (cfg.channels, cfg.resolution, cfg.resolution))
        base, stages = upsampling_plan(cfg.resolution)
        width = cfg.width or 64
        chans = [width * 2 ** (stages - 1 - i) for i in range(stages)]  # 28px: [128, 64] as in the seed
        self.base, self.c0 = base, chans[0]
        self.noise = nn.Sequential(nn.Linear(cfg.latent_dim, chans[0] * base * base), nn.ReLU())
        self.label = LabelChannel(cfg.num_classes, base)
        layers: list[nn.Module] = []
        c_in = chans[0] + 1
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(c, momentum=0.1),
                       nn.Upsample(scale_factor=2, mode="nearest")]
            c_in = c
        self.body = nn.Sequential(*layers, nn.Conv2d(c_in, cfg.channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.noise(z).view(-1, self.c0, self.base, self.base)
        return self.body(torch.cat([h, self.label(labels)], dim=1))


class ConvDiscriminator(nn.Module):
    """Image plus a label channel; four stride-2 Conv3x3 (32-64-128-256) with LeakyReLU, BN, Dropout 0.25."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.label = LabelChannel(cfg.num_classes, cfg.resolution)
        w = (cfg.width or 64) // 2
        chans = [w, 2 * w, 4 * w, 8 * w]
        layers: list[nn.Module] = []
        c_in = cfg.channels + 1
        for i, c in enumerate(chans):
            layers.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.LeakyReLU(0.2), nn.Dropout(0.25)]
            c_in = c
        self.body = nn.Sequential(*layers, nn.Flatten())
        side = cfg.resolution
        for _ in chans:
            side = (side + 1) // 2
        self.head = nn.Linear(c_in * side * side, 1)
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="leaky_relu", a=0.2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(torch.cat([x, self.label(labels)], dim=1))).squeeze(1)


register_arch(Architecture(
    "conv", ConvGenerator, ConvDiscriminator,
    "Keras conv cGAN of the seeds: label embedding 50 -> dense -> extra channel; Conv+BN+UpSampling generator",
    {"loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999)}, default_width=64))
