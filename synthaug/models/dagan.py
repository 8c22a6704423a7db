"""DAGAN's networks (Antoniou et al. 2017, arXiv:1711.04340): a generator that turns an image and noise into
another image of the same class, and a discriminator that judges pairs of images, so that what varies within a
class is learnt from the classes that have many images and applies to those that have few."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Convolution, batch norm, LeakyReLU; stride 2 halves the side."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


class PairGenerator(nn.Module):
    """U-Net image-to-image generator: an encoder to a quarter of the side, noise projected onto that bottleneck,
    a decoder that takes the encoder's features at each side back (skip connections). Pixels in [-1, 1]."""

    def __init__(self, channels: int, width: int = 32, z_dim: int = 64):
        super().__init__()
        self.z_dim = z_dim
        self.enc = nn.ModuleList([_block(channels, width, 1), _block(width, 2 * width, 2),
                                  _block(2 * width, 4 * width, 2)])
        self.noise = nn.Linear(z_dim, 4 * width)  # a per-channel shift of the bottleneck, the same at every place
        self.mix = _block(4 * width, 4 * width, 1)
        self.dec = nn.ModuleList([_block(4 * width + 2 * width, 2 * width, 1), _block(2 * width + width, width, 1)])
        self.out = nn.Conv2d(width, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for block in self.enc:
            h = block(h)
            skips.append(h)
        h = self.mix(h + self.noise(z)[:, :, None, None])
        for block, skip in zip(self.dec, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")  # sides that do not halve evenly too
            h = block(torch.cat([h, skip], 1))
        return torch.tanh(self.out(h))


class PairDiscriminator(nn.Module):
    """Spectral-normalised CNN on two images stacked by channel: real pairs are two images of one class, fake pairs
    an image and what the generator made of it."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(spectral_norm(nn.Conv2d(2 * channels, width, 3, 1, 1)), nn.LeakyReLU(0.2),
                                 spectral_norm(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),
                                 spectral_norm(nn.Conv2d(2 * width, 4 * width, 4, 2, 1)), nn.LeakyReLU(0.2))
        self.head = spectral_norm(nn.Linear(4 * width, 1))

    def forward(self, anchor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(torch.cat([anchor, other], 1)).sum((2, 3))).squeeze(1)
