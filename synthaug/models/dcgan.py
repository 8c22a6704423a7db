"""DCGAN (Radford et al. 2016), conditioned by label embeddings in both networks."""
from __future__ import annotations

import torch
from torch import nn

from synthaug.config import ModelConfig
from synthaug.models.registry import Architecture, register_arch
from synthaug.models.base import ConditionalGenerator, LabelChannel, upsampling_plan


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, BN scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(ConditionalGenerator):
    """[z, embed(y)] -> ConvT to (b, b) -> stride-2 ConvT stages with BN+ReLU -> ConvT tanh."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.latent_dim, cfg.num_classes, (cfg.channels, cfg.resolution, cfg.resolution))
        base, stages = upsampling_plan(cfg.resolution)
        ngf = cfg.width or 64
        chans = [ngf * 2 ** (stages - 1 - i) for i in range(stages)]
        self.embed = nn.Embedding(cfg.num_classes, 50)
        layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.latent_dim + 50, chans[0], base, 1, 0, bias=False),
                                   nn.BatchNorm2d(chans[0]), nn.ReLU(True)]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(h[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """[x, label channel] -> stride-2 convs (no BN on the input layer) with LeakyReLU(0.2) -> conv to one logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        base, stages = upsampling_plan(cfg.resolution)
        ndf = cfg.width or 64
        chans = [ndf * 2 ** i for i in range(stages)]
        self.label = LabelChannel(cfg.num_classes, cfg.resolution)
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels + 1, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(chans[-1], 1, base, 1, 0))
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.label(labels)], dim=1)).flatten()


register_arch(Architecture(
    "dcgan", DCGANGenerator, DCGANDiscriminator,
    "DCGAN: transposed convolutions, BatchNorm except G output and D input, LeakyReLU in D, tanh out",
    # The mode-seeking term is ours, not the seed's: without it the conditional generator learned to ignore z
    # (Fashion-MNIST, 8 epochs: recall 0.00, coverage 0.02, one image per class in the sample grid).
    {"loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999), "mode_seeking": 1.0}, default_width=64))
