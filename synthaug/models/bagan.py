"""BAGAN's networks (Mariani et al. 2018, arXiv:1803.09655): an autoencoder whose decoder becomes the generator and
whose encoder becomes the discriminator's body, and a generator that draws each class's latents from a Gaussian fitted
to that class's encoded images, so that the decoder learnt on every class shapes the rare ones too."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def encoded_side(side: int) -> int:
    """The side of the encoder's last feature map (two stride-2 convolutions)."""
    return side // 2 // 2


class BaganEncoder(nn.Module):
    """Image -> latent vector: two stride-2 convolutions and a linear map."""

    def __init__(self, channels: int, side: int, width: int = 32, latent: int = 64):
        super().__init__()
        if encoded_side(side) < 1:
            raise ValueError(f"BAGAN needs images of at least 4 px a side (got {side})")
        s = encoded_side(side)
        self.net = nn.Sequential(nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
                                 nn.Linear(2 * width * s * s, latent))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BaganDecoder(nn.Module):
    """Latent vector -> image in [-1, 1]: the encoder mirrored; also the GAN's generator. It keeps each class's latent
    Gaussian (mean and Cholesky factor) as buffers, so a saved generator samples without the data."""

    def __init__(self, channels: int, side: int, width: int = 32, latent: int = 64, num_classes: int = 1):
        super().__init__()
        s = encoded_side(side)
        self.side, self.width, self.latent, self.s = side, width, latent, s
        self.fc = nn.Linear(latent, 2 * width * s * s)
        self.net = nn.Sequential(nn.BatchNorm2d(2 * width), nn.ReLU(),
                                 nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                 nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.register_buffer("means", torch.zeros(num_classes, latent))
        self.register_buffer("chols", torch.eye(latent).repeat(num_classes, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.net(self.fc(z).view(-1, 2 * self.width, self.s, self.s))
        if h.shape[-1] != self.side:  # sides that do not divide by 4
            h = F.interpolate(h, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return torch.tanh(h)

    def sample_latent(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One latent per label, drawn from that class's Gaussian."""
        eps = torch.randn(len(labels), self.latent, generator=generator).to(self.means.device)
        return self.means[labels] + (self.chols[labels] @ eps[:, :, None]).squeeze(2)


class BaganDiscriminator(nn.Module):
    """The encoder's body and a head over the classes plus one more, "generated"."""

    def __init__(self, encoder: BaganEncoder, num_classes: int):
        super().__init__()
        self.body = encoder
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(encoder.net[-1].out_features, num_classes + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
